"""The history dashboard: per board, per metric time series of per-run medians with the detected
change points marked and the provenance change that came with each, as one self-contained HTML
file (inline CSS, PNGs as data: URIs, jinja2 autoescape: names from boards are data, not markup).

    from harness.report.history import render_history
    path = render_history(store, Path("reports/history"))

The page helpers at the top (``page_environment``, ``png_data_uri``, ``figure_png``, ``plain``)
are shared with :mod:`harness.report.compare`.
"""

from __future__ import annotations

import base64
import io
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from harness.analysis.history import DASHBOARD_METRICS, SeriesGroup, dashboard_series, load_history
from harness.store.base import BaseStore

TEMPLATES = Path(__file__).resolve().parent / "templates"
HISTORY_TEMPLATE = "history.html.j2"
HISTORY_FILE = "history.html"


# -- page helpers (shared with compare.py) --------------------------------------------------------
def page_environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plain(text: object, limit: int = 48) -> str:
    """A label matplotlib draws literally: one line, no mathtext ($ escaped), bounded length."""
    one_line = " ".join(str(text).split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "\u2026"
    return one_line.replace("$", r"\$")


@contextmanager
def quiet_glyphs() -> Iterator[None]:
    """A name in a script the bundled font lacks draws as boxes; that is not an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Glyph .* missing from font.*")
        warnings.filterwarnings("ignore", message=r".*[Mm]atplotlib currently does not support.*")
        yield


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a figure on its own Agg canvas (no pyplot, no global backend state)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    with quiet_glyphs():
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def fmt(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return "%.0f" % value
    if magnitude >= 10:
        return "%.1f" % value
    return "%.3g" % value


# -- the dashboard --------------------------------------------------------------------------------
@dataclass
class _ChangeRow:
    number: int
    device: str
    workload: str
    variant: str
    metric: str
    run_id: str
    created_at: str
    before: str
    after: str
    change: str
    provenance: List[str]
    note: str


@dataclass
class _Panel:
    title: str
    device: str
    suite: str
    workload: str
    variant: str
    emulated: bool
    uri: str
    alt: str
    n_runs: int
    changes: List[_ChangeRow] = field(default_factory=list)
    latest: List[Dict[str, str]] = field(default_factory=list)


def _draw(group: SeriesGroup, numbers: Dict[int, int]) -> bytes:
    """One figure per group: a row per metric, change points as numbered dashed lines."""
    k = len(group.metrics)
    fig = Figure(figsize=(10.0, 1.7 * k + 0.7))
    axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    labels: Dict[int, str] = {}
    for series in group.metrics:
        for order, created in zip(series.orders.tolist(), series.created_at):
            labels[int(order)] = created[:10]
    for ax, series in zip(axes, group.metrics):
        dense = series.orders.size > 60
        ax.plot(series.orders, series.medians, color="#4e79a7", linewidth=1.0,
                marker=None if dense else "o", markersize=3)
        for cp in series.change_points:
            x = float(series.orders[cp.position])
            ax.axvline(x - 0.5, color="#e15759", linestyle="--", linewidth=1.0)
            ax.annotate(str(numbers[id(cp)]), xy=(x - 0.5, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -10), textcoords="offset points", color="#e15759", fontsize=8,
                        fontweight="bold")
        ax.set_ylabel(plain(series.metric, 20), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    axes[-1].xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: labels.get(int(round(x)), "")))
    axes[-1].set_xlabel("run (oldest to newest; the date of the run under each tick)", fontsize=8)
    fig.suptitle(plain("%s | %s | %s (%s)" % (group.device, group.workload, group.variant, group.suite), 90),
                 fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def history_page(groups: Sequence[SeriesGroup], meta: Dict[str, Any]) -> str:
    """The dashboard's HTML for already-computed groups (see :func:`render_history`)."""
    panels: List[_Panel] = []
    all_changes: List[_ChangeRow] = []
    number = 0
    for group in groups:
        numbers: Dict[int, int] = {}
        rows: List[_ChangeRow] = []
        for series in group.metrics:
            for cp in series.change_points:
                number += 1
                numbers[id(cp)] = number
                rows.append(_ChangeRow(
                    number, group.device, group.workload, group.variant, series.metric, cp.run_id, cp.created_at,
                    fmt(cp.before), fmt(cp.after), "%+.1f%%" % (100 * cp.rel),
                    [c.text() for c in cp.provenance_changes], cp.provenance_note))
        png = _draw(group, numbers)
        latest = [{"metric": s.metric, "value": fmt(float(s.medians[-1])) if s.medians.size else "-",
                   "run": s.run_ids[-1] if s.run_ids else "", "runs": str(len(s.run_ids))} for s in group.metrics]
        panels.append(_Panel(
            title="%s | %s | %s" % (group.device, group.workload, group.variant), device=group.device,
            suite=group.suite, workload=group.workload, variant=group.variant, emulated=group.emulated,
            uri=png_data_uri(png),
            alt="time series of %s for %s, %s, %s" % (", ".join(s.metric for s in group.metrics), group.device,
                                                      group.workload, group.variant),
            n_runs=max((len(s.run_ids) for s in group.metrics), default=0), changes=rows, latest=latest))
        all_changes.extend(rows)
    all_changes.sort(key=lambda r: (r.created_at, r.number), reverse=True)
    return page_environment().get_template(HISTORY_TEMPLATE).render(
        meta=meta, panels=panels, changes=all_changes, emulated=any(g.emulated for g in groups))


def render_history(
    store: BaseStore,
    out_dir: Path,
    metrics: Optional[Sequence[str]] = None,
    suite: Optional[str] = None,
    devices: Optional[Sequence[str]] = None,
    tag: Optional[str] = None,
    last_runs: Optional[int] = None,
    min_rel: float = 0.03,
    include_incomplete: bool = False,
) -> Path:
    """Write ``out_dir/history.html`` and return its path.

    ``metrics`` default to :data:`DASHBOARD_METRICS` (those with data); ``tag`` keeps runs carrying
    it (e.g. nightly); ``last_runs`` the newest N; ``min_rel`` is the smallest step marked (3%).
    """
    wanted = list(metrics) if metrics else list(DASHBOARD_METRICS)
    history = load_history(store, metrics=wanted, suite=suite, devices=devices, tag=tag, last_runs=last_runs,
                           include_incomplete=include_incomplete)
    groups = dashboard_series(history, min_rel=min_rel)
    meta = {
        "title": "edge-VLM bench history",
        "store": store.location,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_runs": history.n_runs,
        "first": history.created_at(0) if history.n_runs else "",
        "last": history.created_at(history.n_runs - 1) if history.n_runs else "",
        "metrics": ", ".join(wanted),
        "filters": ", ".join("%s=%s" % (k, v) for k, v in (("suite", suite), ("tag", tag), ("last runs", last_runs),
                                                          ("interrupted/abandoned runs", "included" if include_incomplete else None),
                                                          ("devices", ",".join(devices or []) or None))
                             if v) or "none",
        "min_rel": "%.0f%%" % (100 * min_rel),
    }
    html = history_page(groups, meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / HISTORY_FILE
    path.write_text(html, encoding="utf-8")
    return path
