"""Accuracy statistics: Wilson intervals, paired McNemar tests (statsmodels), and for every pair of
variants the change in accuracy with a paired-bootstrap CI, the answer agreement and a verdict
against a declared non-inferiority margin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

BOOTSTRAP_ITERS = 10000


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


NON_INFERIOR = "non-inferior"
INFERIOR = "inferior"


@dataclass
class PairComparison:
    """Variant ``b`` against variant ``a`` on the questions both answered (delta = b - a)."""

    a: str
    b: str
    n_pairs: int
    delta: Optional[float]
    ci_low: Optional[float]  # paired bootstrap, percentile, 95%
    ci_high: Optional[float]
    agreement: Optional[float]  # share of questions given the same (normalised) answer
    p_value: Optional[float]  # McNemar
    test: str
    margin_pp: Optional[float]
    verdict: str


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], iters: int = BOOTSTRAP_ITERS, alpha: float = 0.05,
                        seed: int = 0) -> Tuple[float, float]:
    """Percentile CI of mean(b - a) resampling *questions* (pairs) with replacement, so the
    correlation between two variants' answers to the same question narrows it as it should."""
    import numpy as np

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if diff.size == 0:
        raise ValueError("no paired scores")
    rng = np.random.default_rng(seed)
    means = np.empty(iters)
    for start in range(0, iters, 1000):  # blocks of 1000 resamples keep memory small at any n
        stop = min(iters, start + 1000)
        means[start:stop] = diff[rng.integers(0, diff.size, (stop - start, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def non_inferiority_verdict(ci_low: Optional[float], ci_high: Optional[float], margin_pp: Optional[float],
                            n: int) -> str:
    """The verdict on ``delta = b - a`` with its two-sided 95% CI against a margin of ``margin_pp``
    percentage points (a one-sided test at 2.5%):

      - "non-inferior": the whole CI lies above -margin (b loses less than the margin, if anything);
      - "inferior": the whole CI lies below -margin (b loses more than the margin);
      - "inconclusive at n=N": the CI straddles -margin - more questions would be needed.

    A bound exactly on -margin is not past it (inconclusive)."""
    if margin_pp is None:
        return "no margin declared"
    if ci_low is None or ci_high is None:
        return "no answers to compare"
    margin = -margin_pp / 100.0
    if ci_low > margin:
        return NON_INFERIOR
    if ci_high < margin:
        return INFERIOR
    return "inconclusive at n=%d" % n


def agreement_rate(a: Dict[str, str], b: Dict[str, str]) -> Optional[float]:
    """Share of the common questions answered identically after VQA normalisation."""
    from .vqa import normalize_answer

    common = set(a) & set(b)
    if not common:
        return None
    return sum(normalize_answer(a[k]) == normalize_answer(b[k]) for k in common) / len(common)


def compare_pair(a_name: str, b_name: str, a_scores: Dict[str, float], b_scores: Dict[str, float],
                 a_answers: Dict[str, str], b_answers: Dict[str, str], margin_pp: Optional[float],
                 iters: int = BOOTSTRAP_ITERS, seed: int = 0) -> PairComparison:
    paired = mcnemar_paired(a_scores, b_scores)
    if paired.n_pairs == 0:
        return PairComparison(a_name, b_name, 0, None, None, None, None, None, paired.test, margin_pp,
                              "no answers to compare")
    common = sorted(set(a_scores) & set(b_scores))
    low, high = paired_bootstrap_ci([a_scores[k] for k in common], [b_scores[k] for k in common], iters, seed=seed)
    return PairComparison(a_name, b_name, paired.n_pairs, paired.delta, low, high, agreement_rate(a_answers, b_answers),
                          paired.p_value, paired.test, margin_pp,
                          non_inferiority_verdict(low, high, margin_pp, paired.n_pairs))
