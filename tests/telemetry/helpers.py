"""Helpers for the telemetry tests: fake sysfs/procfs trees, recorded command output, a fake clock."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from harness.runner.telemetry.base import TelemetrySource

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def write_tree(root: Path, files: Dict[str, str]) -> Path:
    """Create ``files`` ({"/sys/...": "content"}) under ``root``; returns root."""
    for rel, content in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


class FakeClock:
    """A perf_counter_ns stand-in that tests move by hand."""

    def __init__(self, t_ns: int = 1_000_000_000) -> None:
        self.t = t_ns

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(round(seconds * 1e9))


class FakeRunner:
    """A command_runner that answers from recorded outputs: {argv[0]: (rc, stdout, stderr)}."""

    def __init__(self, answers: Dict[str, Tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: List[List[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> Tuple[int, str, str]:
        self.calls.append(list(argv))
        key = " ".join(argv)
        for name in (key, argv[0]):
            if name in self.answers:
                answer = self.answers[name]
                return answer if isinstance(answer, tuple) else answer()
        return 127, "", "command not found: %s" % argv[0]


# A smooth synthetic power trace with a known integral.
MEAN_W, AMP_W, PERIOD_S = 4.0, 2.0, 1.7


def power_at(t_s: float) -> float:
    return MEAN_W + AMP_W * math.sin(2 * math.pi * t_s / PERIOD_S)


def energy_between(a_s: float, b_s: float) -> float:
    """Exact integral of power_at over [a_s, b_s]."""
    k = 2 * math.pi / PERIOD_S
    return MEAN_W * (b_s - a_s) - AMP_W / k * (math.cos(k * b_s) - math.cos(k * a_s))


class FunctionPowerSource(TelemetrySource):
    """read() returns power_at(clock) (and memory that grows with time)."""

    name = "test_power"
    kinds = ("power", "memory")

    def __init__(self, clock: FakeClock, fn=power_at, label: str = "test_power") -> None:
        super().__init__({"label": label})
        self.fake_clock = clock
        self.fn = fn
        self.covers = "synthetic power"

    def read(self):
        t_s = self.fake_clock() / 1e9
        return {"power_w": self.fn(t_s), "mem_mb:rss": 100.0 + t_s}


class FunctionCounterSource(TelemetrySource):
    """An energy counter in uJ that wraps at ``max_range_uj``, unwrapped like RAPL."""

    name = "test_counter"
    kinds = ("energy",)

    def __init__(self, clock: FakeClock, max_range_uj: float = 5_000_000.0, t0_s: float = 0.0) -> None:
        from harness.runner.telemetry.base import CounterUnwrapper

        super().__init__({"label": "test_counter"})
        self.fake_clock = clock
        self.counter = True
        self.t0_s = t0_s
        self.max_range_uj = max_range_uj
        self.unwrap = CounterUnwrapper(max_range_uj)
        self.covers = "synthetic counter"

    def read(self):
        t_s = self.fake_clock() / 1e9
        raw = (energy_between(self.t0_s, t_s) * 1e6) % self.max_range_uj
        total = self.unwrap.update(raw)
        # a deliberately wrong power reading: the window must use the counter
        return {"energy_j": total / 1e6, "power_w": 999.0}


def drive(sampler, clock: FakeClock, seconds: float, rate_hz: float) -> None:
    """Sample with the fake clock at ``rate_hz`` for ``seconds``."""
    for _ in range(int(round(seconds * rate_hz))):
        sampler.sample_once()
        clock.advance(1.0 / rate_hz)
    sampler.sample_once()


def ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def optional(value: Optional[float]) -> float:
    assert value is not None
    return value
