"""Stores on both backends: SQLite in a temporary directory, PostgreSQL on a server the tests start."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import pytest

from harness.store import BaseStore, Store, open_store

from .pg_server import PgServer, start_server

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the test server."""
    return pg_server.create_database("bench_test_%d" % next(_names))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    if request.param == "sqlite":
        store: BaseStore = Store(tmp_path / "bench.sqlite")
    else:
        store = open_store(request.getfixturevalue("pg_url"))
    try:
        yield store
    finally:
        store.close()
