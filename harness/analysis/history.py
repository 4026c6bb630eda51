"""The store's history as arrays: runs in order, per-run medians per series, change points, and
what changed in the provenance between two runs.

A *series* is one (device, suite, workload, variant, metric); its history is one median per run
over that run's measured repetitions (warm-up and failed ones excluded, as in every summary).
Everything is numpy/pandas over integer codes, so 100k measurements load and summarise in about
a second: the store keeps the measured values in their own table (schema 2) for this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from harness.store.base import BaseStore, RunRecord, SeriesContext
from harness.store.liveness import INCOMPLETE_STATUSES

from ..errors import MissingError, install_hint

SERIES_KEY = ("device", "suite", "workload", "variant", "metric")
CONTEXT_KEY = ("run_id", "device", "suite", "workload", "variant")

# Provenance fields that explain most changes, in the order they are shown. Mappings among them
# (engine_versions, power_mode) are compared key by key.
PROVENANCE_KEYS = (
    "power_mode",
    "cpu_governor",
    "engine",
    "engine_versions",
    "backend",
    "model_id",
    "model_sha256",
    "quantization",
    "dtype",
    "weights",
    "runner_hash",
    "runner_version",
    "controller_commit",
    "board",
    "hostname",
    "kernel",
    "os",
    "l4t_release",
    "accelerator",
    "emulated_profile",
)


@dataclass(frozen=True)
class ProvenanceChange:
    key: str
    before: Optional[str]
    after: Optional[str]

    def text(self) -> str:
        return "%s: %s -> %s" % (self.key, self.before if self.before is not None else "(none)",
                                 self.after if self.after is not None else "(none)")


def _flat(provenance: Mapping[str, Any]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for key in PROVENANCE_KEYS:
        value = provenance.get(key)
        if isinstance(value, Mapping):
            for sub, inner in sorted(value.items()):
                if inner is not None:
                    out["%s.%s" % (key, sub)] = str(inner)
        elif value is not None and value != "":
            out[key] = str(value)
    return out


def provenance_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> List[ProvenanceChange]:
    """What differs between two provenance records, limited to :data:`PROVENANCE_KEYS`."""
    a, b = _flat(before), _flat(after)
    order = {k: i for i, k in enumerate(PROVENANCE_KEYS)}
    keys = sorted(set(a) | set(b), key=lambda k: (order.get(k.split(".", 1)[0], 99), k))
    return [ProvenanceChange(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


# -- change points ------------------------------------------------------------------------------
class StepDetectorMissing(MissingError, ImportError):
    """ruptures is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Step:
    """A change point: the series' level moves from ``before`` to ``after`` at position ``index``
    (the first run of the new segment), by ``rel`` (relative to ``before``)."""

    index: int
    before: float
    after: float
    rel: float
    segment_start: int  # first position of the segment before the change
    segment_end: int  # one past the last position of the segment after the change


def robust_sigma(levels: np.ndarray) -> float:
    """Noise of a series that may contain steps: the MAD of first differences (a step is one
    large difference, which the median ignores), scaled to a normal standard deviation."""
    if levels.size < 3:
        return 0.0
    diffs = np.diff(levels)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return mad / 0.6745 / math.sqrt(2.0)


def despike(values: np.ndarray) -> np.ndarray:
    """Running median of 3 with reflected ends: a single-run spike (also the newest run) is
    replaced by its neighbours' level, while a level held for two or more runs passes unchanged."""
    if values.size < 3:
        return values.copy()
    padded = np.concatenate(([values[1]], values, [values[-2]]))
    stacked = np.vstack([padded[:-2], padded[1:-1], padded[2:]])
    return np.median(stacked, axis=0)


def detect_steps(levels: Sequence[float], min_size: int = 2, penalty: float = 4.0,
                 rel_floor: float = 1e-3, robust: bool = True) -> List[int]:
    """Positions where a new segment starts (0 < i < n), by ruptures on the per-run medians.

    With ``robust`` (the default) single-run spikes are removed first (:func:`despike`), so one
    noisy night is never a step, wherever it is in the history. The series is scaled by its robust noise (:func:`robust_sigma`, floored at ``rel_floor`` of
    its level so an emulated, noiseless series is not all change points) and segmented with an L2
    cost and a BIC-like penalty of ``penalty * log(n)`` noise variances. PELT (exact) is used up
    to 200 runs, binary segmentation (approximate, O(n log n)) beyond that: PELT in ruptures is
    pure Python and takes seconds on a 1000-run history. ``min_size`` is the shortest segment, so
    with the default 2 a single noisy night can never be a segment of its own.
    """
    try:
        import ruptures as rpt  # imported here: only regressions and dashboards need it
    except ImportError as exc:
        raise StepDetectorMissing("change-point detection needs ruptures (%s): "
                                  "%s" % (exc, install_hint("local"))) from None

    values = np.asarray(levels, dtype=float)
    n = int(values.size)
    min_size = max(1, int(min_size))
    if n < 2 * min_size or n < 3:
        return []
    center = float(np.median(values))
    # noise from the raw series: the running median smooths it, and would make noise look like steps
    sigma = max(robust_sigma(values), rel_floor * abs(center), 1e-12)
    if robust:
        values = despike(values)
    scaled = ((values - center) / sigma).reshape(-1, 1)
    algo_cls = rpt.Pelt if n <= 200 else rpt.Binseg
    algo = algo_cls(model="l2", min_size=min_size, jump=1).fit(scaled)
    breaks = algo.predict(pen=penalty * math.log(n))
    return [int(b) for b in breaks[:-1] if 0 < b < n]


def steps_of(levels: Sequence[float], breaks: Sequence[int]) -> List[Step]:
    """Each change point with the medians of the segments on both sides."""
    values = np.asarray(levels, dtype=float)
    bounds = [0] + list(breaks) + [int(values.size)]
    out: List[Step] = []
    for i in range(1, len(bounds) - 1):
        before = float(np.median(values[bounds[i - 1]:bounds[i]]))
        after = float(np.median(values[bounds[i]:bounds[i + 1]]))
        rel = (after - before) / abs(before) if before else (math.inf if after else 0.0)
        out.append(Step(bounds[i], before, after, rel, bounds[i - 1], bounds[i + 1]))
    return out


# -- loading ------------------------------------------------------------------------------------
@dataclass
class History:
    """Runs, series and per-run medians of a store (or of the part a filter selected).

    ``runs``: one row per run, oldest first: ``order`` (0..), run_id, created_at, suite, tags.
    ``series``: one row per series (``sid``) with the :data:`SERIES_KEY` columns.
    ``medians``: sid, order, median, n - sorted by (sid, order).
    """

    runs: pd.DataFrame
    series: pd.DataFrame
    medians: pd.DataFrame
    _keys: np.ndarray = field(repr=False)  # sid * n_runs + order, sorted
    _values: np.ndarray = field(repr=False)  # the measured values in that order
    store: Optional[BaseStore] = field(default=None, repr=False)
    _contexts: Dict[Tuple[str, ...], Optional[SeriesContext]] = field(default_factory=dict, repr=False)

    @property
    def n_runs(self) -> int:
        return int(len(self.runs))

    def run_id(self, order: int) -> str:
        return str(self.runs["run_id"].iat[order])

    def created_at(self, order: int) -> str:
        return str(self.runs["created_at"].iat[order])

    def order_of(self, run_id: str) -> Optional[int]:
        hits = np.flatnonzero(self.runs["run_id"].to_numpy() == run_id)
        return int(hits[0]) if hits.size else None

    def reps(self, sid: int, orders: Iterable[int]) -> np.ndarray:
        """The measured values of series ``sid`` in the runs at ``orders``."""
        chunks = []
        for order in orders:
            key = sid * max(self.n_runs, 1) + int(order)
            lo = int(np.searchsorted(self._keys, key, "left"))
            hi = int(np.searchsorted(self._keys, key, "right"))
            chunks.append(self._values[lo:hi])
        return np.concatenate(chunks) if chunks else np.empty(0)

    def series_medians(self, sid: int) -> pd.DataFrame:
        """order, median, n of one series, oldest first."""
        frame = self._by_sid.get(sid)
        if frame is None:
            return self.medians.iloc[0:0][["order", "median", "n"]]
        return frame

    def __post_init__(self) -> None:
        self._by_sid: Dict[int, pd.DataFrame] = {
            int(sid): group[["order", "median", "n"]].reset_index(drop=True)
            for sid, group in self.medians.groupby("sid", sort=True)
        }

    def load_contexts(self, keys: Iterable[Tuple[str, str, str, str, str]]) -> None:
        """Fetch the provenance of these (run_id, device, suite, workload, variant) at once."""
        if self.store is None:
            return
        missing = {k for k in keys if k not in self._contexts}
        if not missing:
            return
        runs = sorted({k[0] for k in missing})
        for start in range(0, len(runs), 500):
            for ctx in self.store.series_contexts(run_ids=runs[start:start + 500]):
                self._contexts[(ctx.run_id, ctx.device, ctx.suite, ctx.workload, ctx.variant)] = ctx
        for key in missing:  # remembered as absent, so asking again costs no query
            self._contexts.setdefault(key, None)

    def context(self, run_id: str, device: str, suite: str, workload: str, variant: str) -> Optional[SeriesContext]:
        key = (run_id, device, suite, workload, variant)
        if key not in self._contexts:
            self.load_contexts([key])
        return self._contexts.get(key)


def _runs_frame(runs: Sequence[RunRecord]) -> pd.DataFrame:
    ordered = list(reversed(runs))  # list_runs is newest first
    return pd.DataFrame({
        "order": np.arange(len(ordered), dtype=np.int64),
        "run_id": [r.run_id for r in ordered],
        "created_at": [r.created_at for r in ordered],
        "suite": [r.suite for r in ordered],
        "tags": [list(r.tags) for r in ordered],
        "status": [r.status for r in ordered],
    })


def load_history(store: BaseStore, metrics: Optional[Sequence[str]] = None, suite: Optional[str] = None,
                 devices: Optional[Sequence[str]] = None, tag: Optional[str] = None,
                 last_runs: Optional[int] = None, include_runs: Sequence[str] = (),
                 include_incomplete: bool = False) -> History:
    """Read the history a regression check or a dashboard needs, in one query per table.

    ``tag`` keeps only runs carrying it (e.g. ``nightly``), plus ``include_runs`` whatever their
    tags (an explicit baseline); ``last_runs`` keeps the newest N of those. Interrupted and
    abandoned runs (stopped part-way: a partial run is no level) are left out unless
    ``include_incomplete`` or named in ``include_runs``.
    """
    all_runs = store.list_runs(suite=suite)
    if not include_incomplete:
        all_runs = [r for r in all_runs if r.status not in INCOMPLETE_STATUSES or r.run_id in include_runs]
    kept = [r for r in all_runs if tag is None or tag in r.tags or r.run_id in include_runs]
    if last_runs is not None:
        extra = [r for r in kept[last_runs:] if r.run_id in include_runs]
        kept = kept[:last_runs] + extra
        position = {r.run_id: i for i, r in enumerate(all_runs)}
        kept.sort(key=lambda r: position[r.run_id])
    runs = _runs_frame(kept)
    filtered = len(kept) != len(all_runs)
    data = store.history_values(metrics=metrics, suite=suite, devices=devices,
                                run_ids=list(runs["run_id"]) if filtered else None)
    # Column-wise numpy over the raw rows: pandas' string columns and MultiIndex factorising cost
    # seconds at a million values; per-column codes combined arithmetically cost a fraction of that.
    columns = list(zip(*data.rows)) if data.rows else [()] * len(data.columns)
    col = {name: columns[i] for i, name in enumerate(data.columns)}
    order_of = dict(zip(runs["run_id"], runs["order"].tolist()))
    orders = np.fromiter((order_of.get(r, -1) for r in col["run_id"]), dtype=np.int64, count=len(col["run_id"]))
    keep = orders >= 0
    combined = np.zeros(int(keep.sum()), dtype=np.int64)
    levels: List[np.ndarray] = []
    for name in SERIES_KEY:  # lexicographic: the combined code sorts like the key tuple
        codes, uniques = pd.factorize(np.asarray(col[name], dtype=object)[keep], sort=True)
        combined = combined * max(len(uniques), 1) + codes.astype(np.int64)
        levels.append(np.asarray(uniques, dtype=object))
    sids, combos = pd.factorize(combined, sort=True)
    sids = sids.astype(np.int64)
    parts = []
    rest = np.asarray(combos, dtype=np.int64)
    for uniques in reversed(levels):  # decode each series' key from its combined code
        size = max(len(uniques), 1)
        parts.append(uniques[rest % size] if len(uniques) else np.empty(0, dtype=object))
        rest = rest // size
    series = pd.DataFrame({name: part for name, part in zip(SERIES_KEY, reversed(parts))},
                          columns=list(SERIES_KEY))
    series.insert(0, "sid", np.arange(len(series), dtype=np.int64))
    n_runs = max(len(runs), 1)
    orders = orders[keep]
    values = np.asarray(col["value"], dtype=float)[keep] if len(col["value"]) else np.empty(0)
    keys = sids * n_runs + orders
    sort = np.argsort(keys, kind="stable")
    keys = keys[sort]
    values = values[sort]
    frame = pd.DataFrame({"sid": sids[sort], "order": orders[sort], "value": values})
    grouped = frame.groupby(["sid", "order"], sort=True)["value"]
    medians = grouped.median().rename("median").to_frame()
    medians["n"] = grouped.size()
    medians = medians.reset_index()
    return History(runs=runs, series=series, medians=medians, _keys=keys, _values=values, store=store)


# -- dashboard ------------------------------------------------------------------------------------
DASHBOARD_METRICS = ("ttft_ms", "decode_tps", "e2e_ms", "energy_j", "peak_host_mb")


@dataclass
class ChangePoint:
    """A step the detector found in one series, with the provenance change that came with it."""

    metric: str
    run_id: str  # first run at the new level
    created_at: str
    position: int  # index into the series' points
    before: float
    after: float
    rel: float
    provenance_changes: List[ProvenanceChange]
    provenance_note: str = ""  # e.g. "changed one run earlier"


@dataclass
class MetricSeries:
    metric: str
    orders: np.ndarray  # run order of each point (x axis)
    run_ids: List[str]
    created_at: List[str]
    medians: np.ndarray
    n: np.ndarray  # repetitions behind each median
    change_points: List[ChangePoint]


@dataclass
class SeriesGroup:
    """One board's (suite, workload, variant): the panel of metrics a dashboard draws together."""

    device: str
    suite: str
    workload: str
    variant: str
    metrics: List[MetricSeries]
    emulated: bool = False


def _provenance_at(history: History, group: Tuple[str, str, str, str], run_ids: Sequence[str],
                   position: int) -> Tuple[List[ProvenanceChange], str]:
    device, suite, workload, variant = group

    def diff(i: int) -> List[ProvenanceChange]:
        if i < 1 or i >= len(run_ids):
            return []
        a = history.context(run_ids[i - 1], device, suite, workload, variant)
        b = history.context(run_ids[i], device, suite, workload, variant)
        return provenance_diff(a.provenance if a else {}, b.provenance if b else {})

    exact = diff(position)
    if exact:
        return exact, ""
    # the detector can place a step one run off when the first night at the new level is noisy
    for offset, where in ((-1, "one run earlier"), (1, "one run later")):
        near = diff(position + offset)
        if near:
            return near, "changed %s than the detected step" % where
    return [], ""


def dashboard_series(history: History, min_rel: float = 0.03, min_size: int = 2) -> List[SeriesGroup]:
    """Per (device, suite, workload, variant): each metric's per-run medians and its change points
    (steps of at least ``min_rel``, relative), with the provenance change at each."""
    groups: Dict[Tuple[str, str, str, str], List[MetricSeries]] = {}
    pending: List[Tuple[Tuple[str, str, str, str], MetricSeries, List[Step]]] = []
    run_ids_all = history.runs["run_id"].tolist()
    created_all = history.runs["created_at"].tolist()
    for row in history.series.itertuples(index=False):
        med = history.series_medians(int(row.sid))
        orders = med["order"].to_numpy()
        levels = med["median"].to_numpy(dtype=float)
        steps = [s for s in steps_of(levels, detect_steps(levels, min_size=min_size)) if abs(s.rel) >= min_rel]
        key = (str(row.device), str(row.suite), str(row.workload), str(row.variant))
        series = MetricSeries(str(row.metric), orders, [run_ids_all[int(o)] for o in orders],
                              [created_all[int(o)] for o in orders], levels, med["n"].to_numpy(), [])
        groups.setdefault(key, []).append(series)
        pending.append((key, series, steps))
    # the provenance of the runs on both sides of every step, in one query
    wanted = set()
    for key, series, steps in pending:
        for step in steps:
            for i in range(max(0, step.index - 2), min(len(series.run_ids), step.index + 2)):
                wanted.add((series.run_ids[i],) + key)
    last_runs = {key: series.run_ids[-1] for key, series, _ in pending}
    wanted.update((run_id,) + key for key, run_id in last_runs.items())
    history.load_contexts(wanted)
    for key, series, steps in pending:
        for step in steps:
            changes, note = _provenance_at(history, key, series.run_ids, step.index)
            series.change_points.append(ChangePoint(
                series.metric, series.run_ids[step.index], series.created_at[step.index], step.index,
                step.before, step.after, step.rel, changes, note))
    order = {name: i for i, name in enumerate(DASHBOARD_METRICS)}
    out: List[SeriesGroup] = []
    for key in sorted(groups):
        metrics = sorted(groups[key], key=lambda s: (order.get(s.metric, 99), s.metric))
        ctx = history.context(last_runs[key], *key)
        out.append(SeriesGroup(*key, metrics=metrics, emulated=bool(ctx and ctx.provenance.get("emulated"))))
    return out
