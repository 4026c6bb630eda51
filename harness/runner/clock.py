"""The one clock every duration comes from: the runner stamps with it (``backends.base.Announcer``)."""

from __future__ import annotations

import time


def now_ns() -> int:
    """The runner's clock (CLOCK_MONOTONIC via perf_counter_ns), looked up at every call so the
    truth tests can show that a wrong interpreter clock is caught."""
    return time.perf_counter_ns()


def ns_to_ms(ns: int) -> float:
    return ns / 1e6
