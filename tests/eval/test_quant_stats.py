"""Quantization statistics a reader can act on: paired-bootstrap CI of the accuracy change, answer
agreement, McNemar p and the non-inferiority verdict - against hand-computed cases.

Hand computation for n = 500 paired 0/1 scores with d = b - a per question: the mean of d is
(c - b) / n and its standard error sqrt((b + c)/n - mean^2) / sqrt(n) (b, c = discordant pairs).
The percentile bootstrap CI must sit within a resampling step (1/n = 0.2 pp) and a little
Monte-Carlo noise of mean -/+ 1.96 SE.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import pytest

from harness.eval.stats import (
    INFERIOR,
    NON_INFERIOR,
    agreement_rate,
    compare_pair,
    non_inferiority_verdict,
    paired_bootstrap_ci,
)

N = 500


def scores(only_a: int, only_b: int, both: int, n: int = N) -> Tuple[List[float], List[float]]:
    """Paired 0/1 scores: ``only_a`` questions right only for a, ``only_b`` only for b, ``both``
    right for both, the rest wrong for both."""
    neither = n - only_a - only_b - both
    a = [1.0] * only_a + [0.0] * only_b + [1.0] * both + [0.0] * neither
    b = [0.0] * only_a + [1.0] * only_b + [1.0] * both + [0.0] * neither
    return a, b


def normal_ci(only_a: int, only_b: int, n: int = N) -> Tuple[float, float]:
    mean = (only_b - only_a) / n
    se = math.sqrt((only_a + only_b) / n - mean * mean) / math.sqrt(n)
    return mean - 1.96 * se, mean + 1.96 * se


@pytest.mark.parametrize("only_a, only_b, margin, verdict", [
    (30, 0, 2, INFERIOR),  # -6 pp, CI about -8.1..-3.9: wholly below -2
    (5, 5, 2, NON_INFERIOR),  # 0 pp, CI about -1.2..+1.2: wholly above -2
    (15, 10, 2, "inconclusive at n=500"),  # -1 pp, CI about -3.0..+1.0: straddles -2
    (15, 10, 4, NON_INFERIOR),  # the same data with a 4 pp margin
    (0, 0, 2, NON_INFERIOR),  # identical answers: CI 0..0
    (3, 20, 2, NON_INFERIOR),  # a variant better than the reference
])
def test_verdicts_on_hand_computed_cases(only_a: int, only_b: int, margin: float, verdict: str) -> None:
    a, b = scores(only_a, only_b, both=400)
    low, high = paired_bootstrap_ci(a, b)
    expect_low, expect_high = normal_ci(only_a, only_b)
    assert abs(low - expect_low) <= 0.004 and abs(high - expect_high) <= 0.004, (low, high, expect_low, expect_high)
    assert low <= (only_b - only_a) / N <= high
    assert non_inferiority_verdict(low, high, margin, N) == verdict


def test_verdict_boundaries_and_missing_inputs() -> None:
    # a bound exactly on -margin is not past it
    assert non_inferiority_verdict(-0.02, 0.01, 2, 300) == "inconclusive at n=300"
    assert non_inferiority_verdict(-0.0199, 0.01, 2, 300) == NON_INFERIOR
    assert non_inferiority_verdict(-0.05, -0.02, 2, 300) == "inconclusive at n=300"
    assert non_inferiority_verdict(-0.05, -0.0201, 2, 300) == INFERIOR
    assert non_inferiority_verdict(-0.05, -0.03, None, 300) == "no margin declared"
    assert non_inferiority_verdict(None, None, 2, 0) == "no answers to compare"


def test_bootstrap_is_paired_not_two_sample() -> None:
    # 480 questions both right, 20 both wrong: the variants agree everywhere. A two-sample
    # bootstrap would give a CI of about +/-2.7 pp; pairing gives exactly 0.
    a, b = scores(0, 0, both=480)
    assert paired_bootstrap_ci(a, b) == (0.0, 0.0)
    with pytest.raises(ValueError, match="no paired scores"):
        paired_bootstrap_ci([], [])


def test_agreement_counts_normalised_answers_on_common_questions() -> None:
    a = {"q1": "Red", "q2": "yes", "q3": "circle", "q4": "no"}
    b = {"q1": " red.", "q2": "no", "q3": "circle", "q5": "yes"}
    assert agreement_rate(a, b) == pytest.approx(2 / 3)
    assert agreement_rate(a, {}) is None


def test_compare_pair_puts_it_together() -> None:
    a, b = scores(30, 0, both=400)
    keys = ["easy_vqa/%d" % i for i in range(N)]
    sa: Dict[str, float] = dict(zip(keys, a))
    sb: Dict[str, float] = dict(zip(keys, b))
    answers_a = {k: "yes" if s else "no" for k, s in sa.items()}
    answers_b = {k: "yes" if s else "no" for k, s in sb.items()}
    pair = compare_pair("F16", "Q4_K_M", sa, sb, answers_a, answers_b, margin_pp=2)
    assert (pair.a, pair.b, pair.n_pairs) == ("F16", "Q4_K_M", N)
    assert pair.delta == pytest.approx(-0.06) and pair.agreement == pytest.approx(470 / 500)
    assert pair.p_value is not None and pair.p_value < 0.001 and pair.verdict == INFERIOR
    assert pair.ci_high is not None and pair.ci_high < -0.02
