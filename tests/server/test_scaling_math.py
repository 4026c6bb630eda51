"""The scaling figures' arithmetic against hand-computed values: slopes, throughput, goodput."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import pytest

from harness.report.scaling import concurrency_levels, loglog_slope, meets_slo, scaling_plots, sweep_points


def rec(workload: str, params: Dict[str, Any], warmup: bool = False, status: str = "ok", rep: int = 0,
        **metrics: Optional[float]) -> Dict[str, Any]:
    return {"device": "d", "variant": "v", "backend": "openai", "workload": workload, "repetition": rep,
            "warmup": warmup, "status": status, "metrics": metrics, "params": params}


def test_loglog_slope_recovers_the_exponent() -> None:
    xs = [64, 144, 256, 576]
    assert loglog_slope(xs, [3.0 * x ** 1.5 for x in xs]) == pytest.approx(1.5)
    assert loglog_slope(xs, [7.0 * x for x in xs]) == pytest.approx(1.0)
    assert loglog_slope([64, 64], [1.0, 2.0]) is None  # one distinct x: no slope


def test_sweep_points_take_medians_and_skip_warmup_and_concurrency() -> None:
    records = [
        rec("a", {"sweep_of": "i"}, n_visual_tokens=66, ttft_ms=10.0),
        rec("a", {"sweep_of": "i"}, n_visual_tokens=66, ttft_ms=30.0),
        rec("a", {"sweep_of": "i"}, n_visual_tokens=66, ttft_ms=20.0),
        rec("a", {"sweep_of": "i"}, warmup=True, n_visual_tokens=66, ttft_ms=999.0),
        rec("b", {"sweep_of": "i"}, n_visual_tokens=258, ttft_ms=80.0),
        rec("c", {"sweep_of": "i", "concurrency": 4}, n_visual_tokens=1000, ttft_ms=5.0),
        rec("plain", {}, n_visual_tokens=5000, ttft_ms=1.0),  # not a sweep point
    ]
    points = sweep_points(records, "n_visual_tokens", ("ttft_ms",))[("d", "v", "openai")]
    assert [(p.workload, p.x, p.y["ttft_ms"]) for p in points] == [("a", 66, 20.0), ("b", 258, 80.0)]
    (plot,) = [p for p in scaling_plots(records) if p.title == "TTFT and vision encode vs visual tokens"]
    slope_line = next(d for d in plot.details if d.startswith("TTFT vs visual"))
    assert "slope %.2f" % (math.log(80 / 20) / math.log(258 / 66)) in slope_line


def test_goodput_throughput_and_percentiles_per_level() -> None:
    slo = {"ttft_ms": 100.0, "tpot_ms": 20.0}
    records: List[Dict[str, Any]] = []
    # concurrency 2, two measured rounds (throughputs 40 and 60 -> median 50) and a warm-up round
    for rnd, tput, ttfts in ((0, 999.0, (1.0, 1.0)), (1, 40.0, (50.0, 150.0)), (2, 60.0, (90.0, 95.0))):
        for stream, ttft in enumerate(ttfts):
            records.append(rec("img-c2", {"concurrency": 2, "round": rnd, "stream": stream, "slo": slo,
                                          "sweep_of": "img", "round_throughput_tps": tput},
                               warmup=rnd == 0, rep=rnd * 2 + stream, ttft_ms=ttft, tpot_ms=10.0))
    records[-1]["metrics"]["tpot_ms"] = 25.0  # meets TTFT, misses TPOT
    records.append(rec("img-c2", {"concurrency": 2, "round": 3, "stream": 0, "slo": slo, "sweep_of": "img"},
                       status="error", rep=6))  # a failed request misses the SLO
    (level,) = concurrency_levels(records)
    assert (level.concurrency, level.requests, level.ok) == (2, 5, 4)
    assert level.throughput_tps == pytest.approx(50.0)
    assert level.good == 2 and level.goodput == pytest.approx(2 / 5)  # 50 and 90 ms with tpot 10
    assert level.ttft_p50 == pytest.approx((90.0 + 95.0) / 2)  # of 50, 90, 95, 150
    assert level.ttft_p90 == pytest.approx(95.0 + 0.7 * (150.0 - 95.0))  # linear interpolation
    plot = next(p for p in scaling_plots(records) if p.title.startswith("Throughput"))
    assert plot.png and "goodput 40% (2/5)" in plot.details[0]


def test_meets_slo_misses_unmeasured_bounds() -> None:
    assert meets_slo(rec("w", {}, ttft_ms=10.0, tpot_ms=None), {"ttft_ms": 20.0})
    assert not meets_slo(rec("w", {}, ttft_ms=10.0, tpot_ms=None), {"ttft_ms": 20.0, "tpot_ms": 5.0})
    assert not meets_slo(rec("w", {}, ttft_ms=20.5), {"ttft_ms": 20.0})
