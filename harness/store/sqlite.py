"""The default results store: SQLite under results/, schema versioned with ordered migrations.

Everything but the connection lives in :mod:`harness.store.base`, shared with the PostgreSQL
store; this module keeps its historical names (``Store``, ``RunRecord`` ...) for existing callers.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .base import BaseStore, DeviceState, HistoryValues, RunRecord, SeriesContext, StoreError
from .schema import SCHEMA_VERSION

# existing callers import these from here
__all__ = ["DeviceState", "HistoryValues", "RunRecord", "SCHEMA_VERSION", "SeriesContext", "Store", "StoreError"]


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Optional[Mapping[str, Any]] = None) -> int:
        return self._db.execute(sql, dict(params or {})).rowcount

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> int:
        return self._db.executemany(sql, params).rowcount

    def query(self, sql: str, params: Optional[Mapping[str, Any]] = None) -> List[Tuple[Any, ...]]:
        return self._db.execute(sql, dict(params or {})).fetchall()


class Store(BaseStore):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        # One connection per Store, shared by the controller's device threads: the lock keeps one
        # thread's transaction from interleaving with another's on the same connection.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError("%s: cannot open the results database there: %s" % (self.path, exc)) from None
        self._lock = threading.RLock()
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: sqlite3.DatabaseError) -> StoreError:
        # never repaired or replaced here: the file may hold the only copy of someone's results
        return StoreError("%s: not a readable results database (%s); it was left untouched - move it aside "
                          "to start a new store, or restore it from a backup" % (self.path, exc))

    @contextmanager
    def transaction(self) -> Iterator[_SqliteTx]:
        try:
            with self._lock, self._db:
                yield _SqliteTx(self._db)
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # corruption only; a constraint or a lock is not
                raise
            raise self._unreadable(exc) from None

    def query(self, sql: str, params: Optional[Dict[str, Any]] = None) -> List[Tuple[Any, ...]]:
        with self._lock:  # reads need no transaction in WAL mode
            try:
                return self._db.execute(sql, dict(params or {})).fetchall()
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:
                    raise
                raise self._unreadable(exc) from None

    def _lock_for_migration(self, tx: _SqliteTx) -> None:
        # Python's sqlite3 runs DDL outside a transaction unless one is open: open one, so a
        # migration and its schema_version bump commit together, and a second process waits.
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self._db.close()
