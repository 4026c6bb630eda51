"""One store: accuracy (per-sample answers, per-variant results) lives in the results store on
SQLite and PostgreSQL alike, and an existing results/accuracy.sqlite is imported into it once.

The legacy file is written here with the pre-schema-4 DDL exactly as harness/eval/store.py shipped
it (git show 18170dd:harness/eval/store.py), so the import is tested against the real old format.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from harness.eval.store import FILE_NAME, AccuracyStore
from harness.store import BaseStore, open_store

from ..conftest import bench_env
from ..regress.history_factory import BOARDS, build_history

LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL, device TEXT NOT NULL, variant TEXT NOT NULL, task TEXT NOT NULL,
    request_id TEXT NOT NULL, doc_id INTEGER NOT NULL, question TEXT, prompt TEXT,
    answer TEXT, raw_answer TEXT, refs TEXT, score REAL, scores TEXT,
    status TEXT NOT NULL, error TEXT, emulated INTEGER NOT NULL DEFAULT 0,
    input_sha256 TEXT, wall_ms REAL,
    PRIMARY KEY (run_id, device, variant, task, request_id)
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, device TEXT NOT NULL, variant TEXT NOT NULL, task TEXT NOT NULL,
    metric TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, device, variant, task, metric)
);
"""
TASK = "easy_vqa"


def write_legacy(results_dir: Path, answers: Dict[str, Dict[str, np.ndarray]]) -> Path:
    """results/accuracy.sqlite as the old AccuracyStore wrote it: {run: {device: correct[]}}."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / FILE_NAME
    db = sqlite3.connect(str(path))
    with db:
        db.executescript(LEGACY_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        for run_id, devices in answers.items():
            for device, correct in devices.items():
                for i, ok in enumerate(correct):
                    db.execute("INSERT INTO samples VALUES (?, ?, 'fp16', ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, 'ok', NULL, 0,"
                               " NULL, 12.5)",
                               (run_id, device, TASK, "%s/%d" % (TASK, i), i, "shape %d?" % i,
                                "circle" if ok else "square", "circle" if ok else "square", json.dumps(["circle"]),
                                float(ok), json.dumps({"exact_match": float(ok)})))
                result = {"run_id": run_id, "device": device, "variant": "fp16", "task": TASK,
                          "metric": "exact_match", "n": int(len(correct)), "accuracy": float(np.mean(correct))}
                db.execute("INSERT INTO results VALUES (?, ?, 'fp16', ?, 'exact_match', ?)",
                           (run_id, device, TASK, json.dumps(result, sort_keys=True)))
    db.close()
    return path


def test_legacy_accuracy_file_is_imported_once_into_either_store(any_store: BaseStore, tmp_path: Path) -> None:
    correct = np.array([True, False, True, True])
    write_legacy(tmp_path / "results", {"r1": {"ax650n": correct}})
    accuracy = AccuracyStore.in_results(tmp_path / "results", store=any_store)
    assert accuracy.imported == (4, 1) or (any_store.dialect == "postgresql" and accuracy.imported[1] == 1)
    samples = accuracy.samples("r1")
    assert [s["score"] for s in samples] == [1.0, 0.0, 1.0, 1.0]
    assert samples[1]["answer"] == "square" and samples[0]["refs"] == ["circle"] and samples[0]["wall_ms"] == 12.5
    assert accuracy.scores("r1", "ax650n", "fp16") == {TASK: {"%s/%d" % (TASK, i): float(v) for i, v in enumerate(correct)}}
    assert accuracy.variant_accuracy(["r1"]) == {("r1", "ax650n", "fp16"): (0.75, TASK, 4)}
    # opening again imports nothing: the file is recorded in the store's meta
    again = AccuracyStore.in_results(tmp_path / "results", store=any_store)
    assert again.imported == (0, 0)
    assert len(again.samples("r1")) == 4
    # a re-scored run replaces its rows, it does not add to them
    again.put_samples([dict(samples[1], score=1.0, answer="circle")])
    assert [s["score"] for s in again.samples("r1")] == [1.0, 1.0, 1.0, 1.0]
    assert (tmp_path / "results" / FILE_NAME).exists()  # the old file is left as it was


def test_bench_regress_on_postgres_reads_accuracy_imported_from_the_legacy_file(pg_url: str, tmp_path: Path) -> None:
    """The whole path a team takes: history on PostgreSQL, last year's accuracy.sqlite beside it;
    `bench regress --store postgresql://...` imports the file and flags the accuracy drop."""
    store = open_store(pg_url)
    runs = build_history(store, nights=4, boards=BOARDS[:1])
    device = store.measurements(runs[0])[0]["device"]
    store.close()
    rng = np.random.default_rng(3)
    truth = rng.random(200) < 0.85
    dropped = truth.copy()
    dropped[np.flatnonzero(truth)[:40]] = False  # 20 points lost on the last night
    write_legacy(tmp_path / "results", {run: {device: (dropped if run == runs[-1] else truth)} for run in runs})
    (tmp_path / "suites").mkdir()
    bench = str(Path(sys.executable).parent / "bench")
    proc = subprocess.run([bench, "--store", pg_url, "--results-dir", str(tmp_path / "results"),
                           "--suites-dir", str(tmp_path / "suites"), "regress", "--metric", "accuracy", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, env=bench_env(), timeout=300)
    assert proc.returncode == 1, proc.stderr
    [change] = [c for c in json.loads(proc.stdout)["changes"] if c["metric"] == "accuracy"]
    assert change["status"] == "regression" and change["device"] == device
    assert change["latest_median"] == pytest.approx(dropped.mean()) and change["baseline_median"] == pytest.approx(truth.mean())
    reopened = open_store(pg_url)
    assert len(reopened.accuracy_samples(runs[-1])) == 200  # now in PostgreSQL itself
    reopened.close()
