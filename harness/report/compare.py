"""The procurement report: boards ranked per workload, a Pareto plot of latency vs energy per
query, and a one-page summary a buyer can read, as one self-contained HTML file plus a CSV of
the figures (``compare.html``, ``compare.csv``).

    from harness.report.compare import render_compare
    path = render_compare(store, ["RUN_A", "RUN_B"], load_devices(Path("devices.yaml")), Path("reports/compare"))
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from harness.analysis.procurement import (
    CRITERIA,
    AccuracyByVariant,
    BoardFigures,
    ProcurementReport,
    compare_boards,
    model_name,
    size_text,
)
from harness.store.base import BaseStore

from .history import figure_png, page_environment, plain, png_data_uri
from .scaling import scaling_plots

COMPARE_TEMPLATE = "compare.html.j2"
COMPARE_FILE = "compare.html"
COMPARE_CSV = "compare.csv"
COMPARE_MD = "compare.md"
_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


def _fmt(value: Optional[float], digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return "{:,.0f}".format(value)
    if abs(value) >= 10:
        return "%.1f" % value
    return ("%." + str(digits) + "g") % value


@dataclass
class _Cell:
    text: str
    rank: Optional[int]


def _cells(f: BoardFigures) -> Dict[str, _Cell]:
    out = {}
    for key, _label, _higher in CRITERIA:
        value = getattr(f, key)
        text = _fmt(value) if key != "accuracy" else ("%.1f%%" % (100 * value) if value is not None else "not measured")
        out[key] = _Cell(text, f.ranks.get(key))
    return out


def pareto_plot(report: ProcurementReport) -> Optional[bytes]:
    """Latency (e2e per query) vs energy per query, log-log, one panel per workload; the Pareto
    front (no board both faster and cheaper in energy) joined by a line."""
    panels = [(plain(c.workload, 40) + ("\n" + plain(c.group, 48) if c.group else ""),
               [f for f in c.boards if f.e2e_ms and f.energy_j]) for c in report.workloads]
    panels = [(w, fs) for w, fs in panels if fs]
    if not panels:
        return None
    fig = Figure(figsize=(max(6.5, 5.0 * len(panels)), 4.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    devices = sorted({f.device for _w, fs in panels for f in fs})
    colour = {d: _COLOURS[i % len(_COLOURS)] for i, d in enumerate(devices)}
    for ax, (workload, figs) in zip(axes, panels):
        for f in figs:
            ax.scatter([f.e2e_ms], [f.energy_j], s=60 if f.pareto else 30, color=colour[f.device],
                       edgecolors="black" if f.pareto else "none", zorder=3)
            ax.annotate(plain(f.label, 28), (f.e2e_ms, f.energy_j), xytext=(5, 4), textcoords="offset points",
                        fontsize=7)
        front = sorted((f for f in figs if f.pareto), key=lambda f: f.e2e_ms)
        if len(front) > 1:
            ax.plot([f.e2e_ms for f in front], [f.energy_j for f in front], color="#888", linestyle="--",
                    linewidth=1, zorder=2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(x=0.2, y=0.15)  # room for the labels of the outermost points
        plain_number = FuncFormatter(lambda value, _pos: "%g" % value)
        for axis in (ax.xaxis, ax.yaxis):  # few, plainly written ticks: minor labels at 2..9 overlap
            axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            axis.set_major_formatter(plain_number)
            axis.set_minor_formatter(plain_number)
        ax.set_xlabel("end-to-end latency per query (ms, log)", fontsize=8)
        ax.set_ylabel("energy per query (J, log)", fontsize=8)
        ax.set_title(workload, fontsize=9)  # what "lower-left is better, ringed" means is in the caption
        ax.grid(True, which="both", alpha=0.25)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def write_csv(report: ProcurementReport, path: Path) -> None:
    columns = ("workload", "model_group", "device", "variant", "backend", "board_type", "run_id", "emulated",
               "model", "n_parameters", "random_weights", "time_scale", "n",
               "ttft_ms", "decode_tps", "e2e_ms", "energy_j", "avg_power_w", "perf_per_w", "price_usd",
               "perf_per_kusd", "accuracy", "bandwidth_gbps", "weight_bytes", "ceiling_tps", "roofline_pct", "pareto",
               "price_source", "bandwidth_source", "energy_source", "weight_note")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for comparison in report.workloads:
            for f in comparison.boards:
                writer.writerow([comparison.group if c == "model_group" else getattr(f, c) for c in columns])


def write_markdown(report: ProcurementReport, path: Path) -> None:
    """The ranking tables as GitHub-flavoured markdown (a CI comment, a wiki page); "-" = not measured."""
    from .markdown import inline, table

    lines = ["# Board comparison for procurement", ""]
    lines.append("Runs: %s" % inline(", ".join("%s (%s)" % (r.run_id, r.suite) for r in report.runs)))
    lines.append("")
    if report.emulated:
        lines += ["**EMULATED RESULTS, NOT HARDWARE MEASUREMENTS** (%s): reference-backend board profiles and "
                  "emulated power; do not buy hardware on them." % inline(", ".join(report.emulated_devices)), ""]
    for warning in report.warnings:
        lines += ["**Different models, ranked separately.** %s" % inline(warning), ""]
    header = ["rank", "board / variant", "model", "price", "TTFT ms", "decode tok/s", "energy per query J",
              "avg power W", "tok/s per W", "tok/s per $1000", "accuracy", "% of bandwidth ceiling", "Pareto"]
    for comparison in report.workloads:
        title = comparison.workload + (": " + comparison.group if comparison.group else "")
        lines += ["## %s" % inline(title), ""]
        if comparison.caution:
            lines += ["Note: %s." % inline(comparison.caution), ""]
        rows = []
        for f in comparison.boards:
            rows.append([
                f.ranks.get("decode_tps", "-"), f.label + (" (emulated)" if f.emulated and f.variant != "emulated" else "")
                + (" (random weights)" if f.random_weights else ""),
                "%s, %s" % (model_name(f), size_text(f.n_parameters)),
                "$" + _fmt(f.price_usd) if f.price_usd else "-", _fmt(f.ttft_ms), _fmt(f.decode_tps),
                _fmt(f.energy_j), _fmt(f.avg_power_w), _fmt(f.perf_per_w), _fmt(f.perf_per_kusd),
                "%.1f%%" % (100 * f.accuracy) if f.accuracy is not None else "-",
                "%.0f%%" % f.roofline_pct if f.roofline_pct is not None else "-", "yes" if f.pareto else ""])
        lines += table(header, rows) + [""]
    lines += ["Ranked by decode tok/s; \"-\" = not measured. Where each figure comes from:", ""]
    lines += ["- %s" % inline(a) for a in report.assumptions]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def render_compare(store: BaseStore, run_ids: Sequence[str], devices_inventory: Any, out_dir: Path,
                   reference_inventory: Any = None, accuracy: Optional[AccuracyByVariant] = None) -> Path:
    """Write ``out_dir/compare.html`` (and ``compare.csv``) and return the HTML's path.

    ``devices_inventory``: the loaded devices file the runs used (price, bandwidth, variants);
    ``reference_inventory``: optional, e.g. the real devices.yaml when comparing emulated farm runs,
    used by board type for whatever the first one lacks (and said so in the assumptions).
    """
    report = compare_boards(store, run_ids, devices_inventory, reference_inventory, accuracy=accuracy)
    png = pareto_plot(report)
    workloads = []
    for comparison in report.workloads:
        rows = []
        for f in comparison.boards:
            rows.append({
                "f": f, "cells": _cells(f), "price": "$" + _fmt(f.price_usd) if f.price_usd else "unknown",
                "power": _fmt(f.avg_power_w), "e2e": _fmt(f.e2e_ms),
                "roofline": ("%.0f%%" % f.roofline_pct) if f.roofline_pct is not None else "-",
                "ceiling": _fmt(f.ceiling_tps), "bandwidth": _fmt(f.bandwidth_gbps),
                "model": "%s, %s" % (model_name(f), size_text(f.n_parameters)),
            })
        workloads.append({"c": comparison, "rows": rows})
    html = page_environment().get_template(COMPARE_TEMPLATE).render(
        report=report, workloads=workloads, criteria=CRITERIA,
        pareto_uri=png_data_uri(png) if png else None,
        scaling=[{"title": p.title, "uri": png_data_uri(p.png) if p.png else None, "caption": p.caption,
                  "details": p.details} for p in scaling_plots([m for run_id in run_ids for m in store.measurements(run_id)])],
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), store=store.location,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / COMPARE_FILE
    path.write_text(html, encoding="utf-8")
    write_csv(report, out / COMPARE_CSV)
    write_markdown(report, out / COMPARE_MD)
    return path
