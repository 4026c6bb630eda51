"""--until-stable on the runner (harness/runner/stability.py): the CI of the median and the loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy.stats import binom

from harness.runner.protocol import GenerationSpec, ProtocolError
from harness.runner.stability import median_ci, relative_ci_width

from .test_interference import run_runner_gen


def test_order_statistic_ci_matches_the_binomial_table() -> None:
    # the textbook table (e.g. Conover, Practical Nonparametric Statistics): n=6 -> (x1, x6),
    # n=10 -> (x2, x9), n=20 -> (x6, x15); checked here against scipy's binomial for every n
    assert median_ci(range(1, 7)) == (1, 6)
    assert median_ci(range(1, 11)) == (2, 9)
    assert median_ci(range(1, 21)) == (6, 15)
    for n in range(6, 60):
        low, high = median_ci(range(1, n + 1))
        k = int(low)
        assert binom.cdf(k - 1, n, 0.5) <= 0.025 < binom.cdf(k, n, 0.5), n
        assert high == n - k + 1
    assert median_ci(range(5)) is None  # five samples cannot give a 95% CI of the median
    assert relative_ci_width([10.0] * 5) == math.inf
    assert relative_ci_width([10.0, 10.0, 10.0, 10.0, 10.0, 11.0]) == pytest.approx(0.1)


def test_spec_refuses_a_cap_below_the_planned_repetitions() -> None:
    with pytest.raises(ProtocolError, match="max_repetitions"):
        GenerationSpec(output_tokens=4, repetitions=5, until_stable=0.05, max_repetitions=3)
    assert GenerationSpec(output_tokens=4, warmup=1, repetitions=5, until_stable=0.05,
                          max_repetitions=9).planned_total == 10


def test_the_runner_stops_when_stable_and_at_the_cap(tmp_path: Path) -> None:
    phases = {"preprocess_ms": 2.0, "vision_encode_ms": 3.0, "prefill_ms": 4.0, "tpot_ms": 1.0,
              "n_input_tokens": 10, "n_visual_tokens": 4}
    # a 1000% width is reached as soon as a CI exists (6 measured repetitions), however loaded the machine
    loose = run_runner_gen(tmp_path / "loose", {"phases": {"image": phases}},
                           GenerationSpec(output_tokens=4, warmup=1, repetitions=3, until_stable=10.0,
                                          max_repetitions=12))
    assert sum(not r["warmup"] for r in loose) == 6
    # a width no real clock reaches: the cap decides
    tight = run_runner_gen(tmp_path / "tight", {"phases": {"image": phases}},
                           GenerationSpec(output_tokens=4, warmup=1, repetitions=3, until_stable=1e-12,
                                          max_repetitions=8))
    assert sum(not r["warmup"] for r in tight) == 8
    # without the option: exactly the planned repetitions
    plain = run_runner_gen(tmp_path / "plain", {"phases": {"image": phases}},
                           GenerationSpec(output_tokens=4, warmup=1, repetitions=3))
    assert sum(not r["warmup"] for r in plain) == 3
