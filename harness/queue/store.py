"""The worker's results store: every call retried while the database is unreachable.

A worker outlives database restarts: a store call that fails because the connection dropped (or
cannot be made) is retried with backoff for up to ``reconnect_s``. Retrying whole calls is safe
because the store's writes are idempotent: measurements are keyed by identity (``ON CONFLICT DO
NOTHING``), device states are upserts and runs are created with :meth:`ensure_run`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, Tuple, Type

from ..store import BaseStore

log = logging.getLogger("bench.worker")


def _disconnect_errors() -> Tuple[Type[BaseException], ...]:
    errors: Tuple[Type[BaseException], ...] = ()
    try:
        import sqlalchemy.exc

        errors += (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
    except ImportError:
        pass
    try:
        import psycopg

        errors += (psycopg.OperationalError,)
    except ImportError:
        pass
    return errors


class ReconnectingStore:
    """A proxy over a :class:`BaseStore` whose method calls survive a database restart."""

    def __init__(self, store: BaseStore, reconnect_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._reconnect_s = reconnect_s
        self._sleep = sleep
        self._errors = _disconnect_errors()

    @property
    def inner(self) -> BaseStore:
        return self._store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name in ("transaction", "close") or not self._errors:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            deadline = time.monotonic() + self._reconnect_s
            delay = 0.2
            while True:
                try:
                    return attribute(*args, **kwargs)
                except self._errors as exc:
                    if time.monotonic() > deadline:
                        raise
                    log.warning("results store unreachable (%s); retrying %s in %.1f s",
                                str(exc).strip().splitlines()[0][:160], name, delay)
                    self._sleep(delay)
                    delay = min(delay * 2, 5.0)

        return call


def unwrap(store: Any) -> Optional[BaseStore]:
    return store.inner if isinstance(store, ReconnectingStore) else store
