"""Summaries over repetitions: numbers checked against independent computations (statistics module
and hand-written formulas), warm-up and failures excluded and counted, seeded bootstrap CIs."""

from __future__ import annotations

import math
import statistics
from typing import List

import pandas as pd
import pytest

from harness.analysis.stats import Summary, measurements_frame, summarize, summary_frame
from harness.runner.protocol import ALL_METRICS
from tests.analysis.synthetic import (
    HOSTILE_DEVICE,
    REPS,
    UNICODE_DEVICE,
    WARMUP,
    make_records,
    measured_values,
)


def p90_by_hand(values: List[float]) -> float:
    """Linear interpolation between closest ranks (numpy's default), written out."""
    ordered = sorted(values)
    rank = 0.9 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_summarize_matches_independent_computation() -> None:
    values = [12.0, 10.0, 11.5, 13.25, 50.0, 10.75]
    s = summarize(values)
    assert s.n == 6 and s.n_missing == 0
    assert s.median == pytest.approx(statistics.median(values))
    assert s.p90 == pytest.approx(p90_by_hand(values))
    assert (s.min, s.max) == (10.0, 50.0)
    assert s.mean == pytest.approx(statistics.fmean(values))
    assert s.std == pytest.approx(statistics.stdev(values))
    assert s.cv == pytest.approx(statistics.stdev(values) / statistics.fmean(values))
    assert s.ci_low is not None and s.ci_high is not None
    assert s.ci_low <= s.median <= s.ci_high
    assert min(values) <= s.ci_low and s.ci_high <= max(values)
    assert s.ci_method.startswith("BCa")


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    values = [3.1, 2.9, 3.4, 3.0, 3.3, 2.8, 3.6, 3.2]
    first, again = summarize(values, seed=7), summarize(values, seed=7)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert first.ci_low <= first.median <= first.ci_high
    narrow = summarize(values, confidence=0.5, seed=7)
    assert narrow.ci_high - narrow.ci_low <= first.ci_high - first.ci_low


def test_equal_values_fall_back_to_percentile() -> None:
    s = summarize([5.0] * 4)
    assert (s.ci_low, s.ci_high) == (5.0, 5.0)
    assert s.ci_method.startswith("percentile") and "all values equal" in s.ci_method
    assert s.std == 0.0 and s.cv == 0.0


def test_none_and_nan_are_dropped_and_counted() -> None:
    s = summarize([4.0, None, float("nan"), 6.0])
    assert (s.n, s.n_missing, s.median) == (2, 2, 5.0)


def test_too_few_values_have_no_interval_and_say_why() -> None:
    one = summarize([7.0])
    assert one.n == 1 and one.median == 7.0 and one.ci_low is None and one.ci_high is None
    assert "n=1" in one.ci_method
    none = summarize([None])
    assert none.n == 0 and none.median is None and none.n_missing == 1 and "no values" in none.ci_method
    assert summarize([]).ci_method == "no values"
    with pytest.raises(ValueError):
        summarize([1.0, 2.0], confidence=95)
    assert isinstance(summarize([1.0, 2.0]), Summary)


def test_measurements_frame_one_row_per_measurement() -> None:
    records = make_records()
    df = measurements_frame(records)
    assert len(df) == len(records) == 2 * 2 * (WARMUP + REPS)
    for column in ("device", "workload", "backend", "variant", "repetition", "warmup", "status",
                   "input_sha256", "weights", "emulated", "emulated_profile", "model_id",
                   "peak_host_mb_source", "output_text", "engine:configured_ms.prefill_ms") + ALL_METRICS:
        assert column in df.columns, column
    assert int(df["warmup"].sum()) == 2 * 2 * WARMUP
    assert (df["status"] == "error").sum() == 1
    assert set(df.loc[df["device"] == HOSTILE_DEVICE, "weights"]) == {"random"}
    assert df.loc[df["device"] == UNICODE_DEVICE, "emulated"].all()
    failed = df[df["status"] == "error"].iloc[0]
    assert math.isnan(failed["ttft_ms"]) and "<script>" in failed["error"]


def test_measurements_frame_exports_to_parquet(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    df = measurements_frame(make_records())
    df.to_parquet(tmp_path / "m.parquet", index=False)
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert len(back) == len(df)


def test_summary_frame_excludes_warmup_and_failures_and_counts_them() -> None:
    records = make_records()
    summary = summary_frame(measurements_frame(records))
    # every group x every metric, nothing dropped
    assert len(summary) == 2 * 2 * len(ALL_METRICS)
    for device in (HOSTILE_DEVICE, UNICODE_DEVICE):
        for workload in ("image", "video-8f"):
            part = summary[(summary["device"] == device) & (summary["workload"] == workload)]
            for metric in ("ttft_ms", "decode_tps", "e2e_ms", "peak_host_mb"):
                row = part[part["metric"] == metric].iloc[0]
                expected = measured_values(records, device, workload, metric)
                assert row["n"] == len(expected)
                assert row["median"] == pytest.approx(statistics.median(expected))
                assert row["p90"] == pytest.approx(p90_by_hand(expected))
                assert row["min"] == pytest.approx(min(expected))
                assert row["max"] == pytest.approx(max(expected))
                assert row["cv"] == pytest.approx(statistics.stdev(expected) / statistics.fmean(expected))
                assert row["ci_low"] <= row["median"] <= row["ci_high"]
                assert row["n_warmup"] == WARMUP and row["n_measured"] == REPS
                assert row["n"] + row["n_missing"] + row["n_failed"] == row["n_measured"]
    image_a = summary[(summary["device"] == HOSTILE_DEVICE) & (summary["workload"] == "image")]
    ttft = image_a[image_a["metric"] == "ttft_ms"].iloc[0]
    assert (ttft["n"], ttft["n_failed"]) == (REPS - 1, 1)
    accel = image_a[image_a["metric"] == "peak_accel_mb"].iloc[0]
    assert accel["n"] == 0 and accel["n_missing"] == REPS - 1 and pd.isna(accel["median"])
    assert image_a[image_a["metric"] == "peak_host_mb"].iloc[0]["source"] == "VmHWM"
    # the warm-up's 10x values never reach a summary
    assert ttft["max"] < 2 * ttft["min"]


def test_summary_frame_keeps_groups_whose_every_repetition_failed() -> None:
    records = [r for r in make_records() if r["workload"] == "image" and r["device"] == HOSTILE_DEVICE]
    for record in records:
        record.update(status="error", metrics={}, error="boom")
    summary = summary_frame(measurements_frame(records))
    assert len(summary) == len(ALL_METRICS)
    assert (summary["n"] == 0).all() and (summary["n_failed"] == REPS).all()


def test_empty_input_gives_empty_frames() -> None:
    df = measurements_frame([])
    assert df.empty and "ttft_ms" in df.columns
    assert summary_frame(df).empty
