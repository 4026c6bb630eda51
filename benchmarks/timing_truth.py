"""Timing truth figures in one run: the runner measuring the kernel-timer-paced reference engine.

    python benchmarks/timing_truth.py [--reps 5]

Prints, per boundary, the configured offset from the query's start, the median the runner
measured, and the median the engine process reports from its own clock; then the same truth check
the test suite runs (tests/core/test_timing_truth.py) for a clean runner and for each mutation
(runner clock x0.5 and x2, one token dropped, the first token counted twice), with what it found.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.core.test_timing_truth import (  # noqa: E402  (the suite's own check, not a copy)
    PHASES, TOKENS, engine_boundaries, measured_boundaries, pacing, run_runner, truth_violations)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        records, wall_ms = run_runner(Path(tmp), {"phases": {"image": PHASES}}, reps=args.reps)
        measured = [r for r in records if not r["warmup"]]
        want = pacing().boundaries
        last = "token_%d" % (TOKENS - 1)
        print("reference engine process, %d repetitions (+1 warm-up), %d tokens; medians in ms" % (args.reps, TOKENS))
        print("  %-15s %10s %10s %10s %12s" % ("boundary", "configured", "runner", "engine", "runner-cfg"))
        for name in ("preprocess_end", "vision_end", "token_0", "token_1", last):
            ours = statistics.median(measured_boundaries(r)[name] for r in measured)
            theirs = (statistics.median(engine_boundaries(r, last)[name] for r in measured)
                      if name in engine_boundaries(measured[0], last) else float("nan"))
            print("  %-15s %10.3f %10.3f %10.3f %+12.3f" % (name, want[name], ours, theirs, ours - want[name]))
        for key, cfg in (("tpot_ms", PHASES["tpot_ms"]), ("vision_encode_ms", PHASES["vision_encode_ms"]),
                         ("prefill_ms", PHASES["prefill_ms"])):
            ours = statistics.median(r["metrics"][key] for r in measured)
            print("  %-15s %10.3f %10.3f %10s %+12.3f" % (key, cfg, ours, "", ours - cfg))
        print("  outer clock: sum of e2e %.1f ms <= runner process wall %.1f ms" % (
            sum(r["metrics"]["e2e_ms"] for r in records), wall_ms))
        problems = truth_violations(records, pacing(), wall_ms)
        print("truth check, clean runner: %s" % ("PASS" if not problems else "FAIL: %s" % problems[:3]))
        status = 0 if not problems else 1
        for mutation, tokens in (("clock_scale=0.5", TOKENS), ("clock_scale=2.0", 60), ("drop_token", TOKENS),
                                 ("double_first", TOKENS)):
            records, wall_ms = run_runner(Path(tmp), {"phases": {"image": PHASES}}, reps=args.reps, tokens=tokens,
                                          mutation=mutation)
            problems = truth_violations(records, pacing(tokens), wall_ms)
            print("truth check, %-16s %s (%d findings), e.g. %s" % (
                mutation + ":", "FAILS as it must" if problems else "PASSES (the check is blind!)",
                len(problems), problems[0] if problems else "-"))
            status |= 0 if problems else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
