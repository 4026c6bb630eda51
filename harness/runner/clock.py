"""The one clock every duration comes from, and a precise wait used by the reference engine."""

from __future__ import annotations

import time

now_ns = time.perf_counter_ns

# Sleeping hands the core back to the OS; the last stretch is spun so a wait ends within
# microseconds of its deadline instead of a scheduler tick (~0.1-1 ms) late.
_SPIN_NS = 2_000_000


def wait_until(deadline_ns: int, busy: bool = False) -> int:
    """Block until perf_counter_ns() >= deadline_ns; return the time it returned at."""
    while True:
        now = time.perf_counter_ns()
        remaining = deadline_ns - now
        if remaining <= 0:
            return now
        if not busy and remaining > _SPIN_NS:
            time.sleep((remaining - _SPIN_NS) / 1e9)


def ns_to_ms(ns: int) -> float:
    return ns / 1e6
