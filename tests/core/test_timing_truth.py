"""The clock is proven against an engine whose phase times are known: the reference backend.

Everything goes through the real runner process (spec file in, JSON lines out), so what is tested
is what a board runs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runner.protocol import BackendSpec, GenerationSpec, ModelSpec, RunSpec, WorkloadSpec
from harness.runner.workloads import Frame, encode_ppm, input_digest

from ..conftest import bench_env

PHASES = {"preprocess_ms": 15.0, "vision_encode_ms": 40.0, "prefill_ms": 60.0, "tpot_ms": 12.0,
          "n_input_tokens": 321, "n_visual_tokens": 256}
TOKENS = 20


def run_runner(tmp_path: Path, options: dict, kind: str = "image", frames: int = 1,
               reps: int = 5, warmup: int = 1, tokens: int = TOKENS, device_info: dict = None) -> list:
    run_dir = tmp_path / "run"
    (run_dir / "inputs").mkdir(parents=True)
    frame_list = [Frame(4, 3, bytes(range(36))) for _ in range(frames)]
    names = []
    for index, frame in enumerate(frame_list):
        name = "f%d.ppm" % index
        (run_dir / "inputs" / name).write_bytes(encode_ppm(frame))
        names.append(name)
    spec = RunSpec(
        run_id="truth", device="here", suite="truth",
        backend=BackendSpec("reference", options),
        models=[ModelSpec("emulated", "n/a")],
        workloads=[WorkloadSpec("w", kind, names, "prompt", input_digest(frame_list, "prompt"))],
        generation=GenerationSpec(output_tokens=tokens, warmup=warmup, repetitions=reps),
        device_info=device_info or {"idle_s": 0.2},
    )
    (run_dir / "spec.json").write_text(spec.to_json())
    proc = subprocess.run([sys.executable, "-m", "harness.runner", "run", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=bench_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def close(measured: float, truth: float) -> bool:
    return abs(measured - truth) <= max(0.01 * truth, 1.0)


def test_reference_phases_are_measured_within_one_percent(tmp_path: Path) -> None:
    # busy: the engine holds its core, as a real one does; a sleeping engine on a loaded 2-core
    # machine wakes a scheduler tick late, which is the engine's lateness, not the clock's
    records = run_runner(tmp_path, {"phases": {"image": PHASES}, "busy": True})
    assert [r["warmup"] for r in records] == [True] + [False] * 5
    measured = [r for r in records if not r["warmup"]]
    median = {k: statistics.median(r["metrics"][k] for r in measured) for k in measured[0]["metrics"]
              if measured[0]["metrics"][k] is not None}
    truth = {
        "preprocess_ms": 15.0,
        "vision_encode_ms": 40.0,
        "prefill_ms": 60.0,
        "ttft_ms": 15.0 + 40.0 + 60.0,
        "tpot_ms": 12.0,
        "e2e_ms": 15.0 + 40.0 + 60.0 + (TOKENS - 1) * 12.0,
    }
    for name, value in truth.items():
        assert close(median[name], value), (name, median[name], value)
    assert abs(median["decode_tps"] - 1000.0 / 12.0) <= 0.01 * 1000.0 / 12.0
    for record in measured:
        assert record["metrics"]["n_output_tokens"] == TOKENS
        assert record["metrics"]["n_input_tokens"] == 321
        assert record["metrics"]["n_visual_tokens"] == 256
        assert len(record["itl_ms"]) == TOKENS - 1
        assert record["provenance"]["weights"] == "emulated"
        assert record["metric_sources"]["peak_host_mb"].startswith("VmHWM")
        assert record["metrics"]["peak_host_mb"] > 1.0


def test_inter_token_gaps_follow_a_configured_pattern(tmp_path: Path) -> None:
    pattern = [5.0, 10.0, 30.0]
    records = run_runner(tmp_path, {"busy": True, "phases": {"video": {"itl_ms": pattern, "preprocess_ms": 1,
                                                         "vision_encode_ms": 1, "prefill_ms": 1}}},
                         kind="video", frames=2, reps=5, warmup=0, tokens=31)
    assert all(len(r["itl_ms"]) == 30 for r in records)

    def median_of(name: str) -> float:
        return statistics.median(r["metrics"][name] for r in records)

    # ten of each gap: p50 is 10 ms, p90 and p99 are 30 ms (medians over repetitions, so one
    # late wake-up on a busy machine does not decide the test)
    assert close(median_of("itl_p50_ms"), 10.0)
    assert close(median_of("itl_p90_ms"), 30.0)
    # p99 of 30 gaps is the largest gap: one wake-up preempted by another process (a shared
    # 2-core CI box) moves it up by a scheduler tick, so only it gets a wider band
    assert 29.0 <= median_of("itl_p99_ms") <= 36.0
    tpots = [r["metrics"]["tpot_ms"] for r in records]
    assert close(statistics.median(tpots), 15.0)


@pytest.mark.parametrize("profile", ["ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx"])
def test_emulated_profiles_reproduce_published_figures(tmp_path: Path, profile: str) -> None:
    from harness.runner.backends.reference_profiles import PROFILES

    scale = 0.02  # run 50x faster than the board; the scale is recorded with the result
    records = run_runner(tmp_path, {"profile": profile, "time_scale": scale, "busy": True}, kind="video", frames=8,
                         reps=3, warmup=0, tokens=4)
    video = PROFILES[profile]["video"]
    expected_ttft = (video["preprocess_ms"] + video["vision_encode_ms"] + video["prefill_ms"]) * scale
    assert close(statistics.median(r["metrics"]["ttft_ms"] for r in records), expected_ttft)
    assert records[0]["metrics"]["n_visual_tokens"] == 484
    assert records[0]["provenance"]["emulated_profile"] == profile
    assert records[0]["provenance"]["backend_extra"]["time_scale"] == scale
