"""Scaling figures: how latency grows with the input and how a server trades latency for throughput.

From the measurements alone (sweep points carry their settings in ``params``):

- TTFT and vision encode vs visual tokens, log-log, per device/variant, with the least-squares slope
  of log(ms) on log(tokens): 1 means linear growth, 2 quadratic (attention over the image).
- decode tok/s vs context length (input tokens), per device/variant.
- throughput-latency over concurrency levels: output tok/s across streams (median over rounds of the
  round's tokens / the round's wall time) against TTFT p50/p90, the SLO's TTFT bound as a line, and
  goodput per level: the share of measured requests (failed ones count as missing it) that met every
  bound of the suite's ``slo``.

Every figure lists its numbers in ``details`` so the markdown summary and the HTML page agree.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .plots import Plot, _png, plain

Group = Tuple[str, str, str]  # device, variant, backend

SCALING_CAPTION = (
    "Medians per sweep point (measured repetitions, warm-up excluded), log-log axes. The slope is the "
    "least-squares fit of log(ms) on log(visual tokens): 1 = time grows linearly with the tokens, 2 = "
    "quadratically. Visual tokens are counted by the engine (a server's: prompt tokens with the image "
    "minus without)."
)
DECODE_CAPTION = ("Decode rate (median per sweep point) against the context it decodes after (input "
                  "tokens, counted by the engine).")
CONCURRENCY_CAPTION = (
    "Each level sends N requests at once per round. Throughput: output tokens of a round's streams over "
    "the round's wall time (first start to last token), median over measured rounds. TTFT p50 and p90 "
    "over every measured request of the level. Goodput: the share of measured requests meeting every "
    "SLO bound (a failed request misses it). Dashed line: the SLO's TTFT bound."
)


def _label_points(ax, xs: Sequence[float]) -> None:
    """Log x axis labelled at the measured points only (matplotlib's minor labels collide)."""
    ticks = sorted(set(xs))
    ax.set_xticks(ticks)
    ax.set_xticklabels(["%g" % t for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _measured(records: Iterable[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    return [r for r in records if not r.get("warmup")]


def _ok(records: Iterable[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    return [r for r in _measured(records) if r.get("status") == "ok"]


def _group(record: Mapping[str, Any]) -> Group:
    return (str(record.get("device", "")), str(record.get("variant", "")), str(record.get("backend", "")))


def _label(group: Group) -> str:
    return plain("%s / %s (%s)" % group, 60)


def _metric(record: Mapping[str, Any], name: str) -> Optional[float]:
    value = (record.get("metrics") or {}).get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _median(values: Sequence[float]) -> Optional[float]:
    return float(np.median(values)) if values else None


def _pct(values: Sequence[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if values else None


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log(y) on log(x); None without two distinct positive x."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({x for x, _ in pairs}) < 2:
        return None
    lx = np.log([x for x, _ in pairs])
    ly = np.log([y for _, y in pairs])
    return float(np.polyfit(lx, ly, 1)[0])


# -- sweep points -----------------------------------------------------------------------------------
@dataclass
class SweepPoint:
    group: Group
    workload: str
    x: float  # the point's median of the x metric
    y: Dict[str, Optional[float]] = field(default_factory=dict)  # medians of the y metrics


def sweep_points(records: Iterable[Mapping[str, Any]], x_metric: str, y_metrics: Sequence[str]) -> Dict[Group, List[SweepPoint]]:
    """Per device/variant: one point per swept workload (median x and medians of y), sorted by x.
    Only sweep points count (params.sweep_of); concurrent ones (params.concurrency > 1) are left
    out: queueing is not scaling."""
    by_key: Dict[Tuple[Group, str], List[Mapping[str, Any]]] = defaultdict(list)
    for record in _ok(records):
        params = record.get("params") or {}
        if "sweep_of" not in params or int(params.get("concurrency", 1) or 1) > 1:
            continue
        by_key[(_group(record), str(record.get("workload")))].append(record)
    out: Dict[Group, List[SweepPoint]] = defaultdict(list)
    for (group, workload), rows in by_key.items():
        xs = [v for v in (_metric(r, x_metric) for r in rows) if v is not None]
        if not xs:
            continue
        point = SweepPoint(group, workload, float(np.median(xs)))
        for name in y_metrics:
            point.y[name] = _median([v for v in (_metric(r, name) for r in rows) if v is not None])
        out[group].append(point)
    return {g: sorted(p, key=lambda s: s.x) for g, p in out.items()}


def visual_token_scaling(records: Sequence[Mapping[str, Any]]) -> Optional[Plot]:
    """TTFT and vision encode vs visual tokens with fitted log-log slopes; None without a sweep."""
    points = {g: p for g, p in sweep_points(records, "n_visual_tokens", ("ttft_ms", "vision_encode_ms")).items()
              if len({q.x for q in p}) >= 2}
    if not points:
        return None
    fig = Figure(figsize=(9.5, 4.2))
    panels = (("ttft_ms", "TTFT (ms)"), ("vision_encode_ms", "vision encode (ms)"))
    details: List[str] = []
    notes: List[str] = []
    for index, (metric, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, 2, index + 1)
        drawn = False
        for group, rows in sorted(points.items()):
            xs = [p.x for p in rows if p.y.get(metric) is not None]
            ys = [p.y[metric] for p in rows if p.y.get(metric) is not None]
            slope = loglog_slope(xs, ys)
            if slope is None:
                if index == 1:
                    notes.append("%s: no vision encode time at two sizes (the engine does not report it)"
                                 % " / ".join(group))
                continue
            drawn = True
            ax.plot(xs, ys, marker="o", label="%s  slope %.2f" % (_label(group), slope))
            details.append("%s vs visual tokens, %s: log-log slope %.2f over %s" % (
                ylabel.split(" (")[0], " / ".join(group), slope,
                ", ".join("%d tok %.1f ms" % (x, y) for x, y in zip(xs, ys))))
        ax.set_xscale("log")
        ax.set_yscale("log")
        _label_points(ax, [p.x for rows in points.values() for p in rows])
        ax.set_xlabel("visual tokens")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not reported", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return Plot("TTFT and vision encode vs visual tokens", _png(fig), SCALING_CAPTION, notes, details)


def decode_vs_context(records: Sequence[Mapping[str, Any]]) -> Optional[Plot]:
    points = {g: p for g, p in sweep_points(records, "n_input_tokens", ("decode_tps",)).items()
              if len({q.x for q in p}) >= 2}
    if not points:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    details = []
    for group, rows in sorted(points.items()):
        xs = [p.x for p in rows if p.y.get("decode_tps") is not None]
        ys = [p.y["decode_tps"] for p in rows if p.y.get("decode_tps") is not None]
        if not xs:
            continue
        ax.plot(xs, ys, marker="o", label=_label(group))
        details.append("decode tok/s vs input tokens, %s: %s" % (
            " / ".join(group), ", ".join("%d tok %.1f tok/s" % (x, y) for x, y in zip(xs, ys))))
    ax.set_xscale("log")
    _label_points(ax, [p.x for rows in points.values() for p in rows])
    ax.set_xlabel("context (input tokens)")
    ax.set_ylabel("decode tok/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Plot("Decode rate vs context length", _png(fig), DECODE_CAPTION, [], details)


# -- concurrency ------------------------------------------------------------------------------------
@dataclass
class Level:
    group: Group
    sweep_of: str
    concurrency: int
    requests: int  # measured requests, failed ones included
    ok: int
    throughput_tps: Optional[float]
    ttft_p50: Optional[float]
    ttft_p90: Optional[float]
    ttft_p99: Optional[float]
    tpot_p50: Optional[float]
    tpot_p90: Optional[float]
    good: Optional[int]  # requests meeting the SLO; None without an SLO
    slo: Dict[str, float] = field(default_factory=dict)

    @property
    def goodput(self) -> Optional[float]:
        return None if self.good is None or not self.requests else self.good / self.requests


def meets_slo(record: Mapping[str, Any], slo: Mapping[str, float]) -> bool:
    """A request meets the SLO when it succeeded and every bound given holds (a bound whose metric
    the request lacks is missed: unmeasured is not good)."""
    if record.get("status") != "ok":
        return False
    for name in ("ttft_ms", "tpot_ms", "e2e_ms"):
        bound = slo.get(name)
        if bound is None:
            continue
        value = _metric(record, name)
        if value is None or value > float(bound):
            return False
    return True


def concurrency_levels(records: Iterable[Mapping[str, Any]]) -> List[Level]:
    """One Level per device/variant, swept workload and concurrency (params.concurrency present)."""
    by_key: Dict[Tuple[Group, str, int], List[Mapping[str, Any]]] = defaultdict(list)
    for record in _measured(records):
        params = record.get("params") or {}
        if "concurrency" not in params:
            continue
        key = (_group(record), str(params.get("sweep_of", record.get("workload"))), int(params["concurrency"]))
        by_key[key].append(record)
    levels = []
    for (group, sweep_of, concurrency), rows in sorted(by_key.items()):
        ok = [r for r in rows if r.get("status") == "ok"]
        rounds: Dict[Any, float] = {}
        for r in ok:
            params = r.get("params") or {}
            value = params.get("round_throughput_tps")
            if concurrency == 1 and value is None:  # a single stream: its own tokens over its own time
                e2e, n = _metric(r, "e2e_ms"), _metric(r, "n_output_tokens")
                value = n * 1000.0 / e2e if e2e and n else None
            if isinstance(value, (int, float)):
                rounds[(params.get("round"), r.get("repetition") if concurrency == 1 else None)] = float(value)
        ttft = [v for v in (_metric(r, "ttft_ms") for r in ok) if v is not None]
        tpot = [v for v in (_metric(r, "tpot_ms") for r in ok) if v is not None]
        slo = next((dict(r.get("params", {}).get("slo") or {}) for r in rows if (r.get("params") or {}).get("slo")), {})
        good = sum(1 for r in rows if meets_slo(r, slo)) if slo else None
        levels.append(Level(group, sweep_of, concurrency, len(rows), len(ok), _median(list(rounds.values())),
                            _pct(ttft, 50), _pct(ttft, 90), _pct(ttft, 99), _pct(tpot, 50), _pct(tpot, 90),
                            good, slo))
    return levels


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None else "%.*f" % (digits, value)


def level_line(level: Level) -> str:
    goodput = "no SLO" if level.goodput is None else "goodput %.0f%% (%d/%d)" % (
        100 * level.goodput, level.good, level.requests)
    return ("%s | %s | concurrency %d: %s tok/s, TTFT p50 %s / p90 %s ms, TPOT p50 %s / p90 %s ms, %s"
            % (" / ".join(level.group), level.sweep_of, level.concurrency, _fmt(level.throughput_tps),
               _fmt(level.ttft_p50), _fmt(level.ttft_p90), _fmt(level.tpot_p50), _fmt(level.tpot_p90), goodput))


def concurrency_plot(records: Sequence[Mapping[str, Any]]) -> Optional[Plot]:
    levels = [lv for lv in concurrency_levels(records)]
    series: Dict[Tuple[Group, str], List[Level]] = defaultdict(list)
    for level in levels:
        series[(level.group, level.sweep_of)].append(level)
    series = {k: v for k, v in series.items() if len(v) >= 2 or v[0].concurrency > 1}
    if not series:
        return None
    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    ax_good = fig.add_subplot(1, 2, 2)
    slo_ttft = set()
    notes: List[str] = []
    for (group, sweep_of), rows in sorted(series.items()):
        rows = sorted(rows, key=lambda lv: lv.concurrency)
        name = "%s | %s" % (_label(group), plain(sweep_of, 20))
        pts = [(lv.throughput_tps, lv.ttft_p50, lv.ttft_p90, lv.concurrency) for lv in rows
               if lv.throughput_tps is not None and lv.ttft_p50 is not None]
        if pts:
            line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name + " TTFT p50")[0]
            ax.plot([p[0] for p in pts], [p[2] for p in pts], marker="^", linestyle=":", color=line.get_color(),
                    label=name + " TTFT p90")
            for x, y, _, c in pts:
                ax.annotate("c%d" % c, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        else:
            notes.append("%s: no level with both throughput and TTFT" % name)
        with_slo = [lv for lv in rows if lv.goodput is not None]
        if with_slo:
            ax_good.plot([lv.concurrency for lv in with_slo], [100 * lv.goodput for lv in with_slo],
                         marker="o", label=name)
        for lv in rows:
            if lv.slo.get("ttft_ms"):
                slo_ttft.add(float(lv.slo["ttft_ms"]))
    for bound in sorted(slo_ttft):
        ax.axhline(bound, color="#d62728", linestyle="--", linewidth=1, label="SLO TTFT %.0f ms" % bound)
    ax.set_xlabel("throughput (output tok/s across streams)")
    ax.set_ylabel("TTFT (ms)")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left")
    ax_good.set_xscale("log", base=2)
    ax_good.set_xlabel("concurrent streams")
    ax_good.set_ylabel("goodput (% of requests meeting the SLO)")
    ax_good.set_ylim(-5, 105)
    ax_good.grid(True, alpha=0.3)
    if ax_good.lines:
        ax_good.legend(fontsize=7)
    else:
        ax_good.text(0.5, 0.5, "no slo: in the suite", ha="center", va="center", transform=ax_good.transAxes)
    fig.tight_layout()
    slo_text = "; ".join(sorted({", ".join("%s at most %g" % kv for kv in sorted(lv.slo.items())) for lv in levels if lv.slo}))
    caption = CONCURRENCY_CAPTION + (" SLO: %s." % slo_text if slo_text else " No slo: in the suite, no goodput.")
    return Plot("Throughput and latency over concurrency", _png(fig), caption, notes,
                [level_line(lv) for lv in levels])


def scaling_plots(records: Sequence[Mapping[str, Any]]) -> List[Plot]:
    """The scaling figures that the records support (none for a run without sweeps)."""
    plots = [visual_token_scaling(records), decode_vs_context(records), concurrency_plot(records)]
    return [p for p in plots if p is not None]
