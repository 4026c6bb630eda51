"""Breaks the runner on purpose, for the timing-truth mutation tests (tests/core/test_timing_truth.py).

Put this directory first on PYTHONPATH of the runner process only and name the fault in
TRUTH_MUTATION:
  clock_scale=K  the interpreter's monotonic clocks (perf_counter[_ns], monotonic[_ns]) run at K
                 times real speed from now on
  drop_token     the runner's announcer loses the fifth token of every query
  double_first   the runner's announcer counts the first token of every query twice
The reference engine's process starts with ``python -I -S`` and never loads this file: only the
runner is broken, the engine stays the truth.
"""

import os
import time

_MUTATION = os.environ.get("TRUTH_MUTATION", "")


def _scale_clocks(factor: float) -> None:
    for name in ("perf_counter_ns", "monotonic_ns"):
        real = getattr(time, name)
        base = real()
        setattr(time, name, lambda real=real, base=base: base + int((real() - base) * factor))
    for name in ("perf_counter", "monotonic"):
        real = getattr(time, name)
        base = real()
        setattr(time, name, lambda real=real, base=base: base + (real() - base) * factor)


def _break_tokens(mode: str) -> None:
    from harness.runner.backends import base

    original = base.Announcer.token

    def token(self, count=1, at=None):
        calls = getattr(self, "_mutation_calls", 0) + 1
        self._mutation_calls = calls
        if mode == "drop_token" and calls == 5:
            return None
        original(self, count, at)
        if mode == "double_first" and calls == 1:
            original(self, count, at)
        return None

    base.Announcer.token = token


if _MUTATION.startswith("clock_scale="):
    _scale_clocks(float(_MUTATION.split("=", 1)[1]))
elif _MUTATION in ("drop_token", "double_first"):
    _break_tokens(_MUTATION)
elif _MUTATION:
    raise SystemExit("sitecustomize: unknown TRUTH_MUTATION %r" % _MUTATION)
