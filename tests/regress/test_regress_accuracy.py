"""`bench regress` reads per-sample answers from the results store (--store) and tests accuracy
changes with McNemar on the questions both runs answered."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np

from harness.eval.store import AccuracyStore
from harness.store import open_store

from ..conftest import BENCH, bench_env
from .history_factory import build_history

TASK = "easy_vqa"
N_QUESTIONS = 300


def _rows(run_id: str, device: str, correct: np.ndarray, failed: bool = False) -> List[Dict[str, object]]:
    return [{"run_id": run_id, "device": device, "variant": "fp16", "task": TASK, "request_id": "%s/%d" % (TASK, i),
             "doc_id": i, "question": "what shape is <b>this</b>?", "answer": "" if failed else "circle",
             "refs": ["circle"], "score": 0.0 if failed else float(ok), "status": "error" if failed else "ok",
             "error": "engine crashed" if failed else None}
            for i, ok in enumerate(correct)]


def test_regress_flags_the_accuracy_drop_from_stored_answers(tmp_path: Path) -> None:
    store_path = tmp_path / "history.sqlite"
    store = open_store(store_path)
    runs = build_history(store, nights=10)
    store.close()
    rng = np.random.default_rng(7)
    truth = rng.random(N_QUESTIONS) < 0.87  # greedy answers: the same questions right every night
    right = np.flatnonzero(truth)
    wrong = np.flatnonzero(~truth)
    accuracy = AccuracyStore.in_results(tmp_path / "results", store=store_path)  # one store: the one regressed
    for night, run_id in enumerate(runs):
        latest = night == len(runs) - 1
        for device in ("ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc"):
            correct = truth.copy()
            if latest and device == "orin-nano":
                correct[right[:36]] = False  # 12 points lost: a broken quantization
            if latest and device == "agx-orin":
                correct[right[:2]] = False  # two flips each way: noise
                correct[wrong[:2]] = True
            if latest and device == "upsquared-n":
                correct[wrong[:30]] = True  # a better build
            accuracy.put_samples(_rows(run_id, device, correct, failed=latest and device == "rtx-pc"))
    accuracy.close()
    (tmp_path / "suites").mkdir()

    proc = subprocess.run(BENCH + ["--store", str(store_path), "--results-dir", str(tmp_path / "results"),
                                   "--suites-dir", str(tmp_path / "suites"), "regress", "--baseline", "last:7",
                                   "--metric", "accuracy", "--json", "--markdown", str(tmp_path / "r.md")],
                          cwd=tmp_path, capture_output=True, text=True, env=bench_env(), timeout=300)
    assert proc.returncode == 1, proc.stderr
    changes = {c["device"]: c for c in json.loads(proc.stdout)["changes"] if c["metric"] == "accuracy"}
    assert set(changes) == {"ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc"}
    drop = changes["orin-nano"]
    assert drop["status"] == "regression" and drop["workload"] == TASK and drop["test"].startswith("McNemar")
    assert drop["baseline_median"] == truth.mean() and abs(drop["latest_median"] - (truth.sum() - 36) / N_QUESTIONS) < 1e-12
    assert drop["p_value"] < 1e-6 and drop["n_baseline"] == N_QUESTIONS and drop["baseline_runs"] == [runs[-2]]
    assert changes["rtx-pc"]["status"] == "regression" and changes["rtx-pc"]["latest_median"] == 0.0
    assert changes["agx-orin"]["status"] == "unchanged" and changes["agx-orin"]["p_value"] == 1.0
    assert changes["upsquared-n"]["status"] == "improvement"
    assert changes["ax650n"]["status"] == "unchanged" and changes["ax650n"]["p_value"] == 1.0
    assert "McNemar" in (tmp_path / "r.md").read_text()


def test_regress_without_answers_has_no_accuracy_rows(tmp_path: Path) -> None:
    store_path = tmp_path / "history.sqlite"
    store = open_store(store_path)
    build_history(store, nights=4)
    store.close()
    proc = subprocess.run(BENCH + ["--store", str(store_path), "--results-dir", str(tmp_path / "results"),
                                   "regress", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, env=bench_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in json.loads(proc.stdout)["changes"] if c["metric"] == "accuracy"]
    assert not (tmp_path / "results" / "accuracy.sqlite").exists()  # regress never creates it
