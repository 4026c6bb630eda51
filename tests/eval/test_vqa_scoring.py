"""VQA answer normalisation and metrics, Wilson intervals and McNemar tests: known numbers."""

from __future__ import annotations

import pytest

from harness.eval.stats import mcnemar_paired, wilson
from harness.eval.vqa import exact_match, normalize_answer, process_results, vqa_soft_accuracy


def test_normalisation_follows_the_vqa_evaluation() -> None:
    assert normalize_answer("  Yes. ") == "yes"
    assert normalize_answer("A Circle!") == "circle"
    assert normalize_answer("two") == "2"
    assert normalize_answer("dont") == "don't"
    assert normalize_answer("the red-ish shape") == "red ish shape"
    assert normalize_answer("1,000") == "1000"


def test_exact_match_and_soft_accuracy() -> None:
    assert exact_match("Triangle.", ["triangle"]) == 1.0
    assert exact_match("square", ["triangle"]) == 0.0
    # VQAv2: 10 annotators; 2 said "red": each leave-one-out subset scores min(matches/3, 1)
    refs = ["red"] * 2 + ["blue"] * 8
    # leaving out a "red" (2 of 10 subsets): 1 match -> 1/3; leaving out a "blue" (8): 2 -> 2/3
    assert vqa_soft_accuracy("red", refs) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    assert vqa_soft_accuracy("blue", refs) == pytest.approx(1.0)
    assert vqa_soft_accuracy("green", refs) == 0.0
    scores = process_results({"answers": ["yes"]}, ["yes"])
    assert scores == {"exact_match": 1.0, "vqa_acc": pytest.approx(1 / 3)}


def test_wilson_interval_numbers() -> None:
    acc = wilson(85, 100)
    assert acc.accuracy == 0.85
    assert acc.ci_low == pytest.approx(0.7672, abs=1e-4) and acc.ci_high == pytest.approx(0.9069, abs=1e-4)
    edge = wilson(60, 60)  # never [1, 1]: the Wilson interval stays honest at the boundary
    assert edge.ci_high == pytest.approx(1.0) and edge.ci_low == pytest.approx(0.9398, abs=1e-4)
    assert wilson(0, 0).accuracy is None


def test_mcnemar_paired_numbers() -> None:
    ref = {"q%d" % i: 1.0 for i in range(20)}
    same = dict(ref)
    assert mcnemar_paired(ref, same).p_value == 1.0
    worse = dict(ref, q0=0.0, q1=0.0, q2=0.0, q3=0.0, q4=0.0)  # 5 discordant, all one way
    paired = mcnemar_paired(ref, worse)
    assert paired.only_reference_right == 5 and paired.only_variant_right == 0
    assert paired.p_value == pytest.approx(0.0625)  # exact: 2 * 0.5**5
    assert paired.delta == pytest.approx(-0.25)
    mixed = dict(worse, q5=1.0)
    ref_mixed = dict(ref, q5=0.0)
    p = mcnemar_paired(ref_mixed, mixed)  # b=5, c=1: exact two-sided p = 2 * P(X <= 1 | 6, .5)
    assert p.p_value == pytest.approx(2 * (1 + 6) / 64)
