"""The results store: SQLite by default, a PostgreSQL URL for a team's shared history.

    store = open_store("results/bench.sqlite")                   # or a Path
    store = open_store("postgresql://bench@127.0.0.1:5432/bench")  # needs the [postgres] extra
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .base import BaseStore, DeviceState, HistoryValues, RunRecord, SeriesContext, StoreError
from .sqlite import Store

POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")


def open_store(location: Union[str, Path]) -> BaseStore:
    """A store for a file path, ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``."""
    if isinstance(location, Path):
        return Store(location)
    if not isinstance(location, str):
        # str() of an object would quietly become a SQLite file named after its repr
        raise StoreError("a store location is a path or a URL, not %s" % type(location).__name__)
    text = str(location)
    if text.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore

        return PostgresStore(text)
    if text.startswith("sqlite:///"):
        return Store(Path(text[len("sqlite:///"):]))
    if "://" in text:
        from .postgres import redact

        raise StoreError("unknown store URL %r: use a file path, sqlite:///PATH or "
                         "postgresql://USER@HOST:PORT/DB" % redact(text))
    return Store(Path(text))


__all__ = ["BaseStore", "DeviceState", "HistoryValues", "RunRecord", "SeriesContext", "Store",
           "StoreError", "open_store"]
