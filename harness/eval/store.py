"""Per-sample answers and per-variant accuracy, in the results store (schema 4).

Accuracy used to live in ``results/accuracy.sqlite`` beside the measurement store; it is now two
tables of the store itself (``accuracy_samples``, ``accuracy_results``), on SQLite and PostgreSQL
alike, so `bench regress`, the procurement report and the history read it from the store named by
``--store``. Rows join the measurements on (run_id, device, variant). Writing the same run twice
replaces its rows (scoring is deterministic: re-scoring a pulled run gives the same numbers).

An existing ``results/accuracy.sqlite`` is imported into the store the first time an
:class:`AccuracyStore` is opened over that results directory (recorded in the store's ``meta``,
so it happens once; the file itself is left in place, untouched).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ..store import BaseStore, open_store

FILE_NAME = "accuracy.sqlite"  # the pre-schema-4 file, imported on first open
_IMPORTED_KEY = "imported:%s"


class AccuracyStore:
    """Accuracy rows of one results store. ``owns``: close the store with this object."""

    def __init__(self, store: BaseStore, owns: bool = False, legacy_dir: Optional[Path] = None) -> None:
        self.store = store
        self._owns = owns
        self.imported: Tuple[int, int] = (0, 0)
        if legacy_dir is not None:
            self.imported = import_legacy(store, Path(legacy_dir))

    @classmethod
    def in_results(cls, results_dir: Path, store: Union[BaseStore, str, Path, None] = None) -> "AccuracyStore":
        """The store ``store`` (a store, a URL or a path; default ``results_dir/bench.sqlite``),
        with ``results_dir/accuracy.sqlite`` imported into it if one is there."""
        # a URL or a path is opened here; anything else is an open store (a BaseStore or a proxy
        # over one, such as the worker's reconnecting store) and stays the caller's to close
        if store is None or isinstance(store, (str, Path)):
            opened = open_store(store if store is not None else Path(results_dir) / "bench.sqlite")
            return cls(opened, owns=True, legacy_dir=Path(results_dir))
        return cls(store, owns=False, legacy_dir=Path(results_dir))

    def close(self) -> None:
        if self._owns:
            self.store.close()

    def put_samples(self, rows: Iterable[Dict[str, Any]]) -> int:
        return self.store.put_accuracy_samples(rows)

    def put_result(self, result: Dict[str, Any]) -> None:
        self.store.put_accuracy_result(result)

    def samples(self, run_id: str, device: Optional[str] = None, variant: Optional[str] = None) -> List[Dict[str, Any]]:
        return self.store.accuracy_samples(run_id, device, variant)

    def scores(self, run_id: str, device: str, variant: str) -> Dict[str, Dict[str, float]]:
        """{task: {request id: score}} of one run's device and variant; {} if it answered nothing.

        A request the board failed to answer scores 0 (its stored score, or 0 when it has none):
        comparisons over runs must see a variant that stops answering as getting worse."""
        return self.store.accuracy_scores(run_id, device, variant)

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
        return self.store.accuracy_results(run_id)


def import_legacy(store: BaseStore, results_dir: Path) -> Tuple[int, int]:
    """Import ``results_dir/accuracy.sqlite`` once per (file, size, mtime); (samples, results) added."""
    path = Path(results_dir) / FILE_NAME
    if not path.is_file():
        return (0, 0)
    stat = path.stat()
    stamp = json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    key = _IMPORTED_KEY % path.resolve()
    done = store.query("SELECT value FROM meta WHERE key = :key", {"key": key})
    if done and done[0][0] == stamp:
        return (0, 0)
    added = store.import_accuracy_sqlite(path)
    with store.transaction() as tx:
        tx.execute("INSERT INTO meta(key, value) VALUES (:key, :value)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value", {"key": key, "value": stamp})
    return added
