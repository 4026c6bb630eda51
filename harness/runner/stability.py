"""`--until-stable`: keep repeating until the 95% CI of the median is narrow enough.

The Phoronix Test Suite repeats a test while its results deviate too much, up to a cap; we do the
same on the runner (it has the samples as they land, and a board keeps going when the controller's
connection drops): after the planned repetitions, one more at a time until the 95% confidence
interval of the median of ``metric`` is within ``rel_width`` of the median, or ``max_repetitions``
measured repetitions are stored.

The interval is the distribution-free one from order statistics (the number of samples below the
median is Binomial(n, 1/2)), computable with the standard library on a board. It exists from
n = 6 on; below that the width is infinite, so the loop always takes at least six measured
repetitions. The controller's report shows the bootstrap CI of the same median.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple


def _binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / float(2 ** n) if k >= 0 else 0.0


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> Optional[Tuple[float, float]]:
    """The order-statistic CI of the median: (x_(k), x_(n-k+1)), None when n is too small."""
    values = sorted(float(v) for v in samples)
    n = len(values)
    alpha = 1.0 - confidence
    k = 0  # the largest 1-based rank k with P(X <= k-1) <= alpha/2
    for rank in range(1, n // 2 + 1):
        if _binom_cdf_half(rank - 1, n) <= alpha / 2:
            k = rank
        else:
            break
    if k == 0:
        return None
    return values[k - 1], values[n - k]


def relative_ci_width(samples: Sequence[float]) -> float:
    """(CI high - CI low) / |median|; infinite when the CI does not exist or the median is 0."""
    ci = median_ci(samples)
    values = sorted(samples)
    if ci is None or not values:
        return math.inf
    n = len(values)
    median = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2.0
    if median == 0:
        return math.inf
    return (ci[1] - ci[0]) / abs(median)


def stable_enough(samples: List[float], rel_width: float) -> bool:
    return relative_ci_width(samples) <= rel_width
