"""`regress` and `render_history` over a synthetic history of 100k measurements.

    python benchmarks/regress_history.py [--nights 1000] [--store sqlite|URL]

Writes a nightly history (5 boards x 2 workloads x N nights x (1 warm-up + 9 measured
repetitions) = 100k Measurement records at the default 1000 nights, every metric a real record
carries) into a fresh SQLite store (or the PostgreSQL URL given), with a 10% TTFT step planted on
one board 3 nights before the end, then times `regress` (baseline last:7) and `render_history`
(the default dashboard metrics) and prints both against the 10 s target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.analysis.regress import regress  # noqa: E402
from harness.report.history import render_history  # noqa: E402
from harness.store import open_store  # noqa: E402
from tests.regress.history_factory import BOARDS, WORKLOADS, Plant, build_history  # noqa: E402

TARGET_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=9, help="measured repetitions per night (plus 1 warm-up)")
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temporary file) or a PostgreSQL URL")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-regress-") as tmp:
        location = str(Path(tmp) / "bench.sqlite") if args.store == "sqlite" else args.store
        store = open_store(location)
        plant = Plant("orin-nano", "ttft_ms", 0.10, args.nights - 3, workload="video-8f",
                      provenance={"engine_versions": {"synthetic": "1.1"}})
        started = time.perf_counter()
        build_history(store, nights=args.nights, reps=args.reps, warmup=1, plants=[plant], seed=0, batch_nights=50)
        built = time.perf_counter() - started
        n_records = args.nights * len(BOARDS) * len(WORKLOADS) * (args.reps + 1)
        n_values = store.query("SELECT COUNT(*) FROM measurement_values")[0][0]

        started = time.perf_counter()
        report = regress(store, "last:7")
        t_regress = time.perf_counter() - started
        started = time.perf_counter()
        page = render_history(store, Path(tmp) / "history")
        t_history = time.perf_counter() - started
        flagged = sorted({(c.device, c.workload) for c in report.regressions})

        lines = [
            "history: %d measurements (%d nights, %d boards, %d workloads, 1+%d repetitions), %d stored values, "
            "built in %.1f s (%s)" % (n_records, args.nights, len(BOARDS), len(WORKLOADS), args.reps, n_values, built,
                                      store.location),
            "regress last:7: %.2f s (target <= %.0f s) - %d series compared, flagged %s, exit code %d"
            % (t_regress, TARGET_S, len(report.changes), flagged, report.exit_code),
            "render_history: %.2f s (target <= %.0f s) - %s, %.1f MB" % (
                t_history, TARGET_S, page.name, page.stat().st_size / 1e6),
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        store.close()
    return 0 if t_regress <= TARGET_S and t_history <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
