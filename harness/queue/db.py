"""The queue's database: its URL, procrastinate's schema (applied once, under a lock) and the two
tables procrastinate does not have: which boards each live worker serves, and one note per job
(the worker that ran it, the run it belongs to, the last thing it said).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..errors import MissingError, UsageError

# pg_advisory_xact_lock key: two workers starting on a fresh database install the schema once
_SCHEMA_LOCK = 0x62716D73  # "bqms"

POSTGRES_PREFIXES = ("postgresql+psycopg://", "postgresql://", "postgres://")

OUR_TABLES = """
CREATE TABLE IF NOT EXISTS bench_workers (
    name TEXT PRIMARY KEY,
    lab TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    boards JSONB NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS bench_job_notes (
    job_id BIGINT PRIMARY KEY,
    worker TEXT,
    run_id TEXT,
    state TEXT,
    message TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_nights (
    schedule TEXT NOT NULL,
    period TEXT NOT NULL,
    job_ids JSONB NOT NULL DEFAULT '[]',
    run_ids JSONB NOT NULL DEFAULT '[]',
    verdict JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, period)
);
"""


class QueueError(UsageError):
    """Bad queue configuration or an unknown job: the message says what to give instead."""


def queue_url(explicit: Optional[str], store_url: Optional[str]) -> str:
    """The queue's PostgreSQL URL: ``--queue``/BENCH_QUEUE, else a PostgreSQL ``--store``."""
    for candidate in (explicit, store_url):
        if candidate and candidate.startswith(POSTGRES_PREFIXES):
            return conninfo(candidate)
    if explicit:
        raise QueueError("--queue %r is not a PostgreSQL URL: use postgresql://USER@HOST:PORT/DB" % explicit)
    raise QueueError("the job queue lives in PostgreSQL: give --queue postgresql://USER@HOST:PORT/DB "
                     "(or BENCH_QUEUE, or a postgresql:// --store); `bench run` needs none of this")


def conninfo(url: str) -> str:
    """A libpq URL psycopg accepts (SQLAlchemy's +psycopg suffix removed)."""
    for prefix in POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def require_psycopg() -> Any:
    try:
        import psycopg
        import procrastinate  # noqa: F401  (only whether it imports)
    except ImportError as exc:
        raise MissingError("the job queue needs procrastinate and psycopg (%s): "
                           "pip install 'edge-vlm-bench[postgres]'" % exc) from None
    return psycopg


@contextmanager
def connect(url: str, timeout_s: float = 10.0) -> Iterator[Any]:
    """A short-lived autocommit psycopg connection (the CLI's reads and our own tables)."""
    psycopg = require_psycopg()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_s)))
    except psycopg.OperationalError as exc:
        raise QueueError("cannot reach the queue database %s: %s" % (redact(url), str(exc).strip())) from None
    try:
        yield conn
    finally:
        conn.close()


def redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    return "%s://%s@%s" % (scheme, userinfo.split(":", 1)[0], host)


def ensure_schema(url: str) -> None:
    """Install procrastinate's schema and our tables unless they are there (idempotent, locked)."""
    from procrastinate.schema import SchemaManager

    with connect(url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            present = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()[0]
            if not present:
                conn.execute(SchemaManager.get_schema())
            conn.execute(OUR_TABLES)


# -- our tables ------------------------------------------------------------------------------
def note_job(conn: Any, job_id: int, *, worker: Optional[str] = None, run_id: Optional[str] = None,
             state: Optional[str] = None, message: Optional[str] = None) -> None:
    conn.execute(
        "INSERT INTO bench_job_notes(job_id, worker, run_id, state, message) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (job_id) DO UPDATE SET worker = COALESCE(excluded.worker, bench_job_notes.worker),"
        " run_id = COALESCE(excluded.run_id, bench_job_notes.run_id),"
        " state = COALESCE(excluded.state, bench_job_notes.state),"
        " message = COALESCE(excluded.message, bench_job_notes.message), updated_at = now()",
        (job_id, worker, run_id, state, message),
    )


def job_notes(conn: Any, job_ids: Sequence[int]) -> Dict[int, Dict[str, Any]]:
    if not job_ids:
        return {}
    rows = conn.execute("SELECT job_id, worker, run_id, state, message FROM bench_job_notes"
                        " WHERE job_id = ANY(%s)", (list(job_ids),)).fetchall()
    return {r[0]: {"worker": r[1], "run_id": r[2], "state": r[3], "message": r[4]} for r in rows}


def register_worker(conn: Any, name: str, lab: str, host: str, pid: int, boards: List[str]) -> None:
    conn.execute(
        "INSERT INTO bench_workers(name, lab, host, pid, boards) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET lab = excluded.lab, host = excluded.host, pid = excluded.pid,"
        " boards = excluded.boards, started_at = now(), heartbeat = now(), stopped = false",
        (name, lab, host, pid, json.dumps(sorted(boards))),
    )


def live_workers(conn: Any, stale_s: float) -> List[Dict[str, Any]]:
    """Workers whose heartbeat is younger than ``stale_s`` and that have not stopped."""
    rows = conn.execute(
        "SELECT name, lab, host, pid, boards, EXTRACT(EPOCH FROM now() - heartbeat) FROM bench_workers"
        " WHERE NOT stopped AND heartbeat > now() - make_interval(secs => %s)", (float(stale_s),)).fetchall()
    return [{"name": r[0], "lab": r[1], "host": r[2], "pid": r[3], "boards": list(r[4]),
             "heartbeat_age_s": float(r[5])} for r in rows]
