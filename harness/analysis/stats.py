"""Summaries over repetitions, exactly as ARCHITECTURE.md asks: median, p90, min, max, coefficient
of variation and a 95% bootstrap confidence interval of the median (``scipy.stats.bootstrap``).

Warm-up repetitions are stored but excluded, failed repetitions are excluded *and counted*, and a
metric a backend could not fill (None) is dropped *and counted*: nothing disappears silently.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps

from harness.runner.protocol import ALL_METRICS

N_RESAMPLES = 2000

# Identity of a measurement, then the columns a summary is grouped by.
ID_COLUMNS = (
    "run_id",
    "device",
    "suite",
    "workload",
    "backend",
    "variant",
    "repetition",
    "warmup",
    "status",
    "error_kind",
    "error",
)
GROUP_COLUMNS = ("device", "workload", "backend", "variant")

# Provenance keys copied into their own columns (the rest stays in the store's JSON).
PROVENANCE_COLUMNS = (
    "weights",
    "emulated",
    "emulated_profile",
    "model_id",
    "model_sha256",
    "engine",
    "dtype",
    "accelerator",
    "quantization",
    "board",
    "cpu_model",
    "os",
    "kernel",
    "python",
    "runner_version",
    "runner_hash",
    "controller_commit",
)
TRAILING_COLUMNS = ("input_sha256", "started_at", "n_itl", "n_warnings", "warnings", "output_text")
SOURCE_SUFFIX = "_source"  # peak_host_mb -> peak_host_mb_source
ENGINE_PREFIX = "engine:"  # engine figures, flattened: engine:configured_ms.prefill_ms

SUMMARY_COLUMNS = (
    "n",
    "n_missing",
    "n_failed",
    "n_warmup",
    "n_measured",
    "median",
    "p90",
    "min",
    "max",
    "mean",
    "std",
    "cv",
    "ci_low",
    "ci_high",
    "ci_method",
    "confidence",
    "source",
)


@dataclass(frozen=True)
class Summary:
    """One metric over the measured repetitions of one device/workload/backend/variant.

    ``std`` is the sample standard deviation (ddof=1), ``cv`` = std / mean, ``p90`` uses numpy's
    linear interpolation (as the runner's ITL percentiles do). ``ci_low``/``ci_high`` bound the
    median at ``confidence``; ``ci_method`` says how they were obtained, or why there is none.
    ``n_missing`` counts the None/NaN values that were dropped before summarising.
    """

    n: int
    median: Optional[float]
    p90: Optional[float]
    min: Optional[float]
    max: Optional[float]
    mean: Optional[float]
    std: Optional[float]
    cv: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    ci_method: str
    n_missing: int = 0
    confidence: float = 0.95

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _clean(values: Sequence[Any]) -> "tuple[np.ndarray, int]":
    kept: List[float] = []
    missing = 0
    for value in values:
        if value is None:
            missing += 1
            continue
        number = float(value)
        if math.isnan(number):
            missing += 1
        else:
            kept.append(number)
    return np.asarray(kept, dtype=float), missing


def _bootstrap_median(
    data: np.ndarray, confidence: float, seed: int, method: str
) -> "tuple[float, float]":
    with warnings.catch_warnings():
        # scipy warns (DegenerateDataWarning) and returns NaN when BCa cannot be computed; the
        # caller checks for NaN and falls back, so the warning itself is noise here.
        warnings.simplefilter("ignore")
        result = _sps.bootstrap(
            (data,),
            np.median,
            n_resamples=N_RESAMPLES,
            confidence_level=confidence,
            method=method,
            vectorized=True,
            axis=-1,
            rng=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _finite(low: float, high: float) -> bool:
    return math.isfinite(low) and math.isfinite(high)


def summarize(values: Sequence[Optional[float]], confidence: float = 0.95, seed: int = 0) -> Summary:
    """Summarise repeated measurements of one metric; None and NaN are dropped and counted.

    The confidence interval of the median is a BCa bootstrap (``scipy.stats.bootstrap``,
    2000 resamples, ``numpy.random.default_rng(seed)``, so the same input and seed give the same
    interval); when BCa is degenerate (e.g. every value equal) it falls back to the percentile
    bootstrap, and with fewer than two values there is no interval at all.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1, got %r" % confidence)
    data, missing = _clean(values)
    n = int(data.size)
    if n == 0:
        reason = "no values" if missing == 0 else "no values (%d missing)" % missing
        return Summary(0, None, None, None, None, None, None, None, None, None, reason, missing, confidence)
    median = float(np.median(data))
    p90 = float(np.percentile(data, 90))
    mean = float(np.mean(data))
    low_v, high_v = float(np.min(data)), float(np.max(data))
    if n == 1:
        return Summary(1, median, p90, low_v, high_v, mean, None, None, None, None,
                       "none: n=1, an interval needs at least two values", missing, confidence)
    std = float(np.std(data, ddof=1))
    cv = std / abs(mean) if mean != 0 else None
    label = "%d%% bootstrap of the median, %d resamples, seed %d" % (
        round(confidence * 100), N_RESAMPLES, seed)
    ci_low, ci_high = _bootstrap_median(data, confidence, seed, "BCa")
    method = "BCa " + label
    if not _finite(ci_low, ci_high):
        why = "all values equal" if low_v == high_v else "BCa degenerate"
        ci_low, ci_high = _bootstrap_median(data, confidence, seed, "percentile")
        method = "percentile %s (%s)" % (label, why)
        if not _finite(ci_low, ci_high):  # cannot happen with finite data; never report NaN
            return Summary(n, median, p90, low_v, high_v, mean, std, cv, None, None,
                           "none: bootstrap failed", missing, confidence)
    return Summary(n, median, p90, low_v, high_v, mean, std, cv, ci_low, ci_high, method,
                   missing, confidence)


# -- frames -----------------------------------------------------------------------------------
def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan if value is None else float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _scalar(value: Any) -> Any:
    """A value a CSV/Parquet cell can hold: scalars as they are, containers as JSON text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def flatten(mapping: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested dicts -> {"a.b.c": value}; lists and other values are kept as leaves."""
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        name = "%s%s" % (prefix, key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _emulated(value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def measurements_frame(records: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """One row per measurement (warm-up and failed rows included), metrics flattened into columns.

    Columns: the identity (``ID_COLUMNS``), every metric of ``protocol.ALL_METRICS`` (NaN when
    absent) plus any further metric a record carries, ``<metric>_source`` for each named metric
    source, the provenance keys of ``PROVENANCE_COLUMNS``, then input_sha256, started_at, n_itl,
    warnings and output_text, and the engine's own figures as ``engine:<key.path>``.
    ``df.attrs["metric_columns"]`` lists the metric columns in order.
    """
    rows: List[Dict[str, Any]] = []
    metric_names: List[str] = list(ALL_METRICS)
    source_names: List[str] = []
    engine_names: List[str] = []
    reserved = set(ID_COLUMNS) | set(PROVENANCE_COLUMNS) | set(TRAILING_COLUMNS)
    for record in records:
        row: Dict[str, Any] = {name: record.get(name) for name in ID_COLUMNS}
        row["repetition"] = int(record.get("repetition") or 0)
        row["warmup"] = bool(record.get("warmup", False))
        for name, value in (record.get("metrics") or {}).items():
            column = name if name not in reserved else "metric:" + name
            if column not in metric_names:
                metric_names.append(column)
            row[column] = _number(value)
        for name, source in (record.get("metric_sources") or {}).items():
            column = name + SOURCE_SUFFIX
            if column not in source_names:
                source_names.append(column)
            row[column] = _scalar(source)
        provenance = record.get("provenance") or {}
        for name in PROVENANCE_COLUMNS:
            value = provenance.get(name)
            row[name] = _emulated(value) if name == "emulated" else (
                None if value is None else str(_scalar(value)))
        row["input_sha256"] = record.get("input_sha256") or ""
        row["started_at"] = record.get("started_at") or ""
        row["n_itl"] = len(record.get("itl_ms") or [])
        record_warnings = [str(w) for w in (record.get("warnings") or [])]
        row["n_warnings"] = len(record_warnings)
        row["warnings"] = "\n".join(record_warnings)
        row["output_text"] = record.get("output_text") or ""
        for name, value in flatten(record.get("engine") or {}).items():
            column = ENGINE_PREFIX + name
            if column not in engine_names:
                engine_names.append(column)
            row[column] = _scalar(value)
        rows.append(row)
    columns = (list(ID_COLUMNS) + metric_names + source_names + list(PROVENANCE_COLUMNS)
               + list(TRAILING_COLUMNS) + engine_names)
    frame = pd.DataFrame(rows, columns=columns)
    for name in metric_names:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame["repetition"] = frame["repetition"].astype(int)
    frame["warmup"] = frame["warmup"].astype(bool)
    frame["n_itl"] = frame["n_itl"].astype(int)
    frame["n_warnings"] = frame["n_warnings"].astype(int)
    for name in engine_names:  # one type per column, or Parquet export refuses it
        kinds = {type(v) for v in frame[name] if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if kinds and not kinds <= {int, float}:
            frame[name] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                           for v in frame[name]]
    frame.attrs["metric_columns"] = metric_names
    return frame


def metric_columns(df: pd.DataFrame) -> List[str]:
    """The metric columns of a :func:`measurements_frame`, in report order."""
    names = df.attrs.get("metric_columns")
    if names:
        return [n for n in names if n in df.columns]
    return [n for n in ALL_METRICS if n in df.columns]


def _sources(values: pd.Series) -> str:
    seen: List[str] = []
    for value in values:
        if isinstance(value, str) and value and value not in seen:
            seen.append(value)
    return "; ".join(seen)


def summary_frame(df: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per (device, workload, backend, variant, metric): the :class:`Summary` fields.

    Summaries use measured (non-warm-up) rows with status "ok" only. ``n_warmup`` counts the
    warm-up rows, ``n_failed`` the measured rows that failed, ``n_missing`` the ok rows without
    this metric, so ``n + n_missing + n_failed == n_measured``. ``source`` names where the figure
    came from (e.g. VmHWM for peak_host_mb) when the runner said so. A group whose every
    repetition failed still has its rows, with n = 0.
    """
    out_columns = list(GROUP_COLUMNS) + ["metric"] + list(SUMMARY_COLUMNS)
    if df.empty:
        return pd.DataFrame(columns=out_columns)
    metrics = metric_columns(df)
    keyed = df.copy()
    for key in GROUP_COLUMNS:
        keyed[key] = keyed[key].fillna("").astype(str)
    rows: List[Dict[str, Any]] = []
    for group_key, group in keyed.groupby(list(GROUP_COLUMNS), sort=True, dropna=False):
        warm = group["warmup"].astype(bool)
        measured = group[~warm]
        ok = measured[measured["status"] == "ok"]
        base = dict(zip(GROUP_COLUMNS, group_key))
        for metric in metrics:
            summary = summarize(ok[metric].tolist(), confidence=confidence, seed=seed)
            source_col = metric + SOURCE_SUFFIX
            row = dict(base)
            row["metric"] = metric
            row.update({f.name: getattr(summary, f.name) for f in fields(Summary)})
            row["n_failed"] = int(len(measured) - len(ok))
            row["n_warmup"] = int(warm.sum())
            row["n_measured"] = int(len(measured))
            row["source"] = _sources(ok[source_col]) if source_col in ok.columns else ""
            rows.append(row)
    frame = pd.DataFrame(rows, columns=out_columns)
    order = {name: i for i, name in enumerate(metrics)}
    frame["_order"] = frame["metric"].map(order)
    frame = frame.sort_values(list(GROUP_COLUMNS) + ["_order"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)
