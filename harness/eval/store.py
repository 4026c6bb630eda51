"""Per-sample answers and per-variant accuracy, in ``results/accuracy.sqlite`` (sqlite3).

Kept beside the measurement store (``results/bench.sqlite``) rather than inside it so the two
schemas evolve separately; rows join on (run_id, device, variant). Writing the same run twice
replaces its rows (scoring is deterministic: re-scoring a pulled run gives the same numbers).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

SCHEMA_VERSION = 1
FILE_NAME = "accuracy.sqlite"

_SCHEMA = """
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

_SAMPLE_COLUMNS = ("run_id", "device", "variant", "task", "request_id", "doc_id", "question", "prompt",
                   "answer", "raw_answer", "refs", "score", "scores", "status", "error", "emulated",
                   "input_sha256", "wall_ms")


class AccuracyStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.row_factory = sqlite3.Row
        with self.db:
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @classmethod
    def in_results(cls, results_dir: Path) -> "AccuracyStore":
        return cls(Path(results_dir) / FILE_NAME)

    def close(self) -> None:
        self.db.close()

    def put_samples(self, rows: Iterable[Dict[str, Any]]) -> int:
        values = []
        for row in rows:
            row = dict(row)
            row["refs"] = json.dumps(row.get("refs") or [])
            row["scores"] = json.dumps(row.get("scores") or {}, sort_keys=True)
            row["emulated"] = int(bool(row.get("emulated")))
            values.append(tuple(row.get(c) for c in _SAMPLE_COLUMNS))
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO samples (%s) VALUES (%s)"
                                % (", ".join(_SAMPLE_COLUMNS), ", ".join("?" * len(_SAMPLE_COLUMNS))), values)
        return len(values)

    def put_result(self, result: Dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                            (result["run_id"], result["device"], result["variant"], result["task"],
                             result["metric"], json.dumps(result, sort_keys=True, allow_nan=False)))

    def samples(self, run_id: str, device: Optional[str] = None, variant: Optional[str] = None) -> List[Dict[str, Any]]:
        sql, args = "SELECT * FROM samples WHERE run_id = ?", [run_id]
        if device is not None:
            sql, args = sql + " AND device = ?", args + [device]
        if variant is not None:
            sql, args = sql + " AND variant = ?", args + [variant]
        out = []
        for row in self.db.execute(sql + " ORDER BY device, variant, task, doc_id", args):
            item = dict(row)
            item["refs"] = json.loads(item["refs"] or "[]")
            item["scores"] = json.loads(item["scores"] or "{}")
            item["emulated"] = bool(item["emulated"])
            out.append(item)
        return out

    def scores(self, run_id: str, device: str, variant: str) -> Dict[str, Dict[str, float]]:
        """{task: {request id: score}} of one run's device and variant; {} if it answered nothing.

        A request the board failed to answer scores 0 (its stored score, or 0 when it has none):
        comparisons over runs must see a variant that stops answering as getting worse."""
        out: Dict[str, Dict[str, float]] = {}
        rows = self.db.execute("SELECT task, request_id, score FROM samples WHERE run_id = ? AND device = ? "
                               "AND variant = ?", (run_id, device, variant))
        for row in rows:
            out.setdefault(row["task"], {})[row["request_id"]] = float(row["score"] or 0.0)
        return out

    def variant_accuracy(self, run_ids: Iterable[str]) -> Dict[Tuple[str, str, str], Tuple[float, str, int]]:
        """{(run id, device, variant): (accuracy, task, questions)} for the procurement report; a
        variant that answered nothing has no entry (not 0%). Several tasks: the first by name."""
        out: Dict[Tuple[str, str, str], Tuple[float, str, int]] = {}
        for run_id in run_ids:
            for result in self.results(run_id):
                key = (result["run_id"], result["device"], result["variant"])
                if result.get("accuracy") is not None and key not in out:
                    out[key] = (float(result["accuracy"]), str(result["task"]), int(result.get("n") or 0))
        return out

    def results(self, run_id: str) -> List[Dict[str, Any]]:
        rows = self.db.execute("SELECT data FROM results WHERE run_id = ? ORDER BY device, task, metric, variant",
                               (run_id,))
        return [json.loads(r["data"]) for r in rows]
