"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, pg_ctl on
127.0.0.1 and a free port (loopback only), trust auth for one role, fsync off. As root the server
runs as the ``postgres`` system user (PostgreSQL refuses to run as root).

Missing PostgreSQL binaries skip the tests with the reason, except in CI (CI=true) where they
fail: these tests must not vanish there.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

ROLE = "bench"


@dataclass
class PgServer:
    bindir: Path
    root: Path
    port: int
    run_as: Optional[str]

    @property
    def url(self) -> str:
        return "postgresql://%s@127.0.0.1:%d/postgres" % (ROLE, self.port)

    def url_for(self, database: str) -> str:
        return "postgresql://%s@127.0.0.1:%d/%s" % (ROLE, self.port, database)

    def create_database(self, name: str) -> str:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"),
                                          isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text('CREATE DATABASE "%s"' % name))
        engine.dispose()
        return self.url_for(name)

    def stop(self) -> None:
        _run(self, [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
             check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def find_bindir() -> Optional[Path]:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def missing(reason: str) -> None:
    """Skip with the reason, or fail in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " - in CI this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(server: PgServer, argv: List[str], check: bool = True) -> subprocess.CompletedProcess:
    if server.run_as:
        argv = ["runuser", "-u", server.run_as, "--"] + argv
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s %s" % (argv[0], proc.returncode, proc.stdout[-800:], proc.stderr[-800:]))
    return proc


def start_server() -> PgServer:
    bindir = find_bindir()
    if bindir is None:
        missing("PostgreSQL is not installed (apt-get install -y postgresql); the PostgreSQL store tests "
                "start their own server on 127.0.0.1")
    try:
        import psycopg  # noqa: F401  (only whether they import)
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        missing("the PostgreSQL store needs SQLAlchemy and psycopg (pip install -e '.[postgres]'): %s" % exc)
    run_as = None
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:
        run_as = "postgres"
        if shutil.which("runuser") is None:
            missing("running as root without runuser: cannot start PostgreSQL as a non-root user")
        try:
            shutil.chown(root, user=run_as)
        except (LookupError, PermissionError) as exc:
            missing("no '%s' user to run PostgreSQL as (%s)" % (run_as, exc))
    os.chmod(root, 0o700)
    assert bindir is not None
    last: Optional[Exception] = None
    for _attempt in range(3):  # a free port can be taken between probing and binding
        server = PgServer(bindir=bindir, root=root, port=_free_port(), run_as=run_as)
        if not (root / "data").exists():
            _run(server, [str(bindir / "initdb"), "-D", str(root / "data"), "-U", ROLE, "-A", "trust", "-E", "UTF8",
                          "--no-sync", "--locale=C"])
        options = "-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off" % (
            server.port, root)
        proc = _run(server, [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"),
                             "-w", "-t", "30", "-o", options, "start"], check=False)
        if proc.returncode == 0:
            return server
        last = RuntimeError("pg_ctl start failed: %s %s" % (proc.stdout[-500:], proc.stderr[-500:]))
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(str(last))
