"""The runner's clock checked against something it cannot fool: the reference engine's process.

The reference backend's engine is a separate process (harness/runner/backends/_paced_engine.py,
started with ``python -I -S``) that writes its phase lines and one line per token at configured
offsets, paced by kernel timers; the runner stamps each line as it arrives. Everything goes through
the real runner process (spec file in, JSON lines out), so what is tested is what a board runs.

Tolerance (``truth_violations``), and why:
* lower bound, every repetition, no slack: the runner stamps ``t_start`` before it sends the query
  and the engine writes each line at or after its absolute deadline from reading it, so every
  boundary measured from the start (preprocess end, vision end, each token, e2e) is >= its
  configured offset. A clock running slow, or a lost last token, breaks this.
* upper bound, median of the repetitions: within 1 % + 25 ms of the configured offset, and
  within 1 % + 25 ms of when the engine process says it wrote the line (its own CLOCK_MONOTONIC,
  beyond the runner's reach). Ours is later by wake-ups: the engine's on reading the query, its own
  on each deadline, our reader's on each line. On an idle box each is well under 1 ms; on this
  2-core box with other builds running (load ~8) medians of 5-10 ms were seen, hence 25 ms.
* upper bound, every repetition: within 1 % + 500 ms of the configured offset (a gross-error
  bound: at load 13 on 2 cores one repetition was seen 250 ms late).
* counts: exactly the configured number of tokens, one gap fewer inter-token gaps.
* outer clock: the test's own clock, from the runner's first event to its exit, is >= the sum of
  every e2e.
TTFT is 60 ms and a token 5 ms, so 1 % is 0.6 ms / 0.05 ms: larger than the runner's stamp cost.
The exact lower bound is what catches a slow clock or a lost token; the slack above is one-sided:
it is the box's scheduling noise, which can only make a line later, never earlier.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from harness.runner.backends.base import Announcer, BackendError, RawTiming
from harness.runner.protocol import BackendSpec, GenerationSpec, ModelSpec, RunSpec, WorkloadSpec
from harness.runner.workloads import Frame, encode_ppm, input_digest

from ..conftest import bench_env

pytestmark = pytest.mark.truth

MUTATION_DIR = Path(__file__).resolve().parent / "truth_mutation"  # its sitecustomize breaks the runner
PHASES = {"preprocess_ms": 10.0, "vision_encode_ms": 20.0, "prefill_ms": 30.0, "tpot_ms": 5.0,
          "n_input_tokens": 321, "n_visual_tokens": 256}
TOKENS = 20
REL = 0.01
ENGINE_SLACK_MS = 25.0  # median (ours - the engine's own): its wake-up on the query, ours on the line
MEDIAN_SLACK_MS = 25.0  # median (ours - configured): plus the engine's wake-up at each deadline
ONE_RUN_SLACK_MS = 500.0  # any one repetition (ours - configured): only a stalled box gets near it
EPS_MS = 1e-3  # the engine rounds each offset to whole nanoseconds


@dataclass
class Pacing:
    """What the engine process was configured to do, in ms (after time_scale)."""

    preprocess_ms: float
    vision_encode_ms: float
    prefill_ms: float
    gaps_ms: List[float]  # one per token after the first

    @property
    def boundaries(self) -> Dict[str, float]:
        """Every boundary's configured offset from the query's start."""
        out = {"preprocess_end": self.preprocess_ms, "vision_end": self.preprocess_ms + self.vision_encode_ms}
        at = out["vision_end"] + self.prefill_ms
        out["token_0"] = at
        for index, gap in enumerate(self.gaps_ms, start=1):
            at += gap
            out["token_%d" % index] = at
        return out


def measured_boundaries(record: dict) -> Dict[str, float]:
    """The same boundaries as the runner measured them, from the stored record alone."""
    metrics = record["metrics"]
    out = {"preprocess_end": metrics["preprocess_ms"],
           "vision_end": metrics["preprocess_ms"] + metrics["vision_encode_ms"]}
    at = metrics["ttft_ms"]
    out["token_0"] = at
    for index, gap in enumerate(record["itl_ms"], start=1):
        at += gap
        out["token_%d" % index] = at
    return out


def engine_boundaries(record: dict, last_token: str) -> Dict[str, float]:
    """When the engine process says it wrote its lines, on its own clock, from reading the query."""
    reported = record["engine"]["reported_ms"]
    return {"preprocess_end": reported["preprocess_ms"],
            "vision_end": reported["preprocess_ms"] + reported["vision_encode_ms"],
            "token_0": reported["ttft_ms"], last_token: reported["e2e_ms"]}


def truth_violations(records: List[dict], pacing: Pacing, wall_ms: float) -> List[str]:
    """Every way the runner's records disagree with the engine's pacing (see the module docstring)."""
    problems: List[str] = []
    expected = pacing.boundaries
    n_tokens = len(pacing.gaps_ms) + 1
    last_token = "token_%d" % (n_tokens - 1)
    measured = [r for r in records if not r["warmup"]]
    for record in records:
        rep = record["repetition"]
        if record["metrics"]["n_output_tokens"] != n_tokens or len(record["itl_ms"]) != n_tokens - 1:
            problems.append("rep %d: %s output tokens and %d gaps, configured %d tokens" % (
                rep, record["metrics"]["n_output_tokens"], len(record["itl_ms"]), n_tokens))
        got = measured_boundaries(record)
        for name, want in expected.items():
            if name not in got:
                continue  # a count problem, reported above
            if got[name] < want - EPS_MS:
                problems.append("rep %d: %s at %.3f ms, before its configured %.3f ms" % (rep, name, got[name], want))
            elif got[name] > want * (1 + REL) + ONE_RUN_SLACK_MS:
                problems.append("rep %d: %s at %.3f ms, far after its configured %.3f ms" % (rep, name, got[name], want))
        if record["metrics"]["e2e_ms"] < expected[last_token] - EPS_MS:
            problems.append("rep %d: e2e %.3f ms below the configured %.3f ms" % (
                rep, record["metrics"]["e2e_ms"], expected[last_token]))
    for name, want in expected.items():
        ours = [measured_boundaries(r).get(name) for r in measured]
        if None in ours or not ours:
            continue
        if statistics.median(ours) > want * (1 + REL) + MEDIAN_SLACK_MS:
            problems.append("median %s %.3f ms above configured %.3f ms + 1%% + %.0f ms" % (
                name, statistics.median(ours), want, MEDIAN_SLACK_MS))
    for name in ("preprocess_end", "vision_end", "token_0", last_token):
        ours = [measured_boundaries(r).get(name) for r in measured]
        theirs = [engine_boundaries(r, last_token)[name] for r in measured]
        if None in ours or not ours:
            continue
        excess = statistics.median(o - t for o, t in zip(ours, theirs))
        if excess > REL * statistics.median(theirs) + ENGINE_SLACK_MS:
            problems.append("median %s %.3f ms later than the engine process's own clock says (%.3f ms): "
                            "above 1%% + %.0f ms" % (name, excess, statistics.median(theirs), ENGINE_SLACK_MS))
    total_e2e = sum(r["metrics"]["e2e_ms"] for r in records)
    if total_e2e > wall_ms:
        problems.append("the runner's e2e add up to %.1f ms but the test's clock saw the whole runner "
                        "process take %.1f ms" % (total_e2e, wall_ms))
    return problems


def run_runner(tmp_path: Path, options: dict, kind: str = "image", frames: int = 1, reps: int = 5,
               warmup: int = 1, tokens: int = TOKENS, mutation: Optional[str] = None) -> "tuple[list, float]":
    """The runner process on a one-workload spec: (its records, the test's clock around it in ms)."""
    run_dir = tmp_path / ("run-%s" % ("clean" if mutation is None else mutation or "unset"))
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
        device_info={"telemetry_off": True},
    )
    (run_dir / "spec.json").write_text(spec.to_json())
    env = bench_env()
    if mutation is not None:
        env["PYTHONPATH"] = str(MUTATION_DIR) + os.pathsep + env["PYTHONPATH"]
        env["TRUTH_MUTATION"] = mutation
    argv = [sys.executable, "-m", "harness.runner", "run", "--run-dir", str(run_dir), "--events-stdout"]
    # the outer clock starts at the runner's first event (interpreter start-up, which can take
    # seconds on a loaded box, would hide a runner clock that runs fast) and stops at its exit
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    first_event = proc.stdout.readline()
    t0 = time.perf_counter_ns()
    _, stderr = proc.communicate(timeout=120)
    wall_ms = (time.perf_counter_ns() - t0) / 1e6
    assert proc.returncode == 0 and b"run_start" in first_event, stderr.decode()
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("record") == "measurement"], wall_ms


def pacing(tokens: int = TOKENS) -> Pacing:
    return Pacing(PHASES["preprocess_ms"], PHASES["vision_encode_ms"], PHASES["prefill_ms"],
                  [PHASES["tpot_ms"]] * (tokens - 1))


def test_runner_measures_the_engine_process_pacing(tmp_path: Path) -> None:
    records, wall_ms = run_runner(tmp_path, {"phases": {"image": PHASES}})
    assert [r["warmup"] for r in records] == [True] + [False] * 5
    assert truth_violations(records, pacing(), wall_ms) == []
    for record in records:
        assert record["metrics"]["n_input_tokens"] == 321
        assert record["metrics"]["n_visual_tokens"] == 256
        assert record["provenance"]["weights"] == "emulated"
        assert record["warnings"] == []
        # the engine's own view of itself stays in the engine block, beside ours
        assert record["engine"]["reported_ms"]["ttft_ms"] >= 60.0
        assert record["engine"]["configured_ms"]["tpot_ms"] == 5.0
        assert record["metric_sources"]["peak_host_mb"].startswith("VmHWM")


@pytest.mark.parametrize("mutation, tokens, symptoms", [
    # the runner's clock at half speed: every boundary lands before the engine wrote it
    ("clock_scale=0.5", TOKENS, ["token_0 at", "before its configured", "e2e"]),
    # at double speed: above the median bound, and more e2e than the test's own clock saw pass
    # (a longer query, so the runner's start-up cannot hide the excess)
    ("clock_scale=2.0", 60, ["above configured", "later than the engine process's own clock",
                             "the test's clock saw"]),
    ("drop_token", TOKENS, ["output tokens and 18 gaps"]),
    ("double_first", TOKENS, ["output tokens and 20 gaps"]),
])
def test_a_broken_runner_fails_the_truth_check(tmp_path: Path, mutation: str, tokens: int,
                                                symptoms: List[str]) -> None:
    records, wall_ms = run_runner(tmp_path, {"phases": {"image": PHASES}}, reps=5, tokens=tokens, mutation=mutation)
    problems = truth_violations(records, pacing(tokens), wall_ms)
    for symptom in symptoms:
        assert any(symptom in problem for problem in problems), (symptom, problems)


def test_the_mutation_switch_itself_changes_nothing_when_unset(tmp_path: Path) -> None:
    # the sitecustomize on the path with no fault named: the check passes (so the failures above
    # come from the faults, not from loading the mutation module)
    records, wall_ms = run_runner(tmp_path, {"phases": {"image": PHASES}}, reps=3, mutation="")
    assert truth_violations(records, pacing(), wall_ms) == []


def test_inter_token_gaps_follow_a_configured_pattern(tmp_path: Path) -> None:
    pattern = [5.0, 20.0, 60.0]
    phases = {"itl_ms": pattern, "preprocess_ms": 10, "vision_encode_ms": 20, "prefill_ms": 30}
    records, wall_ms = run_runner(tmp_path, {"phases": {"video": phases}}, kind="video", frames=2,
                                  reps=5, warmup=0, tokens=31)
    gaps = [pattern[i % 3] for i in range(30)]
    assert truth_violations(records, Pacing(10.0, 20.0, 30.0, gaps), wall_ms) == []
    # ten of each gap: p50 is 20 ms, p90 60 ms. A gap is the difference of two wake-ups, so it moves
    # either way (every token's time is checked one-sidedly by truth_violations above); this shows
    # the pattern reaches the percentiles: each stays nearer its own gap than its neighbours
    p50 = statistics.median(r["metrics"]["itl_p50_ms"] for r in records)
    p90 = statistics.median(r["metrics"]["itl_p90_ms"] for r in records)
    assert (5.0 + 20.0) / 2 < p50 < (20.0 + 60.0) / 2, p50
    assert (20.0 + 60.0) / 2 < p90 <= 60.0 * (1 + REL) + MEDIAN_SLACK_MS, p90


@pytest.mark.parametrize("profile", ["ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx"])
def test_emulated_profiles_are_paced_the_same_way(tmp_path: Path, profile: str) -> None:
    from harness.runner.backends.reference_profiles import PROFILES

    video = PROFILES[profile]["video"]
    ttft = video["preprocess_ms"] + video["vision_encode_ms"] + video["prefill_ms"]
    # scaled so TTFT >= 60 ms and a token >= 5 ms (1 % must mean something); the scale is recorded
    scale = max(60.0 / ttft, 5.0 / video["tpot_ms"])
    tokens = 4
    records, wall_ms = run_runner(tmp_path, {"profile": profile, "time_scale": scale}, kind="video", frames=8,
                                  reps=3, warmup=0, tokens=tokens)
    pacing = Pacing(video["preprocess_ms"] * scale, video["vision_encode_ms"] * scale, video["prefill_ms"] * scale,
                    [video["tpot_ms"] * scale] * (tokens - 1))
    assert truth_violations(records, pacing, wall_ms) == []
    assert records[0]["metrics"]["n_visual_tokens"] == 484
    assert records[0]["provenance"]["emulated"] is True
    assert records[0]["provenance"]["emulated_profile"] == profile
    assert records[0]["provenance"]["backend_extra"]["time_scale"] == scale


def test_the_announcer_refuses_times_it_did_not_issue() -> None:
    announce = Announcer()
    announce.start()
    arrival = announce.now()
    announce.phase_end("preprocess", at=arrival)  # an arrival reading it issued: accepted
    assert announce.t_preprocess_end == arrival
    with pytest.raises(BackendError, match="not a reading of the runner's clock"):
        announce.token(at=arrival + 1_000_000)  # an engine's own (or computed) time: refused


def test_the_runner_replaces_a_backends_own_timestamps() -> None:
    announce = Announcer()
    announce.start()
    announce.token()
    announce.token()
    # a backend that announced two tokens but returned timestamps of its own making
    forged = RawTiming(t_start=0, t_preprocess_end=1, t_vision_start=1, t_vision_end=2,
                       token_times=[10, 20], n_input_tokens=1, n_visual_tokens=0, n_output_tokens=2)
    stamped = announce.stamped(forged)
    assert stamped.t_start == announce.t_start and stamped.token_times == announce.token_times
    assert stamped.t_preprocess_end is None and stamped.t_vision_end is None  # never announced
    assert stamped.n_output_tokens == 2 and stamped.n_input_tokens == 1  # counts are the backend's
    with pytest.raises(BackendError, match="announced nothing"):
        Announcer().stamped(forged)


def test_an_engine_process_that_dies_is_an_error_never_a_number() -> None:
    from harness.runner.backends.reference import ReferenceBackend
    from harness.runner.protocol import ModelSpec as Model
    from harness.runner.workloads import WorkloadInputs

    backend = ReferenceBackend({"phases": {"image": PHASES}}, Model("emulated", "n/a"))
    backend.load()
    inputs = WorkloadInputs(name="w", kind="image", frames=[Frame(2, 2, bytes(12))], prompt="x", fps=0.0,
                            input_sha256="0" * 64)
    try:
        assert backend.run(inputs, GenerationSpec(output_tokens=3)).n_output_tokens == 3
        backend._engine.proc.kill()  # the engine crashes between queries
        with pytest.raises(BackendError, match="the paced engine (exited|is gone)"):
            backend.run(inputs, GenerationSpec(output_tokens=3))
        # its output is out of step now, so it is not read again
        with pytest.raises(BackendError, match="no engine process"):
            backend.run(inputs, GenerationSpec(output_tokens=3))
    finally:
        backend.close()
