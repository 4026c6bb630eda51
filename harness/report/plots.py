"""matplotlib figures for the report, rendered headless to PNG bytes.

No pyplot: each figure is a ``matplotlib.figure.Figure`` drawn on its own Agg canvas, so nothing
needs a display and no global backend state is touched. A missing metric never crashes a plot: its
bar or segment is skipped and a note says so.
"""

from __future__ import annotations

import io
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import matplotlib

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.analysis.stats import GROUP_COLUMNS

from .tables import BoardPower

PHASES: Tuple[Tuple[str, str, str], ...] = (
    # (segment label, how it is computed, colour)
    ("preprocess", "preprocess_ms", "#4e79a7"),
    ("vision encode", "vision_encode_ms", "#f28e2b"),
    ("prefill", "prefill_ms", "#59a14f"),
    ("rest of TTFT", "ttft_ms - (preprocess + vision encode + prefill)", "#bab0ac"),
    ("decode", "e2e_ms - ttft_ms", "#e15759"),
)
PHASE_COLOURS: Dict[str, str] = {label: colour for label, _, colour in PHASES}
MAX_TRACES_PER_BOARD = 12  # beyond this a figure is unreadable; the rest are named in a note
LABEL_MAX = 48
_MPL_VERSION = tuple(int(p) for p in matplotlib.__version__.split(".")[:2] if p.isdigit())


@dataclass
class Plot:
    title: str
    png: Optional[bytes]  # None when there was nothing to draw
    caption: str = ""
    notes: List[str] = field(default_factory=list)  # what could not be drawn, and why
    details: List[str] = field(default_factory=list)  # figures worth reading beside the plot


def plain(text: str, limit: int = LABEL_MAX) -> str:
    """A label matplotlib draws literally: one line, no mathtext ($ escaped), bounded length."""
    one_line = " ".join(str(text).split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "\u2026"
    return one_line.replace("$", r"\$")


@contextmanager
def _quiet_glyphs() -> Iterator[None]:
    """A device name in a script the bundled font lacks draws as boxes; that is not an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Glyph .* missing from font.*")
        warnings.filterwarnings("ignore", message=r".*[Mm]atplotlib currently does not support.*")
        yield


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    with _quiet_glyphs():
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _group_name(device: str, variant: str, backend: str, workload: str) -> str:
    """The full name, for notes (the renderers escape it)."""
    return "%s / %s (%s) | %s" % (device, variant, backend, workload)


def tick_label(device: str, variant: str, backend: str, workload: str) -> str:
    """A short axis label that always keeps the workload: each part is shortened on its own."""
    return "%s | %s / %s (%s)" % (plain(workload, 16), plain(device, 28), plain(variant, 14),
                                  plain(backend, 14))


def _median(values: pd.Series) -> Optional[float]:
    clean = values.dropna()
    return float(np.median(clean.to_numpy(dtype=float))) if len(clean) else None


def phase_breakdown(frame: pd.DataFrame) -> Plot:
    """Stacked bars of the median phase times per device/variant/workload (measured ok rows).

    The two derived segments are computed per repetition before the median is taken, so they
    are consistent with each repetition's own TTFT and e2e.
    """
    title = "Phase breakdown (median per phase, ms)"
    caption = ("Segments: preprocess, vision encode, prefill, rest of TTFT (TTFT minus the three), "
               "decode (e2e minus TTFT); each is the median over the measured repetitions.")
    notes: List[str] = []
    used = frame[(~frame["warmup"].astype(bool)) & (frame["status"] == "ok")].copy()
    for column in GROUP_COLUMNS:
        used[column] = used[column].fillna("").astype(str)
    bars: List[Tuple[str, List[Optional[float]]]] = []
    ticks: List[str] = []
    if not used.empty:
        for key, group in used.groupby(list(GROUP_COLUMNS), sort=True):
            device, workload, backend, variant = (str(k) for k in key)
            name = _group_name(device, variant, backend, workload)
            ticks.append(tick_label(device, variant, backend, workload))
            parts = {col: group[col] if col in group else pd.Series(dtype=float)
                     for col in ("preprocess_ms", "vision_encode_ms", "prefill_ms", "ttft_ms", "e2e_ms")}
            segments: List[Optional[float]] = []
            for label, column in (("preprocess", "preprocess_ms"), ("vision encode", "vision_encode_ms"),
                                  ("prefill", "prefill_ms")):
                value = _median(parts[column])
                if value is None:
                    notes.append("%s: no %s figure, segment skipped" % (name, label))
                segments.append(value)
            known = pd.concat([parts[c].fillna(0.0) for c in ("preprocess_ms", "vision_encode_ms",
                                                             "prefill_ms")], axis=1).sum(axis=1)
            rest = _median(parts["ttft_ms"] - known)
            if rest is None:
                notes.append("%s: no TTFT figure, rest-of-TTFT segment skipped" % name)
            elif any(s is None for s in segments):
                notes.append("%s: the missing phase is inside the rest-of-TTFT segment" % name)
            if rest is not None and rest < 0:
                notes.append("%s: phases add up to more than TTFT (%.3g ms); rest-of-TTFT drawn as 0"
                             % (name, rest))
                rest = 0.0
            segments.append(rest)
            decode = _median(parts["e2e_ms"] - parts["ttft_ms"])
            if decode is None:
                notes.append("%s: no e2e or TTFT figure, decode segment skipped" % name)
            segments.append(decode)
            bars.append((name, segments))
    if not bars:
        return Plot(title, None, caption, notes + ["no successful measured repetition to draw"])
    fig = Figure(figsize=(9, 1.2 + 0.45 * len(bars)))
    ax = fig.add_subplot(1, 1, 1)
    positions = np.arange(len(bars))
    left = np.zeros(len(bars))
    for index, (label, _, colour) in enumerate(PHASES):
        widths = np.array([seg[index] if seg[index] is not None else 0.0 for _, seg in bars])
        present = np.array([seg[index] is not None for _, seg in bars])
        if present.any():
            ax.barh(positions[present], widths[present], left=left[present], color=colour,
                    label=label, edgecolor="white", linewidth=0.5)
        left = left + widths
    ax.set_yticks(positions)
    ax.set_yticklabels(ticks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms (median)")
    # outside the axes, right of the bars: below them it covered the x label on short figures
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return Plot(title, _png(fig), caption, notes)


def _whisker_axis(ax, summary: pd.DataFrame, metric: str, xlabel: str, names: Sequence[str],
                  notes: List[str], colour: str) -> None:
    values, lows, highs, present = [], [], [], []
    for _, row in summary.iterrows():
        median = row["median"]
        ok = median is not None and not (isinstance(median, float) and math.isnan(median))
        present.append(ok)
        values.append(float(median) if ok else 0.0)
        has_ci = ok and row["ci_low"] is not None and not pd.isna(row["ci_low"]) \
            and row["ci_high"] is not None and not pd.isna(row["ci_high"])
        lows.append(float(median) - float(row["ci_low"]) if has_ci else 0.0)
        highs.append(float(row["ci_high"]) - float(median) if has_ci else 0.0)
        if not ok:
            notes.append("%s: no %s figure, bar skipped" % (names[len(present) - 1], metric))
        elif not has_ci:
            notes.append("%s: %s has no CI (%s)" % (names[len(present) - 1], metric, row["ci_method"]))
    positions = np.arange(len(values))
    mask = np.array(present, dtype=bool)
    if mask.any():
        yerr = np.array([np.array(lows)[mask], np.array(highs)[mask]])
        ax.barh(positions[mask], np.array(values)[mask], xerr=yerr, color=colour, capsize=3,
                error_kw={"elinewidth": 1})
    for position, ok in zip(positions, present):
        if not ok:
            ax.text(0, position, " n/a", va="center", fontsize=8, color="#a00")
    ax.set_yticks(positions)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def ttft_and_decode(summary: pd.DataFrame) -> Plot:
    """Median TTFT and decode tok/s per device/variant/workload with 95% CI whiskers."""
    title = "TTFT and decode rate (median, 95% CI whiskers)"
    caption = "Bars are medians over the measured repetitions; whiskers the bootstrap CI of the median."
    notes: List[str] = []
    if summary.empty:
        return Plot(title, None, caption, ["no measurements"])
    ttft = summary[summary["metric"] == "ttft_ms"].reset_index(drop=True)
    tps = summary[summary["metric"] == "decode_tps"].reset_index(drop=True)
    if ttft.empty and tps.empty:
        return Plot(title, None, caption, ["no TTFT or decode figures"])
    base = ttft if not ttft.empty else tps
    keys = [(r["device"], r["variant"], r["backend"], r["workload"]) for _, r in base.iterrows()]
    names = [_group_name(*k) for k in keys]
    fig = Figure(figsize=(10, 1.2 + 0.45 * len(names)))
    ax1 = fig.add_subplot(1, 2, 1)
    ax2 = fig.add_subplot(1, 2, 2, sharey=ax1)
    if not ttft.empty:
        _whisker_axis(ax1, ttft, "ttft_ms", "TTFT (ms)", names, notes, "#4e79a7")
    if not tps.empty:
        _whisker_axis(ax2, tps, "decode_tps", "decode (tok/s)", names, notes, "#59a14f")
    ax1.set_yticks(np.arange(len(names)))
    ax1.set_yticklabels([tick_label(*k) for k in keys], fontsize=8)
    ax1.invert_yaxis()
    for tick in ax2.get_yticklabels():
        tick.set_visible(False)
    with _quiet_glyphs():
        fig.tight_layout()
    return Plot(title, _png(fig), caption, notes)


def itl_distribution(itl: Dict[Tuple[str, str, str, str], List[float]]) -> Plot:
    """Box plot of every inter-token gap of the measured repetitions, per device/variant/workload.

    ``itl`` maps (device, variant, backend, workload) to the gaps in ms.
    """
    title = "Inter-token latency distribution (every gap of the measured repetitions)"
    notes: List[str] = []
    keys = [key for key, gaps in itl.items() if gaps]
    for key, gaps in itl.items():
        if not gaps:
            notes.append("%s: no inter-token gaps recorded, box skipped" % _group_name(*key))
    pooled = []
    for key in keys:
        p50, p90, p99 = np.percentile(np.asarray(itl[key], dtype=float), [50, 90, 99])
        pooled.append("%s: %d gaps, p50 %.3g / p90 %.3g / p99 %.3g ms"
                      % (_group_name(*key), len(itl[key]), p50, p90, p99))
    caption = ("Boxes: quartiles, whiskers 1.5 IQR, points beyond drawn as outliers. Every gap of the "
               "measured repetitions pooled:")
    if not keys:
        return Plot(title, None, "", notes + ["no inter-token gaps to draw"])
    fig = Figure(figsize=(9, 1.2 + 0.45 * len(keys)))
    ax = fig.add_subplot(1, 1, 1)
    # matplotlib 3.10 replaced vert=False by orientation="horizontal"
    direction = ({"orientation": "horizontal"} if _MPL_VERSION >= (3, 10) else {"vert": False})
    ax.boxplot([itl[key] for key in keys], widths=0.6,
               flierprops={"markersize": 2, "alpha": 0.5}, **direction)
    ax.set_yticks(np.arange(1, len(keys) + 1))
    ax.set_yticklabels([tick_label(*key) for key in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("inter-token gap (ms)")
    ax.grid(axis="x", alpha=0.3)
    return Plot(title, _png(fig), caption, notes, pooled)


def all_plots(
    frame: pd.DataFrame, summary: pd.DataFrame, itl: Dict[Tuple[str, str, str, str], List[float]]
) -> List[Plot]:
    """The report's three figures, in order."""
    return [phase_breakdown(frame), ttft_and_decode(summary), itl_distribution(itl)]


POWER_CAPTION = (
    "Power of one measured repetition per device/variant/workload: the one with the median e2e among "
    "those that kept a trace and were not flagged as throttled (flagged ones only when all were). "
    "Line: the sensor's samples (energy counters as the power between two readings), including the "
    "neighbouring sample on each side of the query; shaded: the phases, their boundaries rebuilt from "
    "the recorded phase durations (preprocess starts with the query, prefill ends at the first token, "
    "decode at the last); dashed: idle power measured before the run."
)


def power_over_time(board: BoardPower) -> Plot:
    """One figure per board: a panel per device/variant/workload with its power trace and phases."""
    title = "Power over time: %s" % board.device
    notes = list(board.notes)
    traces = board.traces[:MAX_TRACES_PER_BOARD]
    for trace in board.traces[MAX_TRACES_PER_BOARD:]:
        notes.append("%s | %s: not drawn, more than %d panels on one board"
                     % (trace.group, trace.workload, MAX_TRACES_PER_BOARD))
    if not traces:
        return Plot(title, None, "", notes or ["no power trace recorded"])
    fig = Figure(figsize=(9, 0.6 + 2.4 * len(traces)))
    for index, trace in enumerate(traces):
        ax = fig.add_subplot(len(traces), 1, index + 1)
        for label, start, end in trace.phases:
            ax.axvspan(start, end, color=PHASE_COLOURS.get(label, "#cccccc"), alpha=0.22, linewidth=0,
                       label=label if index == 0 else None)
            # the phase name at the top of its band, so the figure reads without the legend
            ax.text((start + end) / 2.0, 1.0, label, transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="#333", clip_on=False)
        ax.plot(trace.t_ms, trace.power_w, color="#1d1d1f", linewidth=1.2, marker=".", markersize=3,
                label="power" if index == 0 else None)
        if trace.idle_power_w is not None:
            ax.axhline(trace.idle_power_w, color="#555", linestyle="--", linewidth=1,
                       label="idle" if index == 0 else None)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("power (W)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_title("%s | %s | rep %d | %s%s" % (plain(trace.workload, 16), plain(trace.group, 56),
                                                 trace.repetition, plain(trace.source, 24),
                                                 " | FLAGGED: throttled / power mode" if trace.flagged else ""),
                     fontsize=8, loc="left", pad=12)
        if not trace.phases:
            notes.append("%s | %s: no phase durations recorded, nothing shaded" % (trace.group, trace.workload))
    fig.axes[-1].set_xlabel("ms from the start of the query")
    fig.legend(loc="lower center", ncol=7, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    with _quiet_glyphs():
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return Plot(title, _png(fig), POWER_CAPTION, notes, [t.describe() for t in traces])


def power_plots(boards: Sequence[BoardPower]) -> List[Plot]:
    """A power-over-time figure for every board that has a trace; a notes-only entry for the others."""
    return [power_over_time(board) for board in boards]
