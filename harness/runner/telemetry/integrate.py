"""Energy from a trace: trapezoid integration of sampled power, deltas of energy counters.

Pure functions on lists of (t_ns, value) points sorted by time. Values at the window's edges
are interpolated linearly between the neighbouring samples; beyond the trace they are held
(power) or extended along the nearest segment (counter) for at most ``max_extrapolate_ns``,
otherwise the result is None - never an invented number.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

Point = Tuple[int, float]


@dataclass
class Integral:
    """Energy over one interval of time."""

    duration_s: float
    energy_j: Optional[float]
    avg_power_w: Optional[float]
    n_samples: int  # samples strictly inside the interval
    method: str  # "trapezoid" or "counter"
    warnings: List[str] = field(default_factory=list)


def _ms(ns: float) -> str:
    return "%.1f ms" % (ns / 1e6)


def _edge_value(points: Sequence[Point], t: int, max_extrapolate_ns: int, counter: bool,
                what: str, warnings: List[str]) -> Optional[float]:
    times = [p[0] for p in points]
    i = bisect_left(times, t)
    if i < len(points) and points[i][0] == t:
        return points[i][1]
    if 0 < i < len(points):
        (t0, v0), (t1, v1) = points[i - 1], points[i]
        if t1 == t0:
            return v1
        return v0 + (v1 - v0) * (t - t0) / float(t1 - t0)
    # outside the trace
    if i == 0:
        gap = points[0][0] - t
        near = points[0]
        other = points[1] if len(points) > 1 else None
        side = "before the first sample"
    else:
        gap = t - points[-1][0]
        near = points[-1]
        other = points[-2] if len(points) > 1 else None
        side = "after the last sample"
    if gap > max_extrapolate_ns:
        warnings.append("%s is %s %s (more than %s): no value" % (what, _ms(gap), side, _ms(max_extrapolate_ns)))
        return None
    if not counter:
        if gap > 0:
            warnings.append("%s is %s %s: power held constant there" % (what, _ms(gap), side))
        return near[1]
    if other is None:
        warnings.append("%s is %s %s and the counter has one sample: no value" % (what, _ms(gap), side))
        return None
    (ta, va), (tb, vb) = sorted([near, other])
    if tb == ta:
        return None
    slope = (vb - va) / float(tb - ta)
    warnings.append("%s is %s %s: counter extended at the last rate" % (what, _ms(gap), side))
    return near[1] + slope * (t - near[0])


def _check_interval(points: Sequence[Point], t_start: int, t_end: int, method: str) -> Optional[Integral]:
    if t_end < t_start:
        return Integral(0.0, None, None, 0, method, ["interval ends before it starts (%d < %d)" % (t_end, t_start)])
    if t_end == t_start:
        return Integral(0.0, 0.0, None, 0, method, [])
    if not points:
        return Integral((t_end - t_start) / 1e9, None, None, 0, method, ["no samples"])
    return None


def integrate_power(points: Sequence[Point], t_start: int, t_end: int, max_extrapolate_ns: int) -> Integral:
    """Joules from sampled watts over [t_start, t_end] by the trapezoid rule."""
    early = _check_interval(points, t_start, t_end, "trapezoid")
    if early is not None:
        return early
    warnings: List[str] = []
    duration_s = (t_end - t_start) / 1e9
    v_start = _edge_value(points, t_start, max_extrapolate_ns, False, "interval start", warnings)
    v_end = _edge_value(points, t_end, max_extrapolate_ns, False, "interval end", warnings)
    times = [p[0] for p in points]
    inside = list(points[bisect_right(times, t_start):bisect_left(times, t_end)])
    if v_start is None or v_end is None:
        return Integral(duration_s, None, None, len(inside), "trapezoid", warnings)
    if not inside:
        warnings.append(
            "interval (%s) shorter than one sample interval; energy from interpolation"
            % _ms(t_end - t_start)
        )
    seq = [(t_start, v_start)] + inside + [(t_end, v_end)]
    energy = 0.0
    for (ta, va), (tb, vb) in zip(seq, seq[1:]):
        energy += (tb - ta) * (va + vb) / 2.0
    energy /= 1e9
    return Integral(duration_s, energy, energy / duration_s, len(inside), "trapezoid", warnings)


def counter_delta(points: Sequence[Point], t_start: int, t_end: int, max_extrapolate_ns: int) -> Integral:
    """Joules from an (unwrapped, monotonic) energy counter: E(t_end) - E(t_start)."""
    early = _check_interval(points, t_start, t_end, "counter")
    if early is not None:
        return early
    warnings: List[str] = []
    duration_s = (t_end - t_start) / 1e9
    e_start = _edge_value(points, t_start, max_extrapolate_ns, True, "interval start", warnings)
    e_end = _edge_value(points, t_end, max_extrapolate_ns, True, "interval end", warnings)
    times = [p[0] for p in points]
    n_inside = bisect_left(times, t_end) - bisect_right(times, t_start)
    if e_start is None or e_end is None:
        return Integral(duration_s, None, None, n_inside, "counter", warnings)
    if n_inside <= 0:
        warnings.append(
            "interval (%s) shorter than one sample interval; energy from interpolation"
            % _ms(t_end - t_start)
        )
    energy = e_end - e_start
    return Integral(duration_s, energy, energy / duration_s, n_inside, "counter", warnings)


def max_in(points: Sequence[Point], t_start: int, t_end: int) -> Tuple[Optional[float], int]:
    """(largest value of the samples inside [t_start, t_end], how many); the nearest sample if none."""
    times = [p[0] for p in points]
    inside = points[bisect_left(times, t_start):bisect_right(times, t_end)]
    if inside:
        return max(v for _, v in inside), len(inside)
    if not points:
        return None, 0
    i = bisect_left(times, t_start)
    neighbours = [points[j][1] for j in (i - 1, i) if 0 <= j < len(points)]
    return max(neighbours), 0
