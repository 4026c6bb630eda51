"""What the accuracy path costs around the model: lm-eval request building, shipping the batch,
the runner's per-request overhead, pulling answers and lm-eval scoring.

    python -m benchmarks.eval_accuracy_path [--limit 500] [--time-scale 0]

Runs the shipped easy_vqa subset through the reference engine on the local transport (answers
from its emulated policy, so the model costs nothing with --time-scale 0): every second measured
is harness overhead. Prints each stage's wall time and the runner's per-request overhead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import yaml

from harness.config.devices import load_devices
from harness.eval.board import mirror_path, read_answers
from harness.eval.config import load_suite_with_accuracy
from harness.eval.requests import build_requests
from harness.eval.suite import run_suite
from harness.plan import Paths

REPO = Path(__file__).resolve().parents[1]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--time-scale", type=float, default=1e-6,
                        help="reference engine time scale (tiny: the emulated model costs ~nothing)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    requests = build_requests("easy_vqa", limit=args.limit)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        import shutil

        shutil.copytree(REPO / "suites", project / "suites")
        device = {"name": "emu", "type": "local", "transport": "local", "workdir": "results/work", "idle_s": 0,
                  "backend": "reference", "backend_options": {"profile": "rtx", "time_scale": args.time_scale},
                  "models": [{"variant": "emulated", "path": "emulated"}]}
        (project / "devices.yaml").write_text(yaml.safe_dump({"devices": [device]}))
        paths = Paths(project / "devices.yaml", project / "suites", project / "results", project / "reports")
        inventory = load_devices(paths.devices_file)
        suite, accuracy = load_suite_with_accuracy(project / "suites" / "vqa-quant.yaml")
        assert accuracy is not None
        accuracy = accuracy.model_copy(update={"limit": args.limit, "reference_variant": "emulated",
                                               "min_accuracy": None})
        started = time.perf_counter()
        out = run_suite(suite, accuracy, inventory.select("emu"), inventory, paths)
        total_s = time.perf_counter() - started
        answers = read_answers(mirror_path(paths.results_dir, out["run_id"], "emu"))
    walls = [a.wall_ms for a in answers if a.wall_ms is not None]
    sys.stdout.write(
        "requests built by lm-eval: %d in %.2f s (%d unique images)\n"
        "run_suite end to end (plan, ship, runner, pull, lm-eval scoring): %.2f s\n"
        "answers pulled: %d; runner time per answer (engine call, emulated): median %.3f ms\n"
        "=> harness overhead per request: %.2f ms\n"
        % (len(requests), build_s, len({n for r in requests for n in r.images}), total_s, len(answers),
           statistics.median(walls) if walls else float("nan"), 1000 * total_s / max(1, len(answers))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
