"""A team's shared results store on PostgreSQL (SQLAlchemy + psycopg), same schema as SQLite.

    store = PostgresStore("postgresql://bench@db.example:5432/bench")

SQLAlchemy and psycopg are imported when a PostgreSQL URL is opened, so the controller installs
and runs without them (``bash scripts/setup-venv.sh local,postgres`` adds them).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..errors import install_hint
from .base import BaseStore, StoreError

# pg_advisory_xact_lock key: two controllers opening a fresh database migrate one after the other
_MIGRATION_LOCK = 0x65766C6D  # "evlm"


def normalise_url(url: str) -> str:
    """postgres:// and postgresql:// -> postgresql+psycopg:// (psycopg 3, not psycopg2)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise StoreError("not a PostgreSQL URL: %r (use postgresql://USER@HOST:PORT/DB)" % redact(url))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return "%s://%s@%s" % (scheme, user + (":***" if ":" in userinfo else ""), host)


class _PgTx:
    def __init__(self, conn: Any, text: Any) -> None:
        self._conn = conn
        self._text = text

    def execute(self, sql: str, params: Optional[Mapping[str, Any]] = None) -> int:
        return self._conn.execute(self._text(sql), dict(params or {})).rowcount

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> int:
        if not params:
            return 0
        return self._conn.execute(self._text(sql), [dict(p) for p in params]).rowcount

    def query(self, sql: str, params: Optional[Mapping[str, Any]] = None) -> List[Tuple[Any, ...]]:
        return [tuple(row) for row in self._conn.execute(self._text(sql), dict(params or {})).fetchall()]


class PostgresStore(BaseStore):
    dialect = "postgresql"

    def __init__(self, url: str, connect_timeout_s: float = 10.0) -> None:
        try:
            import sqlalchemy
        except ImportError as exc:
            raise StoreError("a PostgreSQL store needs SQLAlchemy and psycopg (%s): "
                             "%s" % (exc, install_hint("postgres"))) from None
        self.location = redact(url)
        self._text = sqlalchemy.text
        try:
            self._engine = sqlalchemy.create_engine(
                normalise_url(url), pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, int(connect_timeout_s))},
            )
        except ImportError as exc:  # the psycopg driver itself
            raise StoreError("a PostgreSQL store needs psycopg (%s): %s" % (exc, install_hint("postgres"))) from None
        self._db_error = sqlalchemy.exc.OperationalError
        try:
            self._migrate()
        except self._db_error as exc:
            self._engine.dispose()
            raise StoreError("cannot use the PostgreSQL store at %s: %s" % (
                self.location, str(exc.orig).strip() if exc.orig is not None else exc)) from None

    @contextmanager
    def transaction(self) -> Iterator[_PgTx]:
        with self._engine.begin() as conn:
            yield _PgTx(conn, self._text)

    def query(self, sql: str, params: Optional[Dict[str, Any]] = None) -> List[Tuple[Any, ...]]:
        with self._engine.connect() as conn:
            return _PgTx(conn, self._text).query(sql, params)

    def _lock_for_migration(self, tx: Any) -> None:
        tx.query("SELECT pg_advisory_xact_lock(:key)", {"key": _MIGRATION_LOCK})

    def close(self) -> None:
        self._engine.dispose()
