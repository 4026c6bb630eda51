"""Concurrent streams through the runner (SpecRunner -> runner/concurrent.py -> openai backend)
against the real `transformers serve`: record counts, identities, round arithmetic, goodput."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.report.scaling import concurrency_levels
from harness.runner.execute import SpecRunner
from harness.runner.journal import INPUTS, RESULTS, Journal
from harness.runner.protocol import BackendSpec, GenerationSpec, ModelSpec, RunSpec, WorkloadSpec
from harness.runner.workloads import Frame, encode_ppm, input_digest

pytestmark = pytest.mark.server

SLO = {"ttft_ms": 400.0, "tpot_ms": 1000.0}


def _spec(run_dir: Path, url: str, model_dir: Path, levels: List[int]) -> RunSpec:
    frame = Frame(112, 112, bytes(range(256)) * (112 * 112 * 3 // 256) + bytes(112 * 112 * 3 % 256))
    (run_dir / INPUTS).mkdir(parents=True)
    (run_dir / INPUTS / "img.ppm").write_bytes(encode_ppm(frame))
    prompt = "Describe."
    workloads = [WorkloadSpec(name="img-c%d" % c, kind="image", frames=["img.ppm"], prompt=prompt,
                              input_sha256=input_digest([frame], prompt), concurrency=c, output_tokens=4,
                              params={"concurrency": c, "sweep_of": "img", "slo": SLO})
                 for c in levels]
    return RunSpec(run_id="conc", device="srv", suite="server-concurrency",
                   backend=BackendSpec("openai", {"url": url, "temperature": 1.0, "seed": 0}),
                   models=[ModelSpec(variant="tiny", path=str(model_dir))], workloads=workloads,
                   generation=GenerationSpec(output_tokens=6, warmup=1, repetitions=2),
                   device_info={"type": "local", "telemetry_off": True})


def test_levels_records_rounds_and_goodput(tmp_path: Path, transformers_server: str, served_tiny_dir: Path) -> None:
    spec = _spec(tmp_path, transformers_server, served_tiny_dir, [1, 3])
    journal = Journal(str(tmp_path))
    try:
        code = SpecRunner(spec, str(tmp_path), journal).run()
    finally:
        journal.close()
    records: List[Dict[str, Any]] = [json.loads(line) for line in (tmp_path / RESULTS).read_text().splitlines()]
    records = [r for r in records if r.get("record") == "measurement"]
    assert code == 0, [r["error"] for r in records if r["status"] != "ok"]
    by_workload = {w: [r for r in records if r["workload"] == w] for w in ("img-c1", "img-c3")}
    # 3 rounds (1 warm-up) x N streams, identities round * N + stream
    assert sorted(r["repetition"] for r in by_workload["img-c1"]) == [0, 1, 2]
    assert sorted(r["repetition"] for r in by_workload["img-c3"]) == list(range(9))
    assert [r["warmup"] for r in sorted(by_workload["img-c3"], key=lambda r: r["repetition"])] == [True] * 3 + [False] * 6
    for r in records:  # the sweep point's own output length, not the generation default
        assert r["metrics"]["n_output_tokens"] == 4 and r["params"]["slo"] == SLO
    for rnd in range(3):
        streams = [r for r in by_workload["img-c3"] if r["params"]["round"] == rnd]
        assert sorted(r["params"]["stream"] for r in streams) == [0, 1, 2]
        p = streams[0]["params"]
        assert p["round_output_tokens"] == sum(r["metrics"]["n_output_tokens"] for r in streams) == 12
        # the round's wall time is the last stream's end after the first stream's start
        ends = [r["params"]["start_offset_ms"] + r["metrics"]["e2e_ms"] for r in streams]
        assert p["round_wall_ms"] == pytest.approx(max(ends), abs=0.01)
        assert p["round_throughput_tps"] == pytest.approx(12 * 1000.0 / p["round_wall_ms"])
        # released together: every request was sent before any stream saw its first token
        assert max(r["params"]["start_offset_ms"] for r in streams) < min(r["metrics"]["ttft_ms"] for r in streams)
    levels = {lv.concurrency: lv for lv in concurrency_levels(records)}
    assert sorted(levels) == [1, 3]
    for c, level in levels.items():
        measured = [r for r in by_workload["img-c%d" % c] if not r["warmup"]]
        good = [r for r in measured if r["metrics"]["ttft_ms"] <= SLO["ttft_ms"]
                and (r["metrics"]["tpot_ms"] or 1e9) <= SLO["tpot_ms"]]
        assert level.requests == len(measured) and level.good == len(good)
    # one server, requests queue: the third stream waits longer than a lone one
    assert levels[3].ttft_p90 > levels[1].ttft_p50


def test_a_backend_without_concurrency_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "http://127.0.0.1:9", Path("x"), [2])
    spec.backend = BackendSpec("reference", {"time_scale": 0.01})
    journal = Journal(str(tmp_path))
    try:
        code = SpecRunner(spec, str(tmp_path), journal).run()
    finally:
        journal.close()
    records = [json.loads(line) for line in (tmp_path / RESULTS).read_text().splitlines()]
    assert code == 1 and records and all(r["status"] == "error" and r["error_kind"] == "unsupported" for r in records)
    assert "cannot run 2 concurrent streams" in records[0]["error"]
