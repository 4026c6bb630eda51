"""The results store: SQLite under results/ by default, schema versioned with ordered migrations.

Measurements are stored whole (their JSON record) beside the columns that identify them; the
primary key is the measurement's identity, so pulling the same record twice stores it once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from ..runner.protocol import Measurement

SCHEMA_VERSION = 1

_MIGRATIONS = {
    1: [
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            suite TEXT NOT NULL,
            devices TEXT NOT NULL,
            status TEXT NOT NULL,
            controller_commit TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            info TEXT NOT NULL DEFAULT '{}',
            finished_at TEXT
        )""",
        """CREATE TABLE run_devices (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            device TEXT NOT NULL,
            state TEXT NOT NULL,
            error TEXT,
            remote_run_dir TEXT,
            results_offset INTEGER NOT NULL DEFAULT 0,
            info TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (run_id, device)
        )""",
        """CREATE TABLE measurements (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            device TEXT NOT NULL,
            workload TEXT NOT NULL,
            variant TEXT NOT NULL,
            repetition INTEGER NOT NULL,
            suite TEXT NOT NULL,
            backend TEXT NOT NULL,
            warmup INTEGER NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (run_id, device, workload, variant, repetition)
        )""",
        "CREATE INDEX measurements_series ON measurements(device, suite, workload, variant)",
    ],
}


class StoreError(RuntimeError):
    pass


@dataclass
class RunRecord:
    run_id: str
    created_at: str
    suite: str
    devices: List[str]
    status: str
    controller_commit: str = ""
    tags: List[str] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)
    finished_at: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "suite": self.suite,
            "devices": self.devices,
            "status": self.status,
            "controller_commit": self.controller_commit,
            "tags": self.tags,
            "info": self.info,
            "finished_at": self.finished_at,
        }


@dataclass
class DeviceState:
    run_id: str
    device: str
    state: str  # planned, running, finished, failed
    error: Optional[str] = None
    remote_run_dir: Optional[str] = None
    results_offset: int = 0
    info: Dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per Store; the controller's device threads share it under sqlite's own
        # serialisation (check_same_thread off, every write in a short transaction).
        self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    "%s has schema version %d, this bench knows up to %d: upgrade edge-vlm-bench"
                    % (self.path, current, SCHEMA_VERSION)
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)", (str(version),)
                )

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO runs(run_id, created_at, suite, devices, status, controller_commit, tags, info)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, run.created_at or _now(), run.suite, json.dumps(run.devices), run.status,
                 run.controller_commit, json.dumps(run.tags), json.dumps(run.info)),
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with self._db:
            self._db.execute(
                "UPDATE runs SET status=?, finished_at=? WHERE run_id=?", (status, _now(), run_id)
            )

    def _run_from_row(self, row: tuple) -> RunRecord:
        return RunRecord(
            run_id=row[0], created_at=row[1], suite=row[2], devices=json.loads(row[3]), status=row[4],
            controller_commit=row[5], tags=json.loads(row[6]), info=json.loads(row[7]), finished_at=row[8],
        )

    _RUN_COLUMNS = "run_id, created_at, suite, devices, status, controller_commit, tags, info, finished_at"

    def get_run(self, run_id: str) -> RunRecord:
        if run_id == "latest":
            latest = self.latest_run()
            if latest is None:
                raise StoreError("no runs in %s yet; start one with `bench run`" % self.path)
            return latest
        row = self._db.execute(
            "SELECT %s FROM runs WHERE run_id=?" % self._RUN_COLUMNS, (run_id,)
        ).fetchone()
        if row is None:
            recent = [r.run_id for r in self.list_runs(limit=5)]
            raise StoreError(
                "no run %r in %s; recent runs: %s" % (run_id, self.path, ", ".join(recent) or "(none)")
            )
        return self._run_from_row(row)

    def latest_run(self) -> Optional[RunRecord]:
        row = self._db.execute(
            "SELECT %s FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1" % self._RUN_COLUMNS
        ).fetchone()
        return self._run_from_row(row) if row else None

    def list_runs(self, limit: Optional[int] = None) -> List[RunRecord]:
        sql = "SELECT %s FROM runs ORDER BY created_at DESC, rowid DESC" % self._RUN_COLUMNS
        params: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        return [self._run_from_row(r) for r in self._db.execute(sql, params).fetchall()]

    # -- per-device progress (for resume) ---------------------------------------------------
    def set_device_state(self, state: DeviceState) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO run_devices(run_id, device, state, error, remote_run_dir, results_offset, info)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id, device) DO UPDATE SET state=excluded.state, error=excluded.error,"
                " remote_run_dir=excluded.remote_run_dir, results_offset=excluded.results_offset,"
                " info=excluded.info",
                (state.run_id, state.device, state.state, state.error, state.remote_run_dir,
                 state.results_offset, json.dumps(state.info)),
            )

    def device_states(self, run_id: str) -> List[DeviceState]:
        rows = self._db.execute(
            "SELECT run_id, device, state, error, remote_run_dir, results_offset, info"
            " FROM run_devices WHERE run_id=? ORDER BY device", (run_id,)
        ).fetchall()
        return [DeviceState(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    # -- measurements -----------------------------------------------------------------------
    def add_measurements(self, records: Iterable[Measurement], results_offset: Optional[int] = None,
                         device_state: Optional[DeviceState] = None) -> int:
        """Store records (duplicates ignored) and, in the same transaction, the pull offset."""
        added = 0
        with self._db:
            for m in records:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO measurements(run_id, device, workload, variant, repetition,"
                    " suite, backend, warmup, status, started_at, record) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (m.run_id, m.device, m.workload, m.variant, m.repetition, m.suite, m.backend,
                     int(m.warmup), m.status, m.started_at, m.to_json()),
                )
                added += cursor.rowcount
            if device_state is not None:
                if results_offset is not None:
                    device_state.results_offset = results_offset
                self._db.execute(
                    "UPDATE run_devices SET results_offset=?, state=? WHERE run_id=? AND device=?",
                    (device_state.results_offset, device_state.state, device_state.run_id,
                     device_state.device),
                )
        return added

    def measurements(self, run_id: Optional[str] = None) -> List[Dict[str, Any]]:
        if run_id is None:
            rows = self._db.execute("SELECT record FROM measurements ORDER BY rowid").fetchall()
        else:
            rows = self._db.execute(
                "SELECT record FROM measurements WHERE run_id=?"
                " ORDER BY device, workload, variant, repetition", (run_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def count(self, run_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM measurements WHERE run_id=?", (run_id,)).fetchone()[0]
