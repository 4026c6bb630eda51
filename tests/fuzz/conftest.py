"""Shared machinery for the property-based (hypothesis) tests of every reader of foreign text.

Each reader is driven with mutated real samples and random text, then with the fixed adversarial
inputs the issue names (1 MB of text, a 40,000-character line, a 400-digit number, non-ASCII digits).
The timing bound is CPU time of this process (``time.process_time``), so other work on the machine
does not make it flaky; the terminal summary lists, per reader, how many inputs were tried and the
slowest one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import pytest


@dataclass
class ReaderStats:
    inputs: int = 0
    slowest_s: float = 0.0
    slowest_what: str = ""
    notes: List[str] = field(default_factory=list)


_STATS: Dict[str, ReaderStats] = {}


def timed(reader: str, fn: Callable[..., Any], *args: Any, what: str = "") -> Tuple[Any, float]:
    """Run ``fn(*args)``; record it under ``reader``; return (result, CPU seconds)."""
    start = time.process_time()
    result = fn(*args)
    spent = time.process_time() - start
    stats = _STATS.setdefault(reader, ReaderStats())
    stats.inputs += 1
    if spent > stats.slowest_s:
        stats.slowest_s = spent
        if not what:
            text = args[0] if args else ""
            what = "%s of %d chars" % (type(text).__name__, len(text)) if hasattr(text, "__len__") else repr(text)[:60]
        stats.slowest_what = what
    return result, spent


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _STATS:
        return
    terminalreporter.section("fuzz: inputs tried per reader, slowest case (CPU time)")
    for reader in sorted(_STATS):
        s = _STATS[reader]
        terminalreporter.write_line("%-34s %6d inputs  slowest %7.1f ms  (%s)" % (reader, s.inputs, s.slowest_s * 1e3,
                                                                              s.slowest_what))


@pytest.fixture
def fuzz_stats() -> Dict[str, ReaderStats]:
    return _STATS
