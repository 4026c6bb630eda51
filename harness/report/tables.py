"""The report's content, built once and rendered twice (HTML and markdown).

Everything here is plain data (strings and numbers): escaping belongs to the renderers, which know
their output format. Numbers come from :mod:`harness.analysis.stats`, never from here.
"""

from __future__ import annotations

import json
import math
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
}

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


@dataclass
class WorkloadTable:
    workload: str
    rows: List[MetricRow]


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

    workload_tables: List[WorkloadTable] = []
    for workload in sorted(summary["workload"].unique()) if not summary.empty else []:
        part = summary[summary["workload"] == workload]
        rows: List[MetricRow] = []
        for metric in metrics:
            for _, row in part[part["metric"] == metric].iterrows():
                key = (row["device"], row["variant"], row["backend"])
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
                    badges=badges.get(key, []),
                    median_ci=fmt_ci(row, metric),
                    p90=fmt(row["p90"], metric),
                    min=fmt(row["min"], metric),
                    max=fmt(row["max"], metric),
                    cv=fmt_cv(row["cv"]),
                    n="%d/%d" % (row["n"], row["n_measured"]),
                    excluded=", ".join(excluded) or "none",
                    source=str(row["source"] or ""),
                    engine=_engine_for_metric(engine_lookup.get(key + (workload,), []), metric),
                ))
        workload_tables.append(WorkloadTable(workload=str(workload), rows=rows))

    # provenance: one column per device/variant/backend; values that vary say so
    prov_values: Dict[str, Dict[Tuple[str, str, str], List[str]]] = {}
    for key in group_keys:
        for record in by_group[key]:
            for name, value in (record.get("provenance") or {}).items():
                if _missing(value) or value == "":
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
    )
