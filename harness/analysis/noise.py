"""Noise as data on the controller: which series are too noisy to decide on, which repetitions
were disturbed by other work on the board (the runner's ``provenance.interference``, see
harness/runner/interference.py for what is read and the per-repetition threshold).

A series is **noisy** when the coefficient of variation of its measured repetitions exceeds
:data:`NOISY_CV` (10%). With the default 5 repetitions the median of such a series is uncertain by
about as much as the default 5% regression threshold, so it is shown, but it is not a basis for a
decision: `bench regress` lists a change in a noisy series as unconfirmed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

NOISY_CV = 0.10
NOT_A_BASIS = "not a basis for a decision"


def coefficient_of_variation(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation / mean; None under two values or a zero mean."""
    arr = np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    if arr.size < 2 or arr.mean() == 0:
        return None
    return float(arr.std(ddof=1) / abs(arr.mean()))


def is_noisy(cv: Optional[float]) -> bool:
    return cv is not None and math.isfinite(cv) and cv > NOISY_CV


def noisy_text(cv: float) -> str:
    return "noisy: CV %.0f%% > %.0f%%, %s" % (100 * cv, 100 * NOISY_CV, NOT_A_BASIS)


@dataclass
class Disturbance:
    """Interference over the measured repetitions of one device/variant/workload."""

    n_measured: int = 0
    n_checked: int = 0  # repetitions that carry an interference record
    n_disturbed: int = 0
    max_other_cpu_share: Optional[float] = None
    max_load_avg: Optional[float] = None
    max_steal_share: Optional[float] = None
    reasons: List[str] = field(default_factory=list)
    busiest: List[str] = field(default_factory=list)  # names of the busiest other processes seen

    def text(self) -> str:
        if not self.n_checked:
            return "not recorded (a runner older than the interference record)"
        parts = ["%d of %d measured repetitions disturbed" % (self.n_disturbed, self.n_checked)]
        if self.max_other_cpu_share is not None:
            parts.append("other processes used up to %.0f%% of the CPU" % (100 * self.max_other_cpu_share))
        if self.max_load_avg is not None:
            parts.append("load average up to %.2f" % self.max_load_avg)
        if self.max_steal_share:
            parts.append("steal up to %.0f%%" % (100 * self.max_steal_share))
        if self.busiest and self.n_disturbed:
            parts.append("busiest: %s" % ", ".join(self.busiest[:3]))
        return "; ".join(parts)


def _max(current: Optional[float], value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) if current is None else max(current, float(value))
    return current


def disturbance(records: Iterable[Dict[str, Any]]) -> Disturbance:
    """Summarise ``provenance.interference`` over measured (not warm-up) successful records."""
    out = Disturbance()
    names: Dict[str, float] = {}
    for record in records:
        if record.get("warmup") or record.get("status") != "ok":
            continue
        out.n_measured += 1
        load = (record.get("provenance") or {}).get("interference")
        if not isinstance(load, dict) or not load.get("available"):
            continue
        out.n_checked += 1
        out.max_other_cpu_share = _max(out.max_other_cpu_share, load.get("other_cpu_share"))
        out.max_load_avg = _max(out.max_load_avg, load.get("load_avg_1m"))
        out.max_steal_share = _max(out.max_steal_share, load.get("steal_share"))
        if load.get("disturbed"):
            out.n_disturbed += 1
            for other in load.get("busiest_other") or []:
                if isinstance(other, dict) and other.get("name"):
                    name = str(other["name"])
                    names[name] = names.get(name, 0.0) + float(other.get("cpu_s") or 0.0)
    out.busiest = [n for n, _ in sorted(names.items(), key=lambda kv: -kv[1])]
    return out


NOISE_NOTE = (
    "Noise: a repetition is disturbed when, during it, other processes on the board used at least "
    "10%% of its CPU capacity or the hypervisor stole at least 5%% (the runner reads /proc before and "
    "after each repetition; harness/runner/interference.py). A series is noisy when the CV of its "
    "measured repetitions exceeds %.0f%%: shown, but %s." % (100 * NOISY_CV, NOT_A_BASIS)
)
