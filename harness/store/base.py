"""What every results store does, written once over a tiny transaction interface.

The SQL here uses ``:name`` parameters and only what SQLite (>= 3.24) and PostgreSQL both accept
(``ON CONFLICT ... DO NOTHING / DO UPDATE``, ``LIMIT``), so :class:`harness.store.sqlite.Store`
and :class:`harness.store.postgres.PostgresStore` differ only in how they open a transaction.
Measurements are stored whole (their JSON record) beside the columns that identify them; the
primary key is the measurement's identity, so pulling the same record twice stores it once.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import UsageError
from ..runner.protocol import Measurement
from .liveness import effective_status
from .schema import (
    INSERT_PROVENANCE,
    INSERT_VALUE,
    MIGRATIONS,
    SCHEMA_VERSION,
    Tx,
    context_sha256,
    merge_run_info,
    provenance_context,
    render_step,
    run_history_info,
    value_rows,
)


class StoreError(UsageError, RuntimeError):
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
    # history (schema 2): filled from the measurements as they arrive, "device/variant" names
    variants: List[str] = field(default_factory=list)
    runner_hashes: List[str] = field(default_factory=list)
    model_hashes: Dict[str, str] = field(default_factory=dict)  # "device/variant" -> sha256
    # liveness (schema 3): who runs it and when it last said so; ``status`` as read from the store
    # is already judged by them (a dead controller's "running" run reads "abandoned")
    heartbeat_at: Optional[float] = None
    controller: Dict[str, Any] = field(default_factory=dict)

    def judged(self) -> "RunRecord":
        """The record with ``status`` judged by its controller's liveness (see store.liveness)."""
        self.status = effective_status(self.status, self.heartbeat_at, self.controller)
        return self

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
            "variants": self.variants,
            "runner_hashes": self.runner_hashes,
            "model_hashes": self.model_hashes,
            "heartbeat_at": self.heartbeat_at,
            "controller": self.controller,
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


@dataclass(frozen=True)
class HistoryValues:
    """Measured metric values (warm-up and failed repetitions excluded), column-wise."""

    columns: Tuple[str, ...]
    rows: List[Tuple[Any, ...]]


@dataclass(frozen=True)
class SeriesContext:
    """The provenance one (run, device, suite, workload, variant) ran with."""

    run_id: str
    device: str
    suite: str
    workload: str
    variant: str
    backend: str
    provenance: Dict[str, Any]
    n_distinct: int  # >1: the provenance changed between repetitions of the same run


HISTORY_COLUMNS = ("run_id", "device", "suite", "workload", "variant", "metric", "repetition", "value")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _in_clause(name: str, values: Sequence[Any], params: Dict[str, Any]) -> str:
    """``name IN (:name_0, ...)`` with the values bound (never formatted into the SQL)."""
    keys = []
    for index, value in enumerate(values):
        key = "%s_%d" % (name.replace(".", "_"), index)
        params[key] = value
        keys.append(":" + key)
    return "%s IN (%s)" % (name, ", ".join(keys))


class BaseStore:
    """The store's public API; subclasses provide ``dialect``, ``location`` and transactions."""

    dialect = ""
    location = ""  # for messages: a file path, or a URL without its password

    # -- what a subclass provides -----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield  # pragma: no cover

    def query(self, sql: str, params: Optional[Dict[str, Any]] = None) -> List[Tuple[Any, ...]]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------
    def _lock_for_migration(self, tx: Tx) -> None:
        """Serialise two controllers migrating the same database (PostgreSQL overrides)."""

    def _migrate(self) -> None:
        with self.transaction() as tx:
            self._lock_for_migration(tx)
            tx.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            rows = tx.query("SELECT value FROM meta WHERE key = 'schema_version'")
            current = int(rows[0][0]) if rows else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    "%s has schema version %d, this bench knows up to %d: upgrade edge-vlm-bench"
                    % (self.location, current, SCHEMA_VERSION)
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for step in MIGRATIONS[version]:
                    if callable(step):
                        step(tx)
                    else:
                        tx.execute(render_step(step, self.dialect))
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', :v)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value", {"v": str(version)},
                )

    def schema_version(self) -> int:
        rows = self.query("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    # -- runs -------------------------------------------------------------------------------
    _RUN_COLUMNS = ("run_id, created_at, suite, devices, status, controller_commit, tags, info, finished_at,"
                    " variants, runner_hashes, model_hashes, heartbeat_at, controller")

    def create_run(self, run: RunRecord) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO runs(run_id, created_at, suite, devices, status, controller_commit, tags, info,"
                " variants, runner_hashes, model_hashes, heartbeat_at, controller)"
                " VALUES (:run_id, :created_at, :suite, :devices, :status, :commit, :tags, :info,"
                " :variants, :runners, :models, :heartbeat_at, :controller)",
                {"run_id": run.run_id, "created_at": run.created_at or _now(), "suite": run.suite,
                 "devices": json.dumps(run.devices), "status": run.status, "commit": run.controller_commit,
                 "tags": json.dumps(run.tags), "info": json.dumps(run.info),
                 "variants": json.dumps(sorted(run.variants)), "runners": json.dumps(sorted(run.runner_hashes)),
                 "models": json.dumps(run.model_hashes, sort_keys=True),
                 "heartbeat_at": run.heartbeat_at if run.heartbeat_at is not None else (time.time() if run.controller else None),
                 "controller": json.dumps(run.controller, sort_keys=True)},
            )

    def claim_run(self, run_id: str, controller: Dict[str, Any]) -> None:
        """This controller runs ``run_id`` now (a new run or a resumed one): status running, its
        identity and a fresh heartbeat."""
        with self.transaction() as tx:
            tx.execute("UPDATE runs SET status = 'running', finished_at = NULL, controller = :c,"
                       " heartbeat_at = :now WHERE run_id = :run_id",
                       {"c": json.dumps(controller, sort_keys=True), "now": time.time(), "run_id": run_id})

    def heartbeat(self, run_id: str) -> None:
        """The controller of ``run_id`` is alive (only while the run is stored as running)."""
        with self.transaction() as tx:
            tx.execute("UPDATE runs SET heartbeat_at = :now WHERE run_id = :run_id AND status = 'running'",
                       {"now": time.time(), "run_id": run_id})

    def stored_status(self, run_id: str) -> Optional[str]:
        """The status as written (not judged by liveness), None for an unknown run."""
        rows = self.query("SELECT status FROM runs WHERE run_id = :run_id", {"run_id": run_id})
        return str(rows[0][0]) if rows else None

    def ensure_run(self, run: RunRecord) -> bool:
        """Create the run unless it exists (a queue job delivered twice, or one job per board of
        the same run racing); True when this call created it."""
        with self.transaction() as tx:
            count = tx.execute(
                "INSERT INTO runs(run_id, created_at, suite, devices, status, controller_commit, tags, info)"
                " VALUES (:run_id, :created_at, :suite, :devices, :status, :commit, :tags, :info)"
                " ON CONFLICT (run_id) DO NOTHING",
                {"run_id": run.run_id, "created_at": run.created_at or _now(), "suite": run.suite,
                 "devices": json.dumps(run.devices), "status": run.status, "commit": run.controller_commit,
                 "tags": json.dumps(run.tags), "info": json.dumps(run.info)},
            )
        return bool(count)

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE runs SET status = :status, finished_at = :at WHERE run_id = :run_id",
                       {"status": status, "at": _now(), "run_id": run_id})

    def set_tags(self, run_id: str, tags: Sequence[str]) -> RunRecord:
        """Replace a run's tags (e.g. mark a run as a release baseline after the fact)."""
        run = self.get_run(run_id)
        with self.transaction() as tx:
            tx.execute("UPDATE runs SET tags = :tags WHERE run_id = :run_id",
                       {"tags": json.dumps(list(dict.fromkeys(tags))), "run_id": run.run_id})
        return self.get_run(run.run_id)

    @staticmethod
    def _run_from_row(row: Sequence[Any]) -> RunRecord:
        return RunRecord(
            run_id=row[0], created_at=row[1], suite=row[2], devices=json.loads(row[3]), status=row[4],
            controller_commit=row[5], tags=json.loads(row[6]), info=json.loads(row[7]), finished_at=row[8],
            variants=json.loads(row[9] or "[]"), runner_hashes=json.loads(row[10] or "[]"),
            model_hashes=json.loads(row[11] or "{}"),
            heartbeat_at=float(row[12]) if row[12] is not None else None,
            controller=json.loads(row[13] or "{}"),
        ).judged()

    def get_run(self, run_id: str) -> RunRecord:
        if run_id == "latest":
            latest = self.latest_run()
            if latest is None:
                raise StoreError("no runs in %s yet; start one with `bench run`" % self.location)
            return latest
        rows = self.query("SELECT %s FROM runs WHERE run_id = :run_id" % self._RUN_COLUMNS, {"run_id": run_id})
        if not rows:
            recent = [r.run_id for r in self.list_runs(limit=5)]
            raise StoreError(
                "no run %r in %s; recent runs: %s" % (run_id, self.location, ", ".join(recent) or "(none)")
            )
        return self._run_from_row(rows[0])

    def latest_run(self) -> Optional[RunRecord]:
        rows = self.query("SELECT %s FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1" % self._RUN_COLUMNS)
        return self._run_from_row(rows[0]) if rows else None

    def list_runs(self, limit: Optional[int] = None, tag: Optional[str] = None,
                  suite: Optional[str] = None) -> List[RunRecord]:
        """Runs, newest first; ``tag`` and ``suite`` filter (a tag is matched exactly)."""
        sql = "SELECT %s FROM runs" % self._RUN_COLUMNS
        params: Dict[str, Any] = {}
        if suite is not None:
            sql += " WHERE suite = :suite"
            params["suite"] = suite
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None and tag is None:  # a tag filter is applied after reading (tags are JSON)
            sql += " LIMIT :limit"
            params["limit"] = int(limit)
        runs = [self._run_from_row(r) for r in self.query(sql, params)]
        if tag is not None:
            runs = [r for r in runs if tag in r.tags]
            if limit is not None:
                runs = runs[:limit]
        return runs

    # -- per-device progress (for resume) ---------------------------------------------------
    def set_device_state(self, state: DeviceState) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO run_devices(run_id, device, state, error, remote_run_dir, results_offset, info)"
                " VALUES (:run_id, :device, :state, :error, :dir, :offset, :info)"
                " ON CONFLICT (run_id, device) DO UPDATE SET state = excluded.state, error = excluded.error,"
                " remote_run_dir = excluded.remote_run_dir, results_offset = excluded.results_offset,"
                " info = excluded.info",
                {"run_id": state.run_id, "device": state.device, "state": state.state, "error": state.error,
                 "dir": state.remote_run_dir, "offset": state.results_offset, "info": json.dumps(state.info)},
            )

    def device_states(self, run_id: str) -> List[DeviceState]:
        rows = self.query(
            "SELECT run_id, device, state, error, remote_run_dir, results_offset, info"
            " FROM run_devices WHERE run_id = :run_id ORDER BY device", {"run_id": run_id})
        return [DeviceState(r[0], r[1], r[2], r[3], r[4], int(r[5]), json.loads(r[6])) for r in rows]

    # -- measurements -----------------------------------------------------------------------
    def add_measurements(self, records: Iterable[Measurement], results_offset: Optional[int] = None,
                         device_state: Optional[DeviceState] = None) -> int:
        """Store records (duplicates ignored) and, in the same transaction, the pull offset.

        The history tables (measured values, deduplicated provenance, the run's variants and
        hashes) are written in the same transaction, for new records only.
        """
        added = 0
        with self.transaction() as tx:
            new: List[Dict[str, Any]] = []
            contexts: Dict[str, str] = {}
            for m in records:
                record = json.loads(m.to_json())
                context = provenance_context(record)
                sha = context_sha256(context)
                count = tx.execute(
                    "INSERT INTO measurements(run_id, device, workload, variant, repetition, suite, backend,"
                    " warmup, status, started_at, record, provenance_sha256) VALUES (:run_id, :device,"
                    " :workload, :variant, :repetition, :suite, :backend, :warmup, :status, :started_at,"
                    " :record, :sha) ON CONFLICT DO NOTHING",
                    {"run_id": m.run_id, "device": m.device, "workload": m.workload, "variant": m.variant,
                     "repetition": m.repetition, "suite": m.suite, "backend": m.backend,
                     "warmup": int(m.warmup), "status": m.status, "started_at": m.started_at,
                     "record": m.to_json(), "sha": sha},
                )
                if count:
                    added += count
                    new.append(record)
                    contexts.setdefault(sha, json.dumps(context, sort_keys=True, default=str))
            if contexts:
                tx.executemany(INSERT_PROVENANCE, [{"sha256": k, "record": v} for k, v in contexts.items()])
            values = [row for record in new for row in value_rows(record)]
            if values:
                tx.executemany(INSERT_VALUE, values)
            if new:
                merge_run_info(tx, run_history_info(new))
            if device_state is not None:
                if results_offset is not None:
                    device_state.results_offset = results_offset
                tx.execute(
                    "UPDATE run_devices SET results_offset = :offset, state = :state"
                    " WHERE run_id = :run_id AND device = :device",
                    {"offset": device_state.results_offset, "state": device_state.state,
                     "run_id": device_state.run_id, "device": device_state.device},
                )
        return added

    def measurements(self, run_id: Optional[str] = None) -> List[Dict[str, Any]]:
        if run_id is None:
            rows = self.query("SELECT record FROM measurements ORDER BY rowid")
        else:
            rows = self.query(
                "SELECT record FROM measurements WHERE run_id = :run_id"
                " ORDER BY device, workload, variant, repetition", {"run_id": run_id})
        return [json.loads(r[0]) for r in rows]

    def count(self, run_id: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM measurements WHERE run_id = :run_id",
                              {"run_id": run_id})[0][0])

    # -- history ----------------------------------------------------------------------------
    def history_values(self, metrics: Optional[Sequence[str]] = None, suite: Optional[str] = None,
                       devices: Optional[Sequence[str]] = None,
                       run_ids: Optional[Sequence[str]] = None) -> HistoryValues:
        """Every measured value (warm-up and failed repetitions excluded) matching the filters,
        as rows of :data:`HISTORY_COLUMNS`, in no particular order."""
        clauses: List[str] = []
        params: Dict[str, Any] = {}
        if metrics:
            clauses.append(_in_clause("metric", list(metrics), params))
        if devices:
            clauses.append(_in_clause("device", list(devices), params))
        if suite is not None:
            clauses.append("suite = :suite")
            params["suite"] = suite
        if run_ids is not None:
            if not run_ids:
                return HistoryValues(HISTORY_COLUMNS, [])
            clauses.append(_in_clause("run_id", list(run_ids), params))
        sql = "SELECT %s FROM measurement_values" % ", ".join(HISTORY_COLUMNS)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return HistoryValues(HISTORY_COLUMNS, self.query(sql, params))

    def series_contexts(self, run_ids: Optional[Sequence[str]] = None, suite: Optional[str] = None,
                        devices: Optional[Sequence[str]] = None) -> List[SeriesContext]:
        """Per (run, device, suite, workload, variant): the provenance of its measured, successful
        repetitions (normally one; when they differ, ``n_distinct`` says how many and the one with
        the smallest hash is returned, so the answer is the same on every backend)."""
        clauses = ["warmup = 0", "status = 'ok'"]
        params: Dict[str, Any] = {}
        if run_ids is not None:
            if not run_ids:
                return []
            clauses.append(_in_clause("run_id", list(run_ids), params))
        if suite is not None:
            clauses.append("suite = :suite")
            params["suite"] = suite
        if devices:
            clauses.append(_in_clause("device", list(devices), params))
        rows = self.query(
            "SELECT run_id, device, suite, workload, variant, backend, MIN(provenance_sha256),"
            " COUNT(DISTINCT provenance_sha256) FROM measurements WHERE %s"
            " GROUP BY run_id, device, suite, workload, variant, backend" % " AND ".join(clauses), params)
        shas = sorted({r[6] for r in rows if r[6]})
        contexts: Dict[str, Dict[str, Any]] = {}
        for start in range(0, len(shas), 500):  # bounded IN lists
            chunk: Dict[str, Any] = {}
            clause = _in_clause("sha256", shas[start:start + 500], chunk)
            for sha, text in self.query("SELECT sha256, record FROM provenances WHERE %s" % clause, chunk):
                contexts[sha] = json.loads(text)
        return [SeriesContext(r[0], r[1], r[2], r[3], r[4], r[5], contexts.get(r[6], {}), int(r[7]))
                for r in rows]

    # -- accuracy (schema 4): per-sample answers and per-variant results ---------------------
    ACCURACY_SAMPLE_COLUMNS = ("run_id", "device", "variant", "task", "request_id", "doc_id", "question", "prompt",
                               "answer", "raw_answer", "refs", "score", "scores", "status", "error", "emulated",
                               "input_sha256", "wall_ms")
    _ACCURACY_KEY = ("run_id", "device", "variant", "task", "request_id")

    def put_accuracy_samples(self, rows: Iterable[Dict[str, Any]]) -> int:
        """Store per-sample rows; the same (run, device, variant, task, request) again replaces
        it (scoring is deterministic: re-scoring a pulled run gives the same rows)."""
        columns = self.ACCURACY_SAMPLE_COLUMNS
        values = []
        for row in rows:
            item = {c: row.get(c) for c in columns}
            item["refs"] = row["refs"] if isinstance(row.get("refs"), str) else json.dumps(row.get("refs") or [])
            item["scores"] = (row["scores"] if isinstance(row.get("scores"), str)
                              else json.dumps(row.get("scores") or {}, sort_keys=True))
            item["emulated"] = int(bool(row.get("emulated")))
            values.append(item)
        if not values:
            return 0
        updates = ", ".join("%s = excluded.%s" % (c, c) for c in columns if c not in self._ACCURACY_KEY)
        with self.transaction() as tx:
            tx.executemany(
                "INSERT INTO accuracy_samples (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s"
                % (", ".join(columns), ", ".join(":" + c for c in columns), ", ".join(self._ACCURACY_KEY), updates),
                values)
        return len(values)

    def put_accuracy_result(self, result: Dict[str, Any], data: Optional[str] = None) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO accuracy_results (run_id, device, variant, task, metric, data)"
                " VALUES (:run_id, :device, :variant, :task, :metric, :data)"
                " ON CONFLICT (run_id, device, variant, task, metric) DO UPDATE SET data = excluded.data",
                {"run_id": result["run_id"], "device": result["device"], "variant": result["variant"],
                 "task": result["task"], "metric": result["metric"],
                 "data": data if data is not None else json.dumps(result, sort_keys=True, allow_nan=False)})

    def accuracy_samples(self, run_id: str, device: Optional[str] = None,
                         variant: Optional[str] = None) -> List[Dict[str, Any]]:
        sql = "SELECT %s FROM accuracy_samples WHERE run_id = :run_id" % ", ".join(self.ACCURACY_SAMPLE_COLUMNS)
        params: Dict[str, Any] = {"run_id": run_id}
        if device is not None:
            sql += " AND device = :device"
            params["device"] = device
        if variant is not None:
            sql += " AND variant = :variant"
            params["variant"] = variant
        out = []
        for row in self.query(sql + " ORDER BY device, variant, task, doc_id", params):
            item = dict(zip(self.ACCURACY_SAMPLE_COLUMNS, row))
            item["refs"] = json.loads(item["refs"] or "[]")
            item["scores"] = json.loads(item["scores"] or "{}")
            item["emulated"] = bool(item["emulated"])
            out.append(item)
        return out

    def accuracy_scores(self, run_id: str, device: str, variant: str) -> Dict[str, Dict[str, float]]:
        """{task: {request id: score}}; an unanswered request scores 0 (its stored score or none)."""
        out: Dict[str, Dict[str, float]] = {}
        rows = self.query("SELECT task, request_id, score FROM accuracy_samples WHERE run_id = :run_id"
                          " AND device = :device AND variant = :variant",
                          {"run_id": run_id, "device": device, "variant": variant})
        for task, request_id, score in rows:
            out.setdefault(task, {})[request_id] = float(score or 0.0)
        return out

    def accuracy_results(self, run_id: str) -> List[Dict[str, Any]]:
        rows = self.query("SELECT data FROM accuracy_results WHERE run_id = :run_id"
                          " ORDER BY device, task, metric, variant", {"run_id": run_id})
        return [json.loads(r[0]) for r in rows]

    def has_accuracy(self) -> bool:
        return bool(self.query("SELECT 1 FROM accuracy_results LIMIT 1")
                    or self.query("SELECT 1 FROM accuracy_samples LIMIT 1"))

    def import_accuracy_sqlite(self, path: Any) -> Tuple[int, int]:
        """Import a pre-schema-4 ``results/accuracy.sqlite`` (samples, results) into this store;
        rows the store already has are kept as they are. Returns (samples, results) imported."""
        import sqlite3

        source = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            columns = [r[1] for r in source.execute("PRAGMA table_info(samples)")]
            missing = [c for c in self._ACCURACY_KEY if c not in columns]
            if missing:
                raise StoreError("%s is not an accuracy store (table samples lacks %s)" % (path, ", ".join(missing)))
            wanted = [c for c in self.ACCURACY_SAMPLE_COLUMNS if c in columns]
            rows = [dict(zip(wanted, r)) for r in source.execute("SELECT %s FROM samples" % ", ".join(wanted))]
            results = source.execute("SELECT run_id, device, variant, task, metric, data FROM results").fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError("cannot import %s: %s" % (path, exc)) from None
        finally:
            source.close()
        columns_sql = ", ".join(self.ACCURACY_SAMPLE_COLUMNS)
        samples = [{c: row.get(c) for c in self.ACCURACY_SAMPLE_COLUMNS} for row in rows]
        for sample in samples:
            sample["emulated"] = int(bool(sample["emulated"]))
        added_samples = added_results = 0
        with self.transaction() as tx:
            for start in range(0, len(samples), 1000):
                added_samples += max(0, tx.executemany(
                    "INSERT INTO accuracy_samples (%s) VALUES (%s) ON CONFLICT DO NOTHING"
                    % (columns_sql, ", ".join(":" + c for c in self.ACCURACY_SAMPLE_COLUMNS)),
                    samples[start:start + 1000]))
            for run_id, device, variant, task, metric, data in results:
                added_results += tx.execute(
                    "INSERT INTO accuracy_results (run_id, device, variant, task, metric, data)"
                    " VALUES (:r, :d, :v, :t, :m, :data) ON CONFLICT DO NOTHING",
                    {"r": run_id, "d": device, "v": variant, "t": task, "m": metric, "data": data})
        return added_samples, added_results
