"""The history dashboard: per board, per metric time series of per-run medians with the detected
change points marked and the provenance change that came with each, as one self-contained HTML
file (inline CSS, PNGs as data: URIs, jinja2 autoescape: names from boards are data, not markup),
and ``history.md`` beside it with the same change points as a table.

    from harness.report.history import render_history
    path = render_history(store, Path("reports/history"))

On a team's PostgreSQL store the caller also passes the nightly schedule's nights
(:func:`harness.queue.schedule.stored_nights`): both pages then get a "Nights" section with each
night's verdict, its alert's outcome and where its JUnit/markdown went. ``nights=None`` (a SQLite
store, or a PostgreSQL one no worker ran a schedule on) leaves the section out.

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
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, ScalarFormatter

from harness.analysis.history import DASHBOARD_METRICS, SeriesGroup, dashboard_series, load_history
from harness.errors import UsageError
from harness.runner.protocol import ALL_METRICS
from harness.store.base import BaseStore

# Metrics a measurement can carry: the protocol's, plus the energy figures telemetry adds.
KNOWN_METRICS = tuple(ALL_METRICS) + ("energy_j", "avg_power_w", "j_per_token", "idle_power_w",
                                      "energy_above_idle_j")
# A y axis spans at least this share of the series' level: 0.0002 ms of jitter on 1116 ms is a
# flat line, not a zig-zag filling the panel.
MIN_Y_SPAN = 0.04

TEMPLATES = Path(__file__).resolve().parent / "templates"
HISTORY_TEMPLATE = "history.html.j2"
HISTORY_FILE = "history.html"
HISTORY_MARKDOWN = "history.md"


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
    created_at: Dict[int, str] = {}
    for series in group.metrics:
        for order, created in zip(series.orders.tolist(), series.created_at):
            labels[int(order)] = created[:16].replace("T", " ")  # runs of one day differ by the time
            created_at[int(order)] = created
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
        formatter = ScalarFormatter(useOffset=False)  # plain numbers, never "1e-5+1.116e3"
        formatter.set_scientific(False)
        ax.yaxis.set_major_formatter(formatter)
        finite = [float(v) for v in series.medians.tolist() if math.isfinite(v)]
        if finite:
            low, high = min(finite), max(finite)
            pad = max((high - low) * 0.15, MIN_Y_SPAN / 2 * abs((low + high) / 2), 1e-9)
            ax.set_ylim(low - pad, high + pad)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    # ticks only where there is a run (at most 8, evenly picked), so no two ticks share a label
    orders = sorted(labels)
    if len(set(labels.values())) < len(labels):  # runs within one minute: add seconds
        labels = {o: created_at[o][5:19].replace("T", " ") for o in labels}
    step = max(1, math.ceil(len(orders) / 8))
    axes[-1].xaxis.set_major_locator(FixedLocator(orders[::step]))
    if len(orders) == 1:
        axes[-1].set_xlim(orders[0] - 1, orders[0] + 1)
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: labels.get(int(round(x)), "")))
    for tick in axes[-1].get_xticklabels():
        tick.set_rotation(30)
        tick.set_horizontalalignment("right")
    axes[-1].set_xlabel("run (oldest to newest; its start, UTC, under each tick)", fontsize=8)
    fig.suptitle(plain("%s | %s | %s (%s)" % (group.device, group.workload, group.variant, group.suite), 90),
                 fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


@dataclass
class NightRow:
    """One night of the nightly schedule as the pages show it."""

    schedule: str
    period: str
    state: str  # regression, clean, pending, not over, not checked, done
    verdict: str
    alert: str
    alert_failed: bool
    runs: List[str]
    outputs: List[Dict[str, str]]  # {"kind": "JUnit"/"markdown", "path", "uri"}


def night_rows(nights: Sequence[Dict[str, Any]]) -> List[NightRow]:
    """Rows for :func:`harness.queue.schedule.stored_nights`'s dicts, newest first as given."""
    from harness.queue.schedule import night_alert_text, night_verdict_text

    rows = []
    for night in nights:
        verdict = night.get("verdict") or {}
        text = night_verdict_text(night)
        if not verdict:
            state = "not over" if night.get("open_jobs") else "pending"
        elif "regressions" not in verdict:
            state = "done"
        elif verdict["regressions"]:
            state = "regression"
        else:
            state = "not checked" if text.startswith("not checked") else "clean"
        outputs = []
        for kind, label in (("junit", "JUnit"), ("markdown", "markdown")):
            for path in (verdict.get("outputs") or {}).get(kind, []):
                # the paths are the worker's; a link works where the page is read on that machine
                uri = Path(path).as_uri() if Path(path).is_absolute() else path
                outputs.append({"kind": label, "path": path, "uri": uri})
        outcomes = verdict.get("alert")
        failed = isinstance(outcomes, list) and any(o.get("ok") is False for o in outcomes)
        rows.append(NightRow(schedule=str(night["schedule"]), period=str(night["period"]), state=state,
                             verdict=text, alert=night_alert_text(night), alert_failed=failed,
                             runs=[str(r) for r in night.get("runs") or []], outputs=outputs))
    return rows


def history_markdown(changes: Sequence[_ChangeRow], meta: Dict[str, Any],
                     nights: Optional[Sequence[NightRow]]) -> str:
    """``history.md``: the page's facts and change points as text, and the nights when given."""
    from harness.analysis.regress_output import md_cell

    lines = ["# %s" % meta["title"], "",
             "- store: %s" % md_cell(meta["store"]),
             "- runs: %s (%s to %s)" % (meta["n_runs"], meta["first"] or "-", meta["last"] or "-"),
             "- metrics: %s" % md_cell(meta["metrics"]),
             "- filters: %s" % md_cell(meta["filters"]),
             "- generated: %s" % meta["generated_at"], "",
             "## Change points (%d)" % len(changes), ""]
    if changes:
        lines += ["| # | board | workload | variant | metric | first run at the new level | before | after | change |"
                  " provenance change |", "|---:|---|---|---|---|---|---:|---:|---:|---|"]
        for c in changes:
            lines.append("| %d | %s |" % (c.number, " | ".join(md_cell(v) for v in (
                c.device, c.workload, c.variant, c.metric, c.run_id, c.before, c.after, c.change,
                "; ".join(c.provenance) or "none recorded"))))
    else:
        lines.append("No step of at least %s in any series." % meta["min_rel"])
    if nights is not None:
        lines += ["", "## Nights (%d)" % len(nights), ""]
        if nights:
            lines += ["| schedule | period | verdict | alert | JUnit / markdown |", "|---|---|---|---|---|"]
            for n in nights:
                where = ", ".join("%s %s" % (o["kind"], md_cell(o["path"])) for o in n.outputs) or "-"
                lines.append("| %s | %s | %s | %s | %s |" % (md_cell(n.schedule), md_cell(n.period),
                                                             md_cell(n.verdict), md_cell(n.alert), where))
        else:
            lines.append("No night of a schedule is recorded in this store yet.")
    return "\n".join(lines) + "\n"


def history_page(groups: Sequence[SeriesGroup], meta: Dict[str, Any],
                 nights: Optional[Sequence[NightRow]] = None) -> str:
    """The dashboard's HTML for already-computed groups (see :func:`render_history`)."""
    return _history(groups, meta, nights)[0]


def _history(groups: Sequence[SeriesGroup], meta: Dict[str, Any],
             nights: Optional[Sequence[NightRow]]) -> Tuple[str, str]:
    """(the HTML, the markdown) of one dashboard: the change points are numbered once for both."""
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
    html = page_environment().get_template(HISTORY_TEMPLATE).render(
        meta=meta, panels=panels, changes=all_changes, emulated=any(g.emulated for g in groups), nights=nights)
    return html, history_markdown(all_changes, meta, nights)


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
    nights: Optional[Sequence[Dict[str, Any]]] = None,
) -> Path:
    """Write ``out_dir/history.html`` and ``history.md``; return the HTML's path.

    ``metrics`` default to :data:`DASHBOARD_METRICS` (those with data); ``tag`` keeps runs carrying
    it (e.g. nightly); ``last_runs`` the newest N; ``min_rel`` is the smallest step marked (3%);
    ``nights`` (from :func:`harness.queue.schedule.stored_nights`) adds the Nights section.
    """
    wanted = list(metrics) if metrics else list(DASHBOARD_METRICS)
    unknown = [m for m in wanted if m not in KNOWN_METRICS]
    if unknown:
        raise UsageError("unknown metric %s for --metric; known metrics: %s"
                         % (", ".join(repr(m) for m in unknown), ", ".join(KNOWN_METRICS)))
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
    html, markdown = _history(groups, meta, night_rows(nights) if nights is not None else None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / HISTORY_MARKDOWN).write_text(markdown, encoding="utf-8")
    path = out / HISTORY_FILE
    path.write_text(html, encoding="utf-8")
    return path
