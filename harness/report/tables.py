"""The report's content, built once and rendered twice (HTML and markdown).

Everything here is plain data (strings and numbers): escaping belongs to the renderers, which know
their output format. Numbers come from :mod:`harness.analysis.stats`, never from here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from harness.analysis.stats import (
    PROVENANCE_COLUMNS,
    flatten,
    measurements_frame,
    metric_columns,
    summary_frame,
)
from harness.analysis.noise import disturbance, is_noisy, noisy_text
from harness.runner.protocol import COUNT_METRICS

RANDOM_LABEL = "random-weight model: timings are real, answers are meaningless"
EMULATED_LABEL = "emulated board profile: figures come from published numbers, not a real board"

METRIC_LABELS: Dict[str, str] = {
    "preprocess_ms": "preprocess (ms)",
    "vision_encode_ms": "vision encode (ms)",
    "prefill_ms": "prefill (ms)",
    "ttft_ms": "TTFT (ms)",
    "decode_tps": "decode (tok/s)",
    "tpot_ms": "TPOT (ms)",
    "itl_p50_ms": "ITL p50 (ms)",
    "itl_p90_ms": "ITL p90 (ms)",
    "itl_p99_ms": "ITL p99 (ms)",
    "e2e_ms": "e2e (ms)",
    "n_input_tokens": "input tokens",
    "n_visual_tokens": "visual tokens",
    "n_output_tokens": "output tokens",
    "peak_host_mb": "peak host memory (MB)",
    "peak_accel_mb": "peak accelerator memory (MB)",
    "energy_j": "energy per query (J)",
    "avg_power_w": "average power over the query (W)",
    "j_per_token": "decode energy per output token (J/token)",
    "idle_power_w": "idle power before the run (W)",
    "energy_above_idle_j": "energy per query above idle (J)",
}

# The runner's phase names (Sampler.window "phases") with the words the report uses for them.
POWER_PHASES: Tuple[Tuple[str, str], ...] = (
    ("preprocess", "preprocess"),
    ("vision_encode", "vision encode"),
    ("prefill", "prefill"),
    ("decode", "decode"),
)
NO_SENSOR_TEXT = ("no power sensor on this board: no power or energy source gave a reading, so energy "
                  "and power are not reported (not zero)")
NO_TELEMETRY_TEXT = ("no telemetry recorded for these measurements (older runner or telemetry off): "
                     "energy, power and throttling unknown")
ENERGY_NOTE = (
    "Medians over the measured repetitions (status ok, warm-up excluded). Energy per query covers "
    "raw inputs -> last token; J/token is the decode phase's energy / (output tokens - 1); phase "
    "power is that phase's energy / its duration; idle power was measured before the run with "
    "nothing loaded. Power-sampled sensors are integrated with the trapezoid rule, energy counters "
    "(RAPL, NVML) by counter deltas. n = repetitions with an energy figure / measured repetitions."
)

# Copied word for word from ARCHITECTURE.md "Metric definitions" (every report states them), as
# one entry per bullet, `code` spans in backticks; each renderer turns them into its own markup.
DEFINITIONS_INTRO = (
    "All times from one monotonic clock (`time.perf_counter_ns`) in the runner; accelerator work is "
    "synchronised before a timestamp is taken."
)
METRIC_DEFINITIONS: Tuple[str, ...] = (
    (
        "`preprocess_ms`: raw image/frames in memory -> model-ready tensors (resize, normalise, "
        "tokenize)."
    ),
    "`vision_encode_ms`: vision tower + merger/projector.",
    "`prefill_ms`: LLM forward over the whole prompt up to the first token's logits.",
    (
        "`ttft_ms`: raw inputs in memory -> first output token available (includes the three "
        "above)."
    ),
    (
        "`decode_tps`: (output tokens - 1) / (t_last_token - t_first_token); `tpot_ms` its "
        "inverse; `itl_ms`: every inter-token gap, summarised as p50/p90/p99."
    ),
    (
        "`e2e_ms`: raw inputs -> last token. Output length is fixed (greedy, EOS ignored) so "
        "boards compare."
    ),
    "`n_input_tokens`, `n_visual_tokens`, `n_output_tokens`: counted, never assumed.",
    (
        "`peak_host_mb` (process high-water mark), `peak_accel_mb` (CUDA peak / NvMap / CMM / "
        "system used, by board), each with its source named."
    ),
    (
        "`avg_power_w`, `energy_j` per phase and per query, `j_per_token` for decode, "
        "`idle_power_w` measured before the run; the sensor and what it covers (module rails, "
        "package, wall) is recorded."
    ),
    (
        "`engine`: the engine's own figures (OpenVINO PerfMetrics, ax-llm log, llama.cpp "
        "timings), stored beside ours so disagreement is visible."
    ),
    (
        "Summaries over repetitions: median, p90, min, max, coefficient of variation, 95% "
        "bootstrap CI; warm-up repetitions stored but flagged and excluded."
    ),
)
SUMMARY_METHOD_NOTE = (
    "In this report: the CI is of the median, from `scipy.stats.bootstrap` (BCa, 2000 resamples, "
    "fixed seed; percentile bootstrap when BCa is degenerate, none when n < 2); CV = sample standard "
    "deviation / mean; only measured repetitions with status ok are summarised, failed ones are "
    "counted and listed below."
)

# Provenance rows shown first, in this order; any other scalar key follows alphabetically.
PROVENANCE_ORDER = tuple(PROVENANCE_COLUMNS) + ("hostname", "arch", "cpu_count", "cpu_governor",
                                                "l4t_release", "engine_versions", "model_path", "variant")


@dataclass
class Label:
    device: str
    variant: str
    kind: str  # "random" or "emulated"
    text: str


@dataclass
class MetricRow:
    metric: str
    label: str
    group: str  # "device / variant (backend)"
    badges: List[str]
    median_ci: str
    p90: str
    min: str
    max: str
    cv: str
    n: str
    excluded: str
    source: str
    engine: str
    flagged: str = ""  # "" or the throttle/power-mode badge text for this group and workload
    noisy: str = ""  # "" or "noisy: CV 46% > 10%, not a basis for a decision" (analysis/noise.py)


@dataclass
class WorkloadTable:
    workload: str
    rows: List[MetricRow]
    # one sentence per device/variant listing the metrics it has no value for (rows left out)
    no_data: List[str] = field(default_factory=list)
    # one sentence per device/variant: how many measured repetitions other work disturbed
    noise: List[Tuple[str, str, bool]] = field(default_factory=list)  # (group, text, any disturbed)


@dataclass
class EngineTable:
    group: str
    workload: str
    rows: List[Tuple[str, str]]


@dataclass
class ProvenanceTable:
    groups: List[str]
    rows: List[Tuple[str, List[str]]]


@dataclass
class Failure:
    device: str
    variant: str
    workload: str
    repetition: int
    warmup: bool
    error_kind: str
    error: str


@dataclass
class Sample:
    group: str
    workload: str
    repetition: Optional[int]
    text: str


@dataclass
class EnergyRow:
    """Energy and power of one device/variant/workload: medians over the measured repetitions."""

    group: str
    workload: str
    sensor: str  # "label: what it covers (rate achieved)"; "" without a sensor
    n: str
    values: Dict[str, Optional[float]]  # energy_j, j_per_token, avg_power_w, idle_power_w, energy_above_idle_j
    phase_power: Dict[str, Optional[float]]  # runner phase name -> median average power (W)
    note: str = ""  # set when there is nothing to show (no sensor, no telemetry): then values are None

    def cell(self, name: str) -> str:
        """A formatted figure; "n/a" when missing (the row's note says why)."""
        if name in self.phase_power:
            return fmt(self.phase_power[name])
        return fmt(self.values.get(name))


@dataclass
class MemoryRow:
    group: str
    workload: str
    source: str  # "label/channel" from the sampler, or "peak_host_mb (VmHWM)" from the runner
    covers: str
    median: str
    max: str
    n: str
    median_mb: Optional[float] = None


@dataclass
class FlaggedRep:
    group: str
    workload: str
    repetition: int
    warmup: bool
    flags: List[str]


@dataclass
class FlagGroup:
    """Throttling / power-mode flags of one device/variant/workload."""

    group: str
    device: str
    workload: str
    n_flagged: int  # measured repetitions flagged
    n_checked: int  # measured repetitions that carried telemetry
    n_measured: int
    n_warmup_flagged: int
    flags: List[Tuple[str, int]]  # (flag, repetitions it was raised in)

    @property
    def badge(self) -> str:
        return "throttled / power mode: %d of %d reps" % (self.n_flagged, self.n_measured)


@dataclass
class PowerTrace:
    """One repetition's power over time, for the per-board plot (times in ms from the query start)."""

    group: str
    workload: str
    repetition: int
    e2e_ms: Optional[float]
    source: str
    covers: str
    t_ms: List[float]
    power_w: List[float]
    phases: List[Tuple[str, float, float]]  # (report phase label, start ms, end ms)
    duration_ms: Optional[float]
    idle_power_w: Optional[float]
    energy_j: Optional[float]
    n_candidates: int  # repetitions it was chosen from (unflagged ones with a trace, if any)
    flagged: bool = False  # every repetition with a trace was flagged, this one too

    def describe(self) -> str:
        pool = "flagged" if self.flagged else "unflagged"
        text = ("%s | %s: repetition %d (median e2e of the %d %s ones with a trace, %s ms), %s (%s), "
                "%d samples, %s J" % (self.group, self.workload, self.repetition, self.n_candidates, pool,
                                      fmt(self.e2e_ms), self.source, self.covers or "coverage not recorded",
                                      len(self.t_ms), fmt(self.energy_j)))
        return text + (" [throttled / power mode: every traced repetition was flagged]" if self.flagged else "")


@dataclass
class BoardPower:
    device: str
    traces: List[PowerTrace]
    notes: List[str]  # groups without a trace, and why


@dataclass
class TelemetryData:
    energy: List[EnergyRow] = field(default_factory=list)
    memory: List[MemoryRow] = field(default_factory=list)
    flag_groups: List[FlagGroup] = field(default_factory=list)
    flagged_reps: List[FlaggedRep] = field(default_factory=list)
    warnings: List[Tuple[str, str, int]] = field(default_factory=list)  # (group, warning, count)
    power: List[BoardPower] = field(default_factory=list)
    any_telemetry: bool = False

    @property
    def n_flagged(self) -> int:
        return sum(g.n_flagged for g in self.flag_groups)

    @property
    def n_checked(self) -> int:
        return sum(g.n_checked for g in self.flag_groups)


@dataclass
class ReportData:
    run: Dict[str, Any]
    header: List[Tuple[str, str]]
    labels: List[Label]
    workloads: List[WorkloadTable]
    engine_tables: List[EngineTable]
    provenance: ProvenanceTable
    inputs: ProvenanceTable
    failures: List[Failure]
    warnings: List[Tuple[str, str, int]]  # (group, warning, count)
    samples: List[Sample]
    measurements: pd.DataFrame
    summary: pd.DataFrame
    itl: Dict[Tuple[str, str, str, str], List[float]]  # (device, variant, backend, workload) -> gaps
    n_records: int
    n_ok: int
    n_warmup: int
    notes: List[str] = field(default_factory=list)
    telemetry: TelemetryData = field(default_factory=TelemetryData)
    accuracy_page: str = ""  # "accuracy.html" when the run has an accuracy page beside this one


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, metric: str = "") -> str:
    """A number for people: integers stay integers, times get sensible precision."""
    if _missing(value):
        return "n/a"
    number = float(value)
    if metric in COUNT_METRICS and number == int(number):
        return "%d" % number
    magnitude = abs(number)
    if magnitude >= 100:
        return "%.1f" % number
    if magnitude >= 1:
        return "%.2f" % number
    if magnitude == 0:
        return "0"
    return "%.3g" % number


def fmt_ci(row: pd.Series, metric: str) -> str:
    median = fmt(row["median"], metric)
    if _missing(row["ci_low"]) or _missing(row["ci_high"]):
        return median
    return "%s [%s, %s]" % (median, fmt(row["ci_low"], metric), fmt(row["ci_high"], metric))


def fmt_cv(value: Any) -> str:
    return "n/a" if _missing(value) else "%.1f%%" % (100.0 * float(value))


def group_label(device: str, variant: str, backend: str) -> str:
    return "%s / %s (%s)" % (device, variant, backend)


def _distinct(values: Sequence[Any]) -> List[Any]:
    seen: List[Any] = []
    for value in values:
        if not _missing(value) and value not in seen:
            seen.append(value)
    return seen


def _scalar_text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _labels_for(records: Sequence[Dict[str, Any]]) -> List[str]:
    """"random" and/or "emulated" for one device+variant, from every record's provenance."""
    kinds: List[str] = []
    for record in records:
        prov = record.get("provenance") or {}
        weights = str(prov.get("weights") or "").lower()
        if weights == "random" and "random" not in kinds:
            kinds.append("random")
        emulated = prov.get("emulated") is True or weights == "emulated"
        if emulated and "emulated" not in kinds:
            kinds.append("emulated")
    return kinds


def _key(record: Dict[str, Any]) -> Tuple[str, str, str]:
    return (str(record.get("device") or ""), str(record.get("variant") or ""),
            str(record.get("backend") or ""))


def _measured_ok(record: Dict[str, Any]) -> bool:
    return record.get("status") == "ok" and not record.get("warmup", False)


def _engine_rows(records: Sequence[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """The engine's figures over the measured ok repetitions: numbers as median (min-max)."""
    values: Dict[str, List[Any]] = {}
    for record in records:
        for key, value in flatten(record.get("engine") or {}).items():
            values.setdefault(key, []).append(value)
    rows: List[Tuple[str, str]] = []
    for key, items in values.items():
        numbers = [float(v) for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(items):
            arr = np.asarray(numbers)
            text = fmt(float(np.median(arr)))
            if arr.min() != arr.max():
                text += " (%s-%s, median of %d)" % (fmt(arr.min()), fmt(arr.max()), arr.size)
        else:
            distinct = _distinct([_scalar_text(v) for v in items])
            text = "; ".join(distinct[:3]) + (" (+%d more)" % (len(distinct) - 3) if len(distinct) > 3 else "")
        rows.append((key, text))
    return rows


def _engine_for_metric(rows: List[Tuple[str, str]], metric: str) -> str:
    matches = ["%s: %s" % (key, text) for key, text in rows if key.split(".")[-1] == metric]
    return "; ".join(matches)


def build_report_data(run: Dict[str, Any], records: List[Dict[str, Any]]) -> ReportData:
    """Everything the HTML and markdown reports show, computed once."""
    frame = measurements_frame(records)
    summary = summary_frame(frame)
    metrics = metric_columns(frame)

    by_group: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for record in records:
        by_group.setdefault(_key(record), []).append(record)
    group_keys = sorted(by_group)

    labels: List[Label] = []
    badges: Dict[Tuple[str, str, str], List[str]] = {}
    for key in group_keys:
        kinds = _labels_for(by_group[key])
        badges[key] = kinds
        for kind in kinds:
            text = RANDOM_LABEL if kind == "random" else EMULATED_LABEL
            if kind == "emulated":
                profiles = _distinct([(r.get("provenance") or {}).get("emulated_profile")
                                      for r in by_group[key]])
                if profiles:
                    text += " (profile %s)" % ", ".join(str(p) for p in profiles)
            labels.append(Label(device=key[0], variant=key[1], kind=kind, text=text))

    # engine figures per group and workload, over the measured ok repetitions
    engine_tables: List[EngineTable] = []
    engine_lookup: Dict[Tuple[str, str, str, str], List[Tuple[str, str]]] = {}
    for key in group_keys:
        workloads = _distinct([str(r.get("workload") or "") for r in by_group[key]])
        for workload in sorted(workloads):
            used = [r for r in by_group[key] if str(r.get("workload") or "") == workload and _measured_ok(r)]
            rows = _engine_rows(used)
            engine_lookup[key + (workload,)] = rows
            if rows:
                engine_tables.append(EngineTable(group_label(*key), workload, rows))

    telemetry = build_telemetry(by_group)
    flag_badges = {(g.group, g.workload): g.badge for g in telemetry.flag_groups if g.n_flagged}

    workload_tables: List[WorkloadTable] = []
    for workload in sorted(summary["workload"].unique()) if not summary.empty else []:
        part = summary[summary["workload"] == workload]
        rows: List[MetricRow] = []
        empty: Dict[Tuple[str, str, str], List[str]] = {}  # group -> metrics without any value
        badged: set = set()  # the random/emulated badge goes on a group's first row only
        for metric in metrics:
            for _, row in part[part["metric"] == metric].iterrows():
                key = (row["device"], row["variant"], row["backend"])
                if not row["n"]:
                    source = str(row["source"] or "")
                    empty.setdefault(key, []).append("%s (%s)" % (metric, source) if source else metric)
                    continue
                excluded = []
                if row["n_failed"]:
                    excluded.append("%d failed" % row["n_failed"])
                if row["n_missing"]:
                    excluded.append("%d without this metric" % row["n_missing"])
                if row["n_warmup"]:
                    excluded.append("%d warm-up" % row["n_warmup"])
                rows.append(MetricRow(
                    metric=metric,
                    label=METRIC_LABELS.get(metric, metric),
                    group=group_label(*key),
                    badges=[] if key in badged else badges.get(key, []),
                    median_ci=fmt_ci(row, metric),
                    p90=fmt(row["p90"], metric),
                    min=fmt(row["min"], metric),
                    max=fmt(row["max"], metric),
                    cv=fmt_cv(row["cv"]),
                    n="%d/%d" % (row["n"], row["n_measured"]),
                    excluded=", ".join(excluded) or "none",
                    source=str(row["source"] or ""),
                    engine=_engine_for_metric(engine_lookup.get(key + (workload,), []), metric),
                    flagged="" if key in badged else flag_badges.get((group_label(*key), str(workload)), ""),
                    noisy=noisy_text(float(row["cv"])) if is_noisy(None if _missing(row["cv"]) else float(row["cv"]))
                    and metric not in COUNT_METRICS else "",
                ))
                badged.add(key)
        no_data = ["%s: no value in any measured repetition for %s." % (group_label(*key), ", ".join(names))
                   for key, names in sorted(empty.items())]
        noise = []
        for key in group_keys:
            used = [r for r in by_group[key] if str(r.get("workload") or "") == str(workload)]
            if used:
                found = disturbance(used)
                noise.append((group_label(*key), found.text(), bool(found.n_disturbed)))
        workload_tables.append(WorkloadTable(workload=str(workload), rows=rows, no_data=no_data, noise=noise))

    # provenance: one column per device/variant/backend; values that vary say so
    prov_values: Dict[str, Dict[Tuple[str, str, str], List[str]]] = {}
    for key in group_keys:
        for record in by_group[key]:
            for name, value in (record.get("provenance") or {}).items():
                if _missing(value) or value == "" or name == "interference":  # per repetition: "Machine load"
                    continue
                prov_values.setdefault(name, {}).setdefault(key, []).append(_scalar_text(value))
    names = [n for n in PROVENANCE_ORDER if n in prov_values]
    names += sorted(n for n in prov_values if n not in names)
    for must in ("weights", "emulated", "model_id", "board", "controller_commit"):
        if must not in names:
            names.append(must)
    prov_rows: List[Tuple[str, List[str]]] = []
    for name in names:
        cells = []
        for key in group_keys:
            distinct = _distinct(prov_values.get(name, {}).get(key, []))
            if not distinct:
                cells.append("not recorded")
            elif len(distinct) == 1:
                cells.append(distinct[0])
            else:
                cells.append("varies: " + "; ".join(distinct))
        prov_rows.append((name, cells))
    provenance = ProvenanceTable(groups=[group_label(*k) for k in group_keys], rows=prov_rows)

    input_rows: List[Tuple[str, List[str]]] = []
    all_workloads = sorted(_distinct([str(r.get("workload") or "") for r in records]))
    for workload in all_workloads:
        cells = []
        for key in group_keys:
            hashes = _distinct([r.get("input_sha256") or None for r in by_group[key]
                                if str(r.get("workload") or "") == workload])
            cells.append("; ".join(hashes) if hashes else "not recorded")
        input_rows.append((workload, cells))
    inputs = ProvenanceTable(groups=provenance.groups, rows=input_rows)

    failures = [
        Failure(device=str(r.get("device") or ""), variant=str(r.get("variant") or ""),
                workload=str(r.get("workload") or ""), repetition=int(r.get("repetition") or 0),
                warmup=bool(r.get("warmup")), error_kind=str(r.get("error_kind") or ""),
                error=str(r.get("error") or "(no error message recorded)"))
        for r in records if r.get("status") != "ok"
    ]
    failures.sort(key=lambda f: (f.device, f.variant, f.workload, f.repetition))

    warning_rows: List[Tuple[str, str, int]] = []
    for key in group_keys:
        counts: Dict[str, int] = {}
        for record in by_group[key]:
            for warning in record.get("warnings") or []:
                counts[str(warning)] = counts.get(str(warning), 0) + 1
        warning_rows.extend((group_label(*key), text, count) for text, count in counts.items())

    samples: List[Sample] = []
    itl: Dict[Tuple[str, str, str, str], List[float]] = {}
    for key in group_keys:
        for workload in sorted(_distinct([str(r.get("workload") or "") for r in by_group[key]])):
            measured = sorted((r for r in by_group[key]
                               if str(r.get("workload") or "") == workload and _measured_ok(r)),
                              key=lambda r: int(r.get("repetition") or 0))
            if measured:
                first = measured[0]
                samples.append(Sample(group_label(*key), workload, int(first.get("repetition") or 0),
                                      str(first.get("output_text") or "")))
            else:
                samples.append(Sample(group_label(*key), workload, None,
                                      "(no successful measured repetition)"))
            gaps = [float(g) for r in measured for g in (r.get("itl_ms") or []) if not _missing(g)]
            itl[key + (workload,)] = gaps

    header = [
        ("run", str(run.get("run_id", ""))),
        ("suite", str(run.get("suite", ""))),
        ("created", str(run.get("created_at", ""))),
        ("controller commit", str(run.get("controller_commit") or "not recorded")),
        ("devices", ", ".join(str(d) for d in run.get("devices") or []) or "none"),
        ("tags", ", ".join(str(t) for t in run.get("tags") or []) or "none"),
    ]
    for extra in ("status", "finished_at"):
        if run.get(extra):
            header.append((extra.replace("_", " "), str(run[extra])))

    return ReportData(
        run=dict(run),
        header=header,
        labels=labels,
        workloads=workload_tables,
        engine_tables=engine_tables,
        provenance=provenance,
        inputs=inputs,
        failures=failures,
        warnings=warning_rows,
        samples=samples,
        measurements=frame,
        summary=summary,
        itl=itl,
        n_records=len(records),
        n_ok=sum(1 for r in records if r.get("status") == "ok"),
        n_warmup=sum(1 for r in records if r.get("warmup")),
        telemetry=telemetry,
    )


# -- telemetry: energy, power, memory, throttling -------------------------------------------------
# Records written before the runner sampled telemetry carry ``telemetry == {}``, and a board's
# sources may leave any figure None; every accessor below tolerates both and never invents a value.
def _as_dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _number(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _telemetry(record: Dict[str, Any]) -> Dict[str, Any]:
    return _as_dict(record.get("telemetry"))


def _window(record: Dict[str, Any]) -> Dict[str, Any]:
    return _as_dict(_telemetry(record).get("window"))


def _query_figure(record: Dict[str, Any], name: str) -> Optional[float]:
    """A per-query figure: the runner copies it into ``metrics``; the window has it too."""
    value = _number(_as_dict(record.get("metrics")).get(name))
    if value is None:
        value = _number(_window(record).get(name))
    if value is None and name == "idle_power_w":
        value = _number(_as_dict(_telemetry(record).get("idle")).get("idle_power_w"))
    return value


def _sensor_text(record: Dict[str, Any]) -> str:
    """The power sensor and what it covers, as the runner named it, with the rate it achieved."""
    window = _window(record)
    label = window.get("power_source")
    named = _as_dict(record.get("metric_sources")).get("energy_j")
    if not named and label:
        named = "%s: %s" % (label, window.get("power_covers") or "coverage not recorded")
    return str(named or "")


def _sensor_rate(record: Dict[str, Any]) -> Optional[float]:
    window = _window(record)
    label = window.get("power_source")
    return _number(_as_dict(_as_dict(window.get("sources")).get(str(label))).get("rate_hz")) if label else None


def _flags(record: Dict[str, Any]) -> Optional[List[str]]:
    """The record's throttle/power-mode flags; None when it was not checked (no telemetry)."""
    telemetry = _telemetry(record)
    if "throttle_flags" not in telemetry and "throttled" not in telemetry:
        return None
    flags = [str(f) for f in _as_list(telemetry.get("throttle_flags")) if str(f)]
    if telemetry.get("throttled") and not flags:
        flags = ["flagged as throttled by the runner (no reason recorded)"]
    return flags


def _median_of(values: Sequence[Optional[float]]) -> Optional[float]:
    """numpy's median of the values present, as ``harness.analysis.stats.summarize`` takes it (its
    bootstrap is not needed here, and would cost a resampling per cell)."""
    present = [v for v in values if v is not None]
    return float(np.median(np.asarray(present, dtype=float))) if present else None


_SAMPLES_SUFFIX = re.compile(r" \((\d+) samples\)$")


def _telemetry_warnings(record: Dict[str, Any]) -> List[str]:
    telemetry = _telemetry(record)
    out = ["window: %s" % w for w in _as_list(_window(record).get("warnings"))]
    out += ["source setup: %s" % w for w in _as_list(telemetry.get("source_warnings"))]
    for when in ("before", "after"):
        out += ["%s snapshot: %s" % (when, w) for w in _as_list(_as_dict(telemetry.get(when)).get("warnings"))]
    for label, entry in _as_dict(_as_dict(telemetry.get("idle")).get("sources")).items():
        out += ["idle %s: %s" % (label, w) for w in _as_list(_as_dict(entry).get("warnings"))]
    return [str(w) for w in out]


def _phase_spans(record: Dict[str, Any]) -> List[Tuple[str, float, float]]:
    """Phase boundaries in ms from the query start, rebuilt from the window's phase durations.

    The window records each phase's duration, not its start; the runner's phases are anchored as
    execute.py builds them: preprocess starts with the query, prefill ends at the first token
    (where decode starts), decode ends at the last token (the window's end), and vision encode
    ends where prefill starts. A phase whose anchor is missing follows the previous one.
    """
    window = _window(record)
    phases = _as_dict(window.get("phases"))
    length = {name: _number(_as_dict(phases.get(name)).get("duration_s")) for name, _ in POWER_PHASES}
    length = {name: d * 1000.0 for name, d in length.items() if d is not None and d >= 0}
    total = _number(window.get("duration_s"))
    end_ms = total * 1000.0 if total is not None else None
    ends: Dict[str, float] = {}
    if "decode" in length and end_ms is not None:
        ends["decode"] = end_ms
    first_token = end_ms - length["decode"] if "decode" in ends else _number(
        _as_dict(record.get("metrics")).get("ttft_ms"))
    if "prefill" in length and first_token is not None:
        ends["prefill"] = first_token
    if "vision_encode" in length and "prefill" in ends:
        ends["vision_encode"] = ends["prefill"] - length["prefill"]
    if "preprocess" in length:
        ends["preprocess"] = length["preprocess"]
    spans: List[Tuple[str, float, float]] = []
    cursor = 0.0
    for name, label in POWER_PHASES:
        if name not in length:
            continue
        end = ends.get(name, cursor + length[name])
        spans.append((label, end - length[name], end))
        cursor = end
    return spans


def _power_trace(record: Dict[str, Any]) -> Optional[Tuple[List[float], List[float], str]]:
    trace = _as_dict(_window(record).get("power_trace"))
    pairs = [(_number(t), _number(w)) for t, w in zip(_as_list(trace.get("t_ms")), _as_list(trace.get("power_w")))]
    pairs = [(t, w) for t, w in pairs if t is not None and w is not None]
    if not pairs:
        return None
    return [t for t, _ in pairs], [w for _, w in pairs], str(trace.get("source") or "")


def _median_e2e(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The repetition with the median e2e (the lower middle one for an even count)."""
    keyed = sorted(records, key=lambda r: (_number(_as_dict(r.get("metrics")).get("e2e_ms")) is None,
                                           _number(_as_dict(r.get("metrics")).get("e2e_ms")) or 0.0,
                                           int(r.get("repetition") or 0)))
    timed = [r for r in keyed if _number(_as_dict(r.get("metrics")).get("e2e_ms")) is not None]
    pool = timed or keyed
    return pool[(len(pool) - 1) // 2]


def build_telemetry(by_group: Dict[Tuple[str, str, str], List[Dict[str, Any]]]) -> TelemetryData:
    """Energy, power, memory by source, throttle flags and telemetry warnings of every group."""
    out = TelemetryData()
    boards: Dict[str, BoardPower] = {}
    for key in sorted(by_group):
        group = group_label(*key)
        board = boards.setdefault(key[0], BoardPower(device=key[0], traces=[], notes=[]))
        counts: Dict[str, int] = {}
        samples: Dict[str, int] = {}
        for record in by_group[key]:
            for warning in _telemetry_warnings(record):
                # the sampler appends "(N samples)"; one line per message, samples summed, reads better
                match = _SAMPLES_SUFFIX.search(warning)
                if match:
                    warning = warning[:match.start()]
                    samples[warning] = samples.get(warning, 0) + int(match.group(1))
                counts[warning] = counts.get(warning, 0) + 1
        out.warnings.extend((group, text + (" (%d samples in all)" % samples[text] if text in samples else ""),
                             count) for text, count in counts.items())
        for workload in sorted(_distinct([str(r.get("workload") or "") for r in by_group[key]])):
            mine = [r for r in by_group[key] if str(r.get("workload") or "") == workload]
            measured = [r for r in mine if not r.get("warmup", False)]
            used = sorted((r for r in measured if r.get("status") == "ok"),
                          key=lambda r: int(r.get("repetition") or 0))
            with_telemetry = [r for r in used if _telemetry(r)]
            out.any_telemetry = out.any_telemetry or any(_telemetry(r) for r in mine)

            # energy and power
            figures = {name: [_query_figure(r, name) for r in used]
                       for name in ("energy_j", "j_per_token", "avg_power_w", "idle_power_w",
                                    "energy_above_idle_j")}
            phase_power = {name: _median_of([_number(_as_dict(_as_dict(_window(r).get("phases")).get(name))
                                                     .get("avg_power_w")) for r in used])
                           for name, _ in POWER_PHASES}
            n_energy = sum(1 for v in figures["energy_j"] if v is not None)
            sensors = _distinct([_sensor_text(r) or None for r in used])
            rates = [rate for rate in (_sensor_rate(r) for r in used) if rate is not None]
            sensor = "; ".join(sensors)
            if sensor and rates:
                sensor += " (%.1f Hz achieved, median)" % float(np.median(rates))
            note = ""
            if not used:
                note = "no successful measured repetition"
            elif n_energy == 0 and not with_telemetry:
                note = NO_TELEMETRY_TEXT
            elif n_energy == 0 and not sensors:
                note = NO_SENSOR_TEXT
            elif n_energy == 0:
                note = ("the power sensor (%s) gave no energy figure for any repetition; see the telemetry "
                        "warnings" % sensor)
            out.energy.append(EnergyRow(
                group=group, workload=workload, sensor=sensor, n="%d/%d" % (n_energy, len(measured)),
                values={name: _median_of(values) for name, values in figures.items()},
                phase_power=phase_power, note=note))

            # memory by source: the sampler's peaks and the runner's own two figures
            peaks: Dict[str, List[float]] = {}
            covers: Dict[str, str] = {}
            for record in used:
                window = _window(record)
                sources = _as_dict(window.get("sources"))
                for name, mb in _as_dict(window.get("peak_mb")).items():
                    value = _number(mb)
                    if value is None:
                        continue
                    peaks.setdefault(str(name), []).append(value)
                    label = str(name).rsplit("/", 1)[0]
                    covers.setdefault(str(name), str(_as_dict(sources.get(label)).get("covers") or ""))
                for metric in ("peak_host_mb", "peak_accel_mb"):
                    value = _number(_as_dict(record.get("metrics")).get(metric))
                    if value is None:
                        continue
                    source = str(_as_dict(record.get("metric_sources")).get(metric) or "source not recorded")
                    name = "%s (%s)" % (metric, source)
                    peaks.setdefault(name, []).append(value)
                    covers.setdefault(name, METRIC_LABELS[metric] + ", measured by the runner")
            if not peaks:
                out.memory.append(MemoryRow(group, workload, "none", "no memory figure recorded", "n/a",
                                            "n/a", "0/%d" % len(measured)))
            for name in sorted(peaks):
                values = peaks[name]
                median = _median_of(values)
                out.memory.append(MemoryRow(group, workload, name, covers.get(name, ""), fmt(median),
                                            fmt(max(values)), "%d/%d" % (len(values), len(measured)), median))

            # throttling / power-mode flags: every record (warm-up too) is listed; counts are of measured ones
            flag_counts: Dict[str, int] = {}
            n_flagged = n_warm_flagged = n_checked = 0
            for record in sorted((r for r in mine if r.get("status") == "ok"),
                                 key=lambda r: int(r.get("repetition") or 0)):
                flags = _flags(record)
                warm = bool(record.get("warmup", False))
                if flags is None:
                    continue
                n_checked += 0 if warm else 1
                if not flags:
                    continue
                out.flagged_reps.append(FlaggedRep(group, workload, int(record.get("repetition") or 0), warm, flags))
                if warm:
                    n_warm_flagged += 1
                    continue
                n_flagged += 1
                for flag in flags:
                    flag_counts[flag] = flag_counts.get(flag, 0) + 1
            out.flag_groups.append(FlagGroup(group, key[0], workload, n_flagged, n_checked, len(measured),
                                             n_warm_flagged, sorted(flag_counts.items(), key=lambda kv: -kv[1])))

            # the power-over-time trace: the median-e2e repetition among those that kept one, an
            # unflagged one when there is any, so a throttled rep does not stand for the board
            traced = [r for r in used if _power_trace(r) is not None]
            clean = [r for r in traced if not _flags(r)]
            if traced:
                chosen = _median_e2e(clean or traced)
                t_ms, watts, source = _power_trace(chosen) or ([], [], "")
                window = _window(chosen)
                duration = _number(window.get("duration_s"))
                board.traces.append(PowerTrace(
                    group=group, workload=workload, repetition=int(chosen.get("repetition") or 0),
                    e2e_ms=_number(_as_dict(chosen.get("metrics")).get("e2e_ms")),
                    source=source or str(window.get("power_source") or ""),
                    covers=str(window.get("power_covers") or ""), t_ms=t_ms, power_w=watts,
                    phases=_phase_spans(chosen), duration_ms=duration * 1000.0 if duration is not None else None,
                    idle_power_w=_query_figure(chosen, "idle_power_w"), energy_j=_query_figure(chosen, "energy_j"),
                    n_candidates=len(clean or traced), flagged=bool(_flags(chosen))))
            elif note:
                board.notes.append("%s | %s: %s" % (group, workload, note))
            elif used:
                board.notes.append("%s | %s: energy was measured but no power trace was kept "
                                   "(the runner did not ask the sampler for one)" % (group, workload))
    out.power = [boards[d] for d in sorted(boards)]
    return out
