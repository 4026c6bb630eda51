"""Nightly regression checks: the latest run of every (board, suite, workload, variant, metric)
against a baseline, with three kinds of evidence.

A change is a **regression** (or an **improvement**) only when all three agree:

1. *Practical*: the latest run's median moved past the threshold (default 5%, per metric from the
   suite's ``thresholds``) in the direction that matters - higher is worse for ``*_ms``, energy,
   power and memory; lower is worse for ``*_tps`` and accuracy.
2. *Statistical*: a one-sided Mann-Whitney U test (scipy) of the latest run's measured repetitions
   against the baseline's says the shift is not noise (p < alpha, default 0.01).
3. *Persistent*: a step detector over the recent history of per-run medians (ruptures, see
   :func:`harness.analysis.history.detect_steps`) puts the latest run in a segment of at least
   ``min_persist`` runs (default 2) whose level is past the threshold, and each of the last
   ``min_persist`` runs is past it on its own. One noisy night is therefore never a regression:
   it is listed as *unconfirmed* and the job still passes; if the next night agrees, it fails.

Like asv (factor + Mann-Whitney U + step detection) and unlike a single fixed-% comparison, but
per board. A change that passes 1 and 2 but not 3 is *unconfirmed*; one that passes 1 but not 2
is within the noise. Provenance changes (power mode, engine version, model hash, runner hash,
dtype ...) between the baseline and the latest run are attached to every change.

Baselines: a run id, ``tag:NAME`` (the newest earlier run carrying the tag, e.g. a release), or
``last:N`` (the N runs before the latest, pooled: the level is the median of their medians, so
one bad night inside the window does not move it). With a rolling ``last:N`` a confirmed
regression keeps failing until it has been in the window for about N/2 nights, i.e. until it has
become the new normal; a fixed baseline (a run or a tag) keeps failing until it is moved.

Accuracy: for every (board, suite, variant) whose latest run answered an accuracy task, the
per-sample answers (``results/accuracy.sqlite``, through the ``accuracy_samples`` hook) are paired
with the newest baseline run that answered the same task, and McNemar's test
(:func:`harness.eval.stats.mcnemar_paired`) on the questions both answered is the statistical
evidence. Greedy answers to fixed questions are not noisy the way timings are, so a significant
drop past the threshold is a regression on its first night (no step detector). A question the
board failed to answer counts as wrong: a variant that stops answering must not look unchanged.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as _sps

from harness.store.base import BaseStore, StoreError

from ..errors import UsageError
from .history import History, ProvenanceChange, detect_steps, load_history, provenance_diff
from .noise import coefficient_of_variation, is_noisy, noisy_text

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_PERSIST = 2
DEFAULT_WINDOW = 30
DEFAULT_BASELINE = "last:7"

# What a nightly job checks unless told otherwise: the user-facing latencies and rates, memory
# and energy. Token counts are not performance (a change there shows as a provenance change).
DEFAULT_METRICS = (
    "ttft_ms",
    "decode_tps",
    "e2e_ms",
    "preprocess_ms",
    "vision_encode_ms",
    "prefill_ms",
    "tpot_ms",
    "itl_p90_ms",
    "peak_host_mb",
    "peak_accel_mb",
    "energy_j",
    "j_per_token",
    "accuracy",
)

HIGHER_IS_WORSE = 1
LOWER_IS_WORSE = -1

# (run_id, device, variant) -> {task: {sample id: score in [0, 1]}}; {} when that run answered none
AccuracySamples = Callable[[str, str, str], Mapping[str, Mapping[str, float]]]


class RegressError(UsageError, ValueError):
    """A bad baseline, run or option; the message says what to use instead."""


def metric_direction(metric: str) -> Optional[int]:
    """+1 when a higher value is worse, -1 when a lower one is, None when we cannot tell."""
    name = metric.lower()
    if name.startswith("accuracy") or name.endswith("_accuracy") or name.endswith("_tps"):
        return LOWER_IS_WORSE
    if name.endswith("_ms") or name.endswith("_mb") or name.endswith("_j") or name.endswith("_w") \
            or name.startswith("energy") or name.startswith("j_per_"):
        return HIGHER_IS_WORSE
    return None


def direction_text(direction: int) -> str:
    return "higher is worse" if direction == HIGHER_IS_WORSE else "lower is worse"


@dataclass(frozen=True)
class Baseline:
    kind: str  # "run", "tag" or "last"
    value: str
    n: int = 0

    @classmethod
    def parse(cls, spec: str) -> "Baseline":
        text = (spec or "").strip()
        if text.startswith("last:"):
            try:
                n = int(text[5:])
            except ValueError:
                n = 0
            if n < 1:
                raise RegressError("baseline %r: last:N needs a whole number N >= 1, e.g. last:7" % spec)
            return cls("last", text, n)
        if text.startswith("tag:"):
            if not text[4:]:
                raise RegressError("baseline %r: give the tag, e.g. tag:release-1.2" % spec)
            return cls("tag", text[4:])
        if not text or text == "latest":
            raise RegressError("baseline %r: use a run id, tag:NAME or last:N" % spec)
        return cls("run", text)

    def describe(self) -> str:
        if self.kind == "last":
            return "the %d run(s) before the latest, pooled" % self.n
        if self.kind == "tag":
            return "the newest earlier run tagged %r" % self.value
        return "run %s" % self.value


@dataclass
class StepEvidence:
    checked: bool  # False: not enough history to run the detector
    confirmed: bool
    method: str
    n_history: int  # per-run medians the detector saw
    segment_runs: int = 0  # runs in the latest segment
    segment_start_run: Optional[str] = None  # first run of the latest segment
    segment_level: Optional[float] = None
    note: str = ""


@dataclass
class MetricChange:
    device: str
    suite: str
    workload: str
    variant: str
    metric: str
    direction: str
    status: str  # regression, improvement, unconfirmed, unchanged, no_baseline
    latest_run: str
    latest_created_at: str
    baseline_runs: List[str]
    baseline_median: Optional[float]
    latest_median: Optional[float]
    rel_change: Optional[float]  # (latest - baseline) / |baseline|, signed
    threshold: float
    p_value: Optional[float]  # one-sided Mann-Whitney U in the direction of the change
    alpha: float
    n_baseline: int
    n_latest: int
    step: StepEvidence
    provenance_changes: List[ProvenanceChange] = field(default_factory=list)
    reason: str = ""
    worse: Optional[bool] = None  # the direction of the change: True worse, False better
    emulated: bool = False
    test: str = "Mann-Whitney U"
    # CV of the latest run's / the baseline's repetitions; noisy past analysis.noise.NOISY_CV
    latest_cv: Optional[float] = None
    baseline_cv: Optional[float] = None
    noisy: bool = False

    @property
    def series(self) -> str:
        return "%s / %s / %s / %s / %s" % (self.device, self.suite, self.workload, self.variant, self.metric)

    def as_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["provenance_changes"] = [asdict(c) for c in self.provenance_changes]
        return data


@dataclass
class RegressionReport:
    baseline: str
    baseline_description: str
    store: str
    generated_at: str
    params: Dict[str, Any]
    changes: List[MetricChange]
    skipped_metrics: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def regressions(self) -> List[MetricChange]:
        return [c for c in self.changes if c.status == "regression"]

    @property
    def improvements(self) -> List[MetricChange]:
        return [c for c in self.changes if c.status == "improvement"]

    @property
    def unconfirmed(self) -> List[MetricChange]:
        return [c for c in self.changes if c.status == "unconfirmed"]

    @property
    def no_baseline(self) -> List[MetricChange]:
        return [c for c in self.changes if c.status == "no_baseline"]

    @property
    def exit_code(self) -> int:
        """1 when any regression was found (fails the nightly job), else 0."""
        return 1 if self.regressions else 0

    @property
    def emulated(self) -> bool:
        return any(c.emulated for c in self.changes)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "baseline": self.baseline,
            "baseline_description": self.baseline_description,
            "store": self.store,
            "generated_at": self.generated_at,
            "params": self.params,
            "summary": {"regressions": len(self.regressions), "improvements": len(self.improvements),
                        "unconfirmed": len(self.unconfirmed), "no_baseline": len(self.no_baseline),
                        "compared": len(self.changes), "exit_code": self.exit_code},
            "changes": [c.as_dict() for c in self.changes],
            "skipped_metrics": self.skipped_metrics,
            "notes": self.notes,
        }


def suite_thresholds(suites_dir: Path) -> Dict[str, Dict[str, float]]:
    """{suite name: its per-metric thresholds} for every valid suite in ``suites_dir``."""
    from harness.config.suites import find_suite, list_suites
    from harness.config.yaml_lines import ConfigError

    out: Dict[str, Dict[str, float]] = {}
    for name in list_suites(Path(suites_dir)):
        try:
            suite = find_suite(name, Path(suites_dir))
        except ConfigError:
            continue  # `bench suites list` reports invalid suites; a regression check needs none of them
        out[suite.name] = dict(suite.config.thresholds)
    return out


# -- statistics ---------------------------------------------------------------------------------
def mann_whitney(latest: np.ndarray, baseline: np.ndarray, higher: bool) -> Optional[float]:
    """One-sided p that ``latest`` is stochastically higher (or lower) than ``baseline``."""
    if latest.size < 1 or baseline.size < 1:
        return None
    if np.all(latest == latest[0]) and np.all(baseline == latest[0]):
        return 1.0  # identical constants: no evidence of anything (scipy would warn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _sps.mannwhitneyu(latest, baseline, alternative="greater" if higher else "less")
    p = float(result.pvalue)
    return p if math.isfinite(p) else None


def step_evidence(levels: np.ndarray, run_ids: Sequence[str], base_level: float, sign: int,
                  threshold: float, min_persist: int) -> StepEvidence:
    """Is the latest level (last element of ``levels``) a persistent one? See the module doc."""
    n = int(levels.size)
    min_persist = max(1, int(min_persist))
    method = "ruptures %s (L2, min segment %d runs)" % ("PELT" if n <= 200 else "binary segmentation", min_persist)
    if min_persist == 1 and n < 3:
        return StepEvidence(False, True, method, n,
                            note="history too short for step detection; min_persist=1 relies on the "
                                 "threshold and the Mann-Whitney U test")
    if n < min_persist + 1:
        return StepEvidence(False, False, method, n,
                            note="needs %d more run(s) to confirm" % (min_persist + 1 - n))
    # with min_persist 1 the caller trusts a single run: removing one-run spikes would undo that
    breaks = detect_steps(levels, min_size=min_persist, robust=min_persist > 1)
    start = breaks[-1] if breaks else 0
    segment = levels[start:]
    level = float(np.median(segment))
    seg_rel = (level - base_level) / abs(base_level)
    recent = (levels[-min_persist:] - base_level) / abs(base_level) * sign
    persistent = bool(np.all(recent > threshold))
    confirmed = segment.size >= min_persist and seg_rel * sign > threshold and persistent
    if confirmed:
        note = "level changed at run %s and held for %d run(s)" % (run_ids[start], segment.size)
    elif not persistent:
        note = "only %d of the last %d run(s) past the threshold: not yet persistent" % (
            int(np.sum(recent > threshold)), min_persist)
    else:
        note = "the current segment's level (%+.1f%%) is within the threshold" % (100 * seg_rel)
    return StepEvidence(True, bool(confirmed), method, n, int(segment.size), run_ids[start], level, note)


# -- the check ----------------------------------------------------------------------------------
def _threshold_for(suite: str, metric: str, default: float, thresholds: Mapping[str, float],
                   per_suite: Mapping[str, Mapping[str, float]]) -> float:
    for table in (per_suite.get(suite) or {}, thresholds):
        if metric in table:
            return float(table[metric])
    return default


def _baseline_orders(history: History, baseline: Baseline, orders: np.ndarray, latest: int,
                     baseline_order: Optional[int]) -> Tuple[List[int], str]:
    prior = orders[orders < latest]
    if baseline.kind == "run":
        if baseline_order is None or baseline_order not in set(orders.tolist()):
            return [], "the baseline run %s has no measured values for this series" % baseline.value
        if baseline_order >= latest:
            return [], "the baseline run %s is not older than the latest run" % baseline.value
        return [int(baseline_order)], ""
    if baseline.kind == "tag":
        tags = history.runs["tags"]
        tagged = [int(o) for o in prior if baseline.value in tags.iat[int(o)]]
        if not tagged:
            return [], "no earlier run tagged %r has this series" % baseline.value
        return [tagged[-1]], ""
    chosen = [int(o) for o in prior[-baseline.n:]]
    if not chosen:
        return [], "no earlier run has this series"
    return chosen, ""


def regress(
    store: BaseStore,
    baseline: str = DEFAULT_BASELINE,
    metrics: Optional[Sequence[str]] = None,
    threshold: float = DEFAULT_THRESHOLD,
    thresholds: Optional[Mapping[str, float]] = None,
    alpha: float = DEFAULT_ALPHA,
    *,
    suite_thresholds: Optional[Mapping[str, Mapping[str, float]]] = None,
    run: Optional[str] = None,
    suite: Optional[str] = None,
    devices: Optional[Sequence[str]] = None,
    tag: Optional[str] = None,
    min_persist: int = DEFAULT_MIN_PERSIST,
    window: int = DEFAULT_WINDOW,
    accuracy_samples: Optional[AccuracySamples] = None,
    include_incomplete: bool = False,
) -> RegressionReport:
    """Compare the latest run of every series with ``baseline``; see the module doc.

    ``thresholds`` ({metric: fraction}) and ``suite_thresholds`` ({suite: {metric: fraction}},
    e.g. from :func:`suite_thresholds`) override ``threshold`` per metric, the suite's first.
    ``run`` compares that run instead of each series' newest; ``tag`` keeps only runs carrying it
    (e.g. ``nightly``) as history; ``window`` is how many recent runs the step detector sees.
    """
    if not 0 < alpha < 1:
        raise RegressError("alpha must be between 0 and 1, got %r" % alpha)
    if threshold < 0:
        raise RegressError("threshold must be >= 0, got %r" % threshold)
    if window < 2:
        raise RegressError("window must be >= 2 runs, got %r" % window)
    spec = Baseline.parse(baseline)
    include = [spec.value] if spec.kind == "run" else []
    if run is not None:
        include.append(run)
    try:
        if spec.kind == "run":
            spec = Baseline("run", store.get_run(spec.value).run_id)
            include[0] = spec.value
        if run is not None:
            run = store.get_run(run).run_id
            include[-1] = run
    except StoreError as exc:
        raise RegressError(str(exc)) from None
    wanted = list(metrics) if metrics else list(DEFAULT_METRICS)
    # accuracy is not a measurement metric: asked for alone, the runs and series still come from
    # a metric every measurement has
    loaded = wanted if any(m != "accuracy" for m in wanted) else wanted + ["e2e_ms"]
    history = load_history(store, metrics=loaded, suite=suite, devices=devices, tag=tag, include_runs=include,
                           include_incomplete=include_incomplete)
    per_suite = dict(suite_thresholds or {})
    per_metric = dict(thresholds or {})
    baseline_order = history.order_of(spec.value) if spec.kind == "run" else None
    run_order = history.order_of(run) if run is not None else None
    run_ids = history.runs["run_id"].tolist()

    changes: List[MetricChange] = []
    skipped = sorted({m for m in history.series["metric"].unique() if metric_direction(str(m)) is None})
    plans: List[Tuple[Any, int, int, List[int], str]] = []
    for row in history.series.itertuples(index=False):
        direction = metric_direction(str(row.metric))
        if direction is None:
            continue
        med = history.series_medians(int(row.sid))
        orders = med["order"].to_numpy()
        if run_order is not None:
            if run_order not in set(orders.tolist()):
                continue
            latest = int(run_order)
        else:
            latest = int(orders[-1])
        base_orders, why = _baseline_orders(history, spec, orders, latest, baseline_order)
        plans.append((row, direction, latest, base_orders, why))
    # one query for every provenance the comparisons need
    history.load_contexts(
        (history.run_id(o), r.device, r.suite, r.workload, r.variant)
        for r, _d, latest, base, _w in plans for o in ([latest] + base[:1]))

    for row, direction, latest, base_orders, why in plans:
        if str(row.metric) not in wanted:
            continue
        sid = int(row.sid)
        med = history.series_medians(sid)
        level_at = dict(zip(med["order"].tolist(), med["median"].tolist()))
        thr = _threshold_for(str(row.suite), str(row.metric), threshold, per_metric, per_suite)
        latest_ctx = history.context(history.run_id(latest), row.device, row.suite, row.workload, row.variant)
        latest_prov = latest_ctx.provenance if latest_ctx else {}
        emulated = bool(latest_prov.get("emulated"))
        common = dict(device=str(row.device), suite=str(row.suite), workload=str(row.workload),
                      variant=str(row.variant), metric=str(row.metric), direction=direction_text(direction),
                      latest_run=history.run_id(latest), latest_created_at=history.created_at(latest),
                      threshold=thr, alpha=alpha, emulated=emulated)
        latest_reps = history.reps(sid, [latest])
        if not base_orders:
            changes.append(MetricChange(
                status="no_baseline", baseline_runs=[], baseline_median=None,
                latest_median=float(level_at[latest]), rel_change=None, p_value=None, n_baseline=0,
                n_latest=int(latest_reps.size), step=StepEvidence(False, False, "", 0), reason=why, **common))
            continue
        base_level = float(np.median([level_at[o] for o in base_orders]))
        base_reps = history.reps(sid, base_orders)
        latest_level = float(level_at[latest])
        # the oldest baseline run: with last:N the newest ones may already share the latest's provenance
        base_ctx = history.context(history.run_id(base_orders[0]), row.device, row.suite, row.workload,
                                   row.variant)
        prov = provenance_diff(base_ctx.provenance if base_ctx else {}, latest_prov)
        if latest_ctx is not None and latest_ctx.n_distinct > 1:
            prov.append(ProvenanceChange("within the latest run", None,
                                         "%d different provenances" % latest_ctx.n_distinct))
        base_ids = [history.run_id(o) for o in base_orders]
        if base_level == 0:
            changes.append(MetricChange(
                status="unchanged", baseline_runs=base_ids, baseline_median=base_level,
                latest_median=latest_level, rel_change=None, p_value=None, n_baseline=int(base_reps.size),
                n_latest=int(latest_reps.size), step=StepEvidence(False, False, "", 0),
                provenance_changes=prov, reason="baseline median is 0: no relative change", **common))
            continue
        rel = (latest_level - base_level) / abs(base_level)
        sign = 1 if rel * direction > 0 else -1  # +1: the change is for the worse
        higher = rel > 0
        window_orders = med["order"].to_numpy()
        window_orders = window_orders[window_orders <= latest][-window:]
        levels = np.array([level_at[int(o)] for o in window_orders], dtype=float)
        p: Optional[float] = None
        if abs(rel) <= thr:
            status, step = "unchanged", StepEvidence(False, False, "", int(levels.size))
            reason = "%+.1f%% is within the %.1f%% threshold" % (100 * rel, 100 * thr)
        else:
            step = step_evidence(levels, [history.run_id(int(o)) for o in window_orders], base_level,
                                 1 if higher else -1, thr, min_persist)
            test_orders = base_orders
            excluded = 0
            if step.segment_start_run and step.segment_runs < levels.size:
                at = len(window_orders) - step.segment_runs
                start_order = int(window_orders[at])
                # baseline runs already at the new level (a rolling last:N window that has started
                # to absorb the step) would test the new level against itself
                before_step = [o for o in base_orders if o < start_order]
                if before_step:
                    excluded = len(base_orders) - len(before_step)
                    test_orders = before_step
                # the change that came with the step: the run before the new level vs its first run
                before = history.context(history.run_id(int(window_orders[at - 1])), row.device, row.suite,
                                         row.workload, row.variant)
                after = history.context(history.run_id(start_order), row.device, row.suite, row.workload,
                                        row.variant)
                at_step = provenance_diff(before.provenance if before else {}, after.provenance if after else {})
                if at_step:
                    prov = at_step + [c for c in prov if c.key not in {a.key for a in at_step}]
            if excluded:
                base_reps = history.reps(sid, test_orders)
            p = mann_whitney(latest_reps, base_reps, higher=higher)
            note = " (%d baseline run(s) already at the new level left out of the test)" % excluded if excluded else ""
            if p is None or p >= alpha:
                status, step.confirmed = "unchanged", False
                reason = "%+.1f%% but not significant (Mann-Whitney U p=%s, alpha %g, %d vs %d repetitions)%s" % (
                    100 * rel, "n/a" if p is None else "%.3g" % p, alpha, latest_reps.size, base_reps.size, note)
            else:
                kind = "regression" if sign > 0 else "improvement"
                status = kind if step.confirmed else "unconfirmed"
                reason = "%+.1f%% (threshold %.1f%%), Mann-Whitney U p=%.3g%s; %s" % (
                    100 * rel, 100 * thr, p, note, step.note or "step detector agrees")
        cvs = (coefficient_of_variation(latest_reps.tolist()), coefficient_of_variation(base_reps.tolist()))
        noisy = any(is_noisy(cv) for cv in cvs)
        if noisy and status in ("regression", "improvement", "unconfirmed"):
            # a change in a series this noisy is listed, never acted on: it does not fail the job
            status = "unconfirmed"
            worst = max(cv for cv in cvs if cv is not None)
            step.note = noisy_text(worst) + ("; " + step.note if step.note else "")
            reason = noisy_text(worst) + "; " + reason
        changes.append(MetricChange(
            status=status, baseline_runs=base_ids, baseline_median=base_level, latest_median=latest_level,
            rel_change=rel, p_value=p, n_baseline=int(base_reps.size), n_latest=int(latest_reps.size),
            step=step, provenance_changes=prov, reason=reason, worse=sign > 0, latest_cv=cvs[0],
            baseline_cv=cvs[1], noisy=noisy, **common))

    if accuracy_samples is not None and "accuracy" in wanted:
        changes.extend(_accuracy_changes(history, plans, accuracy_samples, threshold, per_metric, per_suite,
                                         alpha))
    order = {"regression": 0, "unconfirmed": 1, "improvement": 2, "no_baseline": 3, "unchanged": 4}
    changes.sort(key=lambda c: (order.get(c.status, 9), c.device, c.suite, c.workload, c.variant, c.metric))
    notes = [
        "regression = past the threshold AND Mann-Whitney U p < alpha AND persistent for %d run(s) by the "
        "step detector; one noisy night is reported as unconfirmed and does not fail the job" % min_persist,
    ]
    if any(c.metric == "accuracy" and c.test.startswith("McNemar") for c in changes):
        notes.append("accuracy: past the threshold AND McNemar p < alpha on the questions both runs answered "
                     "(per-sample answers from accuracy.sqlite; greedy answers need no persistence check; "
                     "an unanswered question counts as wrong)")
    if tag:
        notes.append("history limited to runs tagged %r" % tag)
    if skipped:
        notes.append("metrics without a known better direction were not compared: %s" % ", ".join(skipped))
    return RegressionReport(
        baseline=baseline, baseline_description=spec.describe(), store=store.location,
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        params={"threshold": threshold, "thresholds": per_metric, "suite_thresholds": per_suite, "alpha": alpha,
                "metrics": wanted, "run": run, "suite": suite, "devices": list(devices or []), "tag": tag,
                "min_persist": min_persist, "window": window, "runs_in_history": len(run_ids)},
        changes=changes, skipped_metrics=skipped, notes=notes,
    )


def _accuracy_changes(history: History, plans: Sequence[Tuple[Any, int, int, List[int], str]],
                      samples: AccuracySamples, threshold: float, per_metric: Mapping[str, float],
                      per_suite: Mapping[str, Mapping[str, float]], alpha: float) -> List[MetricChange]:
    """A McNemar comparison per (device, suite, variant, task) whose latest run answered the task;
    the change's ``workload`` is the task (accuracy belongs to the variant, not to a workload)."""
    from harness.eval.stats import mcnemar_paired

    out: List[MetricChange] = []
    seen = set()
    for row, _direction, latest, base_orders, _why in plans:
        key = (str(row.device), str(row.suite), str(row.variant))
        if key in seen:
            continue
        seen.add(key)
        device, suite, variant = key
        latest_run = history.run_id(latest)
        answered = samples(latest_run, device, variant)
        if not answered:
            continue
        thr = _threshold_for(suite, "accuracy", threshold, per_metric, per_suite)
        # newest first: the baseline is the most recent run that answered the same task
        baseline_samples = [(history.run_id(o), samples(history.run_id(o), device, variant))
                            for o in sorted(base_orders, reverse=True)]
        for task, latest_scores in sorted(answered.items()):
            base_run, base_scores = next(((r, s[task]) for r, s in baseline_samples if s.get(task)), (None, None))
            common = dict(device=device, suite=suite, workload=task, variant=variant, metric="accuracy",
                          direction=direction_text(LOWER_IS_WORSE), latest_run=latest_run,
                          latest_created_at=history.created_at(latest), threshold=thr, alpha=alpha)
            latest_mean = sum(latest_scores.values()) / len(latest_scores)
            if base_run is None or base_scores is None:
                out.append(MetricChange(
                    status="no_baseline", baseline_runs=[], baseline_median=None, latest_median=latest_mean,
                    rel_change=None, p_value=None, n_baseline=0, n_latest=len(latest_scores),
                    step=StepEvidence(False, False, "", 0),
                    reason="no baseline run answered task %s on this variant" % task, test="McNemar",
                    **common))
                continue
            shared = sorted(set(base_scores) & set(latest_scores))
            if not shared:
                out.append(MetricChange(
                    status="no_baseline", baseline_runs=[base_run], baseline_median=None, latest_median=latest_mean,
                    rel_change=None, p_value=None, n_baseline=len(base_scores), n_latest=len(latest_scores),
                    step=StepEvidence(False, False, "", 0),
                    reason="baseline run %s answered other questions of %s: nothing to pair" % (base_run, task),
                    test="McNemar", **common))
                continue
            paired = mcnemar_paired(base_scores, latest_scores)
            base_acc = sum(base_scores[k] for k in shared) / len(shared)
            latest_acc = sum(latest_scores[k] for k in shared) / len(shared)
            rel = (latest_acc - base_acc) / base_acc if base_acc else None
            worse = latest_acc < base_acc
            p = paired.p_value
            significant = p is not None and p < alpha
            practical = rel is not None and abs(rel) > thr
            if significant and practical:
                status = "regression" if worse else "improvement"
            else:
                status = "unchanged"
            if not practical:
                why = ("%+.1f%% is within the %.1f%% threshold" % (100 * rel, 100 * thr) if rel is not None
                       else "baseline accuracy is 0: no relative change")
            elif not significant:
                why = "not significant (alpha %g)" % alpha
            else:
                why = "past the %.1f%% threshold and significant" % (100 * thr)
            out.append(MetricChange(
                status=status, baseline_runs=[base_run], baseline_median=base_acc, latest_median=latest_acc,
                rel_change=rel, p_value=p, n_baseline=len(shared), n_latest=len(shared),
                step=StepEvidence(False, significant and practical, "paired per-sample test", 0,
                                  note="%s on %d shared questions (%d right only before, %d right only now)" % (
                                      paired.test, len(shared), paired.only_reference_right,
                                      paired.only_variant_right)),
                reason="accuracy %.3f -> %.3f on %d shared questions of %s, %s p=%s: %s" % (
                    base_acc, latest_acc, len(shared), task, paired.test, "n/a" if p is None else "%.3g" % p, why),
                worse=worse, test=paired.test, **common))
    return out
