"""Accuracy statistics: Wilson intervals and paired McNemar tests (statsmodels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple


@dataclass
class Accuracy:
    n: int
    correct: int
    accuracy: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]


@dataclass
class Paired:
    """A variant against the reference variant on the same questions."""

    n_pairs: int
    delta: Optional[float]  # accuracy(variant) - accuracy(reference), over the paired questions
    only_reference_right: int  # b: reference right, variant wrong
    only_variant_right: int  # c: variant right, reference wrong
    p_value: Optional[float]
    test: str


def wilson(correct: int, n: int, alpha: float = 0.05) -> Accuracy:
    """Accuracy with its Wilson score interval (good near 0 and 1, unlike the normal one)."""
    if n == 0:
        return Accuracy(0, 0, None, None, None)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, n, alpha=alpha, method="wilson")
    return Accuracy(n, correct, correct / n, float(low), float(high))


def mcnemar_paired(reference: Dict[str, float], variant: Dict[str, float]) -> Paired:
    """McNemar's test on the questions both answered (scores are 0/1 per question id).

    The exact binomial version when the discordant pairs are few (< 25), the chi-square one with
    continuity correction otherwise - statsmodels' advice. Identical answers give p = 1.
    """
    common = sorted(set(reference) & set(variant))
    if not common:
        return Paired(0, None, 0, 0, None, "no paired questions")
    b = sum(1 for k in common if reference[k] >= 0.5 > variant[k])
    c = sum(1 for k in common if variant[k] >= 0.5 > reference[k])
    both = sum(1 for k in common if reference[k] >= 0.5 and variant[k] >= 0.5)
    neither = len(common) - b - c - both
    delta = (c - b) / len(common)
    if b + c == 0:
        return Paired(len(common), delta, b, c, 1.0, "McNemar: no discordant pairs")
    from statsmodels.stats.contingency_tables import mcnemar

    exact = b + c < 25
    result = mcnemar([[both, b], [c, neither]], exact=exact, correction=not exact)
    return Paired(len(common), delta, b, c, float(result.pvalue),
                  "McNemar %s" % ("exact binomial" if exact else "chi-square, continuity-corrected"))


def score_vector(scores: Sequence[Tuple[str, float]]) -> Dict[str, float]:
    return {key: float(value) for key, value in scores}
