"""The results schema and its ordered migrations, written once for SQLite and PostgreSQL.

Both databases get the same tables and columns. The few spellings that differ are template fields
filled per dialect:

- ``{rowid}``: SQLite tables have an implicit ``rowid`` (insertion order); PostgreSQL gets an
  explicit ``rowid BIGSERIAL`` column of the same name, so every ``ORDER BY rowid`` means the same.
- ``{bigint}`` / ``{double}``: SQLite's INTEGER and REAL are already 64-bit; PostgreSQL's REAL is
  32-bit, so values use DOUBLE PRECISION and byte offsets BIGINT there.
- ``{without_rowid}``: the values table is a clustered index in SQLite (it is only ever read by
  its primary key prefix), a plain table in PostgreSQL.

A migration is a list of steps; a step is SQL text or a Python callable that gets the open
transaction (for backfills that need to parse stored JSON). Each migration runs in one transaction
together with the bump of ``meta.schema_version``, so a crash leaves the previous version intact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

SCHEMA_VERSION = 4

DIALECT_FIELDS: Dict[str, Dict[str, str]] = {
    "sqlite": {"rowid": "", "bigint": "INTEGER", "double": "REAL", "without_rowid": " WITHOUT ROWID"},
    "postgresql": {"rowid": "rowid BIGSERIAL NOT NULL,", "bigint": "BIGINT", "double": "DOUBLE PRECISION",
                   "without_rowid": ""},
}


class Tx(Protocol):
    """What a migration step (and the store's own code) may do inside one transaction."""

    def execute(self, sql: str, params: Optional[Mapping[str, Any]] = None) -> int: ...

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> int: ...

    def query(self, sql: str, params: Optional[Mapping[str, Any]] = None) -> List[Tuple[Any, ...]]: ...


Step = Union[str, Callable[[Tx], None]]


# -- what the history tables hold, computed from one Measurement record --------------------------
def provenance_context(record: Mapping[str, Any]) -> Dict[str, Any]:
    """The record's provenance plus the two things that explain a change but live elsewhere in the
    record: the backend name and the power mode read just before the repetition (telemetry)."""
    context = dict(record.get("provenance") or {})
    # what else ran on the machine differs every repetition: machine state, not configuration
    context.pop("interference", None)
    context["backend"] = record.get("backend", "")
    before = (record.get("telemetry") or {}).get("before") or {}
    power_mode = before.get("power_mode") if isinstance(before, dict) else None
    if power_mode:
        context["power_mode"] = power_mode
    return context


def context_sha256(context: Mapping[str, Any]) -> str:
    text = json.dumps(context, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def measured_values(record: Mapping[str, Any]) -> List[Tuple[str, float]]:
    """(metric, value) for the numbers a summary would use: measured (not warm-up), successful
    repetitions, finite numeric metrics only. Everything else stays in the record's JSON."""
    if record.get("warmup") or record.get("status") != "ok":
        return []
    out: List[Tuple[str, float]] = []
    for name, value in (record.get("metrics") or {}).items():
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number == number and number not in (float("inf"), float("-inf")):
            out.append((str(name), number))
    return out


@dataclass(frozen=True)
class RunHistoryInfo:
    """What a run's measurements say about it, merged into the runs row as records arrive."""

    variants: Tuple[str, ...]  # "device/variant"
    runner_hashes: Tuple[str, ...]
    model_hashes: Tuple[Tuple[str, str], ...]  # ("device/variant", sha256)


def run_history_info(records: Iterable[Mapping[str, Any]]) -> Dict[str, RunHistoryInfo]:
    variants: Dict[str, set] = {}
    runners: Dict[str, set] = {}
    models: Dict[str, Dict[str, str]] = {}
    for record in records:
        run_id = str(record.get("run_id", ""))
        key = "%s/%s" % (record.get("device", ""), record.get("variant", ""))
        variants.setdefault(run_id, set()).add(key)
        provenance = record.get("provenance") or {}
        runner = provenance.get("runner_hash")
        if runner:
            runners.setdefault(run_id, set()).add(str(runner))
        sha = provenance.get("model_sha256")
        if sha:
            models.setdefault(run_id, {})[key] = str(sha)
    return {
        run_id: RunHistoryInfo(
            tuple(sorted(names)), tuple(sorted(runners.get(run_id, ()))),
            tuple(sorted(models.get(run_id, {}).items())),
        )
        for run_id, names in variants.items()
    }


def merge_run_info(tx: Tx, infos: Mapping[str, RunHistoryInfo]) -> None:
    """Fold new variants, runner hashes and model hashes into the runs rows (never removes any)."""
    for run_id, info in infos.items():
        rows = tx.query("SELECT variants, runner_hashes, model_hashes FROM runs WHERE run_id = :run_id",
                        {"run_id": run_id})
        if not rows:
            continue
        variants = json.loads(rows[0][0] or "[]")
        runners = json.loads(rows[0][1] or "[]")
        models = json.loads(rows[0][2] or "{}")
        new_variants = sorted(set(variants) | set(info.variants))
        new_runners = sorted(set(runners) | set(info.runner_hashes))
        new_models = dict(models)
        new_models.update(dict(info.model_hashes))
        if (new_variants, new_runners, new_models) != (variants, runners, models):
            tx.execute(
                "UPDATE runs SET variants = :v, runner_hashes = :r, model_hashes = :m WHERE run_id = :run_id",
                {"v": json.dumps(new_variants), "r": json.dumps(new_runners),
                 "m": json.dumps(new_models, sort_keys=True), "run_id": run_id},
            )


INSERT_VALUE = (
    "INSERT INTO measurement_values(metric, device, suite, workload, variant, run_id, repetition, value)"
    " VALUES (:metric, :device, :suite, :workload, :variant, :run_id, :repetition, :value)"
    " ON CONFLICT DO NOTHING"
)
INSERT_PROVENANCE = (
    "INSERT INTO provenances(sha256, record) VALUES (:sha256, :record) ON CONFLICT DO NOTHING"
)


def value_rows(record: Mapping[str, Any]) -> List[Dict[str, Any]]:
    base = {k: record.get(k) for k in ("device", "suite", "workload", "variant", "run_id", "repetition")}
    return [dict(base, metric=name, value=value) for name, value in measured_values(record)]


def _backfill_history(tx: Tx) -> None:
    """Version 1 stores kept only the JSON record: derive the history tables from it, in batches so
    a large store does not need all of it in memory at once."""
    last = -1
    batch = 2000
    while True:
        rows = tx.query(
            "SELECT rowid, record FROM measurements WHERE rowid > :last ORDER BY rowid LIMIT :n",
            {"last": last, "n": batch},
        )
        if not rows:
            return
        values: List[Dict[str, Any]] = []
        contexts: Dict[str, str] = {}
        updates: List[Dict[str, Any]] = []
        records = []
        for rowid, text in rows:
            record = json.loads(text)
            records.append(record)
            context = provenance_context(record)
            sha = context_sha256(context)
            contexts[sha] = json.dumps(context, sort_keys=True, default=str)
            updates.append({"sha": sha, "rowid": rowid})
            values.extend(value_rows(record))
            last = rowid
        if contexts:
            tx.executemany(INSERT_PROVENANCE, [{"sha256": k, "record": v} for k, v in contexts.items()])
        tx.executemany("UPDATE measurements SET provenance_sha256 = :sha WHERE rowid = :rowid", updates)
        if values:
            tx.executemany(INSERT_VALUE, values)
        merge_run_info(tx, run_history_info(records))


MIGRATIONS: Dict[int, List[Step]] = {
    1: [
        """CREATE TABLE runs (
            {rowid}
            run_id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            suite TEXT NOT NULL,
            devices TEXT NOT NULL,
            status TEXT NOT NULL,
            controller_commit TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            info TEXT NOT NULL DEFAULT '{{}}',
            finished_at TEXT
        )""",
        """CREATE TABLE run_devices (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            device TEXT NOT NULL,
            state TEXT NOT NULL,
            error TEXT,
            remote_run_dir TEXT,
            results_offset {bigint} NOT NULL DEFAULT 0,
            info TEXT NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (run_id, device)
        )""",
        """CREATE TABLE measurements (
            {rowid}
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
    # History: what a run covered (variants, runner and model hashes), deduplicated provenance per
    # measurement, and the measured metric values in their own indexed table so regressions and
    # dashboards over 100k measurements never parse JSON records.
    2: [
        "ALTER TABLE runs ADD COLUMN variants TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN runner_hashes TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN model_hashes TEXT NOT NULL DEFAULT '{{}}'",
        "CREATE INDEX runs_created ON runs(created_at)",
        "CREATE TABLE provenances (sha256 TEXT PRIMARY KEY, record TEXT NOT NULL)",
        "ALTER TABLE measurements ADD COLUMN provenance_sha256 TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE measurement_values (
            metric TEXT NOT NULL,
            device TEXT NOT NULL,
            suite TEXT NOT NULL,
            workload TEXT NOT NULL,
            variant TEXT NOT NULL,
            run_id TEXT NOT NULL,
            repetition INTEGER NOT NULL,
            value {double} NOT NULL,
            PRIMARY KEY (metric, device, suite, workload, variant, run_id, repetition)
        ){without_rowid}""",
        "CREATE INDEX measurement_values_run ON measurement_values(run_id)",
        _backfill_history,
    ],
    # Liveness: the controller that runs a run (host, pid) and its heartbeat (epoch seconds), so a
    # run whose controller was killed reads as abandoned instead of "running" forever. Additive:
    # older rows keep NULL / {} and are judged by their stored status alone.
    3: [
        "ALTER TABLE runs ADD COLUMN heartbeat_at {double}",
        "ALTER TABLE runs ADD COLUMN controller TEXT NOT NULL DEFAULT '{{}}'",
    ],
    # One store: accuracy (per-sample answers and per-variant results of lm-eval tasks), which
    # lived in results/accuracy.sqlite beside the store, moves in; rows join runs on run_id.
    # harness.eval.store imports an existing accuracy.sqlite on first open (import_accuracy_sqlite).
    4: [
        """CREATE TABLE accuracy_samples (
            run_id TEXT NOT NULL,
            device TEXT NOT NULL,
            variant TEXT NOT NULL,
            task TEXT NOT NULL,
            request_id TEXT NOT NULL,
            doc_id INTEGER NOT NULL,
            question TEXT,
            prompt TEXT,
            answer TEXT,
            raw_answer TEXT,
            refs TEXT,
            score {double},
            scores TEXT,
            status TEXT NOT NULL,
            error TEXT,
            emulated INTEGER NOT NULL DEFAULT 0,
            input_sha256 TEXT,
            wall_ms {double},
            PRIMARY KEY (run_id, device, variant, task, request_id)
        )""",
        """CREATE TABLE accuracy_results (
            run_id TEXT NOT NULL,
            device TEXT NOT NULL,
            variant TEXT NOT NULL,
            task TEXT NOT NULL,
            metric TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, device, variant, task, metric)
        )""",
    ],
}


def render_step(step: str, dialect: str) -> str:
    return step.format(**DIALECT_FIELDS[dialect])
