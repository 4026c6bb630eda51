"""`bench` end to end on the reference backend, and every user-facing error with its message."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import List

import pytest

from ..conftest import BENCH, bench_env

EMU = """\
devices:
  - name: {name}
    type: local
    transport: local
    workdir: results/work
    idle_s: 0.2
    backend: reference
    backend_options: {options}
    models:
      - variant: emulated
        path: .
"""


def bench(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + list(args), cwd=project, capture_output=True, text=True,
                          env=bench_env(), timeout=timeout)


def devices(project: Path, text: str) -> None:
    (project / "devices.yaml").write_text(text)


def quick_suite(project: Path, name: str, kind: str = "image") -> None:
    text = (project / "suites" / ("image.yaml" if kind == "image" else "video-8f.yaml")).read_text()
    text = text.replace("name: %s\n" % ("image" if kind == "image" else "video-8f"), "name: %s\n" % name, 1)
    text = text.replace("output_tokens: 32", "output_tokens: 6").replace("repetitions: 5", "repetitions: 3")
    (project / "suites" / (name + ".yaml")).write_text(text)


def test_run_json_is_machine_readable(project: Path) -> None:
    devices(project, EMU.format(name="emu", options="{profile: rtx}"))
    proc = bench(project, "run", "--suite", "image", "--devices", "emu", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["ok"] is True and payload["suite"] == "image"
    records = payload["measurements"]
    assert len(records) == 6 and sum(r["warmup"] for r in records) == 1
    assert {r["input_sha256"] for r in records} == {records[0]["input_sha256"]}
    assert len(records[0]["input_sha256"]) == 64
    ttft = [s for s in payload["summary"] if s["metric"] == "ttft_ms"][0]
    assert ttft["n"] == 5 and ttft["device"] == "emu"
    # rtx profile image TTFT: 10 + 12 + 18 ms, paced by the engine process, so never less; later by
    # wake-ups on a loaded box (the bounds and why: test_timing_truth.py)
    assert 40.0 <= ttft["median"] <= 40.0 * 1.01 + 25.0
    assert payload["devices"][0]["state"] == "finished"


def test_report_and_export_after_a_run(project: Path) -> None:
    devices(project, EMU.format(name="emu", options="{profile: agx-orin, time_scale: 0.1}"))
    quick_suite(project, "quick-video", kind="video")
    assert bench(project, "run", "--suite", "quick-video", "--devices", "emu").returncode == 0
    proc = bench(project, "report", "latest")
    assert proc.returncode == 0, proc.stderr
    [report_dir] = [p for p in (project / "reports").iterdir()]
    html = (report_dir / "index.html").read_text()
    assert "emulated" in html.lower()
    assert (report_dir / "summary.md").is_file() and (report_dir / "results.csv").is_file()
    csv = bench(project, "results", "export", "--format", "csv")
    assert csv.returncode == 0 and len(csv.stdout.strip().splitlines()) == 1 + 4
    out = project / "m.parquet"
    assert bench(project, "results", "export", "--format", "parquet", "--out", str(out)).returncode == 0
    import pandas as pd

    assert len(pd.read_parquet(out)) == 4
    listed = bench(project, "results", "list")
    assert "quick-video" in listed.stdout


def test_unknown_suite_and_device(project: Path) -> None:
    devices(project, EMU.format(name="emu", options="{}"))
    proc = bench(project, "run", "--suite", "nope", "--devices", "emu")
    assert proc.returncode == 2
    assert "unknown suite 'nope'" in proc.stderr and "video-8f" in proc.stderr
    proc = bench(project, "run", "--suite", "image", "--devices", "ghost")
    assert proc.returncode == 2
    assert "unknown device 'ghost'" in proc.stderr and "emu" in proc.stderr


def test_bad_yaml_is_reported_with_file_and_line(project: Path) -> None:
    devices(project, EMU.format(name="emu", options="{profile: rtx}").replace("backend: reference", "backend: [reference"))
    proc = bench(project, "run", "--suite", "image", "--devices", "emu")
    assert proc.returncode == 2
    assert "devices.yaml:" in proc.stderr and "invalid YAML" in proc.stderr


def test_unknown_run_for_report(project: Path) -> None:
    proc = bench(project, "report", "20990101-000000-abcdef")
    assert proc.returncode == 2 and "no run '20990101-000000-abcdef'" in proc.stderr


def test_missing_model_directory(project: Path) -> None:
    devices(project, EMU.format(name="cpu", options="{}").replace("backend: reference", "backend: transformers")
            .replace("path: .", "path: models/not-built-yet"))
    proc = bench(project, "run", "--suite", "image", "--devices", "cpu")
    assert proc.returncode == 3
    assert "model directory" in proc.stderr and "not-built-yet" in proc.stderr
    assert "bench models make" in proc.stderr


def test_workload_the_backend_cannot_run(project: Path) -> None:
    devices(project, EMU.format(name="imgonly", options="{kinds: [image]}"))
    quick_suite(project, "quick-video", kind="video")
    proc = bench(project, "run", "--suite", "quick-video", "--devices", "imgonly", "--json")
    assert proc.returncode == 1
    assert "cannot run video workloads" in proc.stderr
    records = json.loads(proc.stdout)["measurements"]
    assert len(records) == 4 and all(r["status"] == "error" and r["error_kind"] == "unsupported" for r in records)


def test_engine_not_installed(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    bare = tmp_path_factory.mktemp("bare-python")
    venv.create(bare, with_pip=False)  # a board python with no torch or transformers
    (project / "model").mkdir()
    (project / "model" / "config.json").write_text("{}")  # looks like a model: the engine is what is missing
    devices(project, EMU.format(name="bare", options="{}").replace("backend: reference", "backend: transformers")
            .replace("path: .", "path: model") + "    python: %s\n" % (bare / "bin" / "python"))
    proc = bench(project, "run", "--suite", "image", "--devices", "bare")
    assert proc.returncode == 3, proc.stderr
    assert "pip install -e '.[local]'" in proc.stderr  # from a checkout: the package is on no index


def test_models_quantize_refuses_unknown_methods_and_non_models(project: Path) -> None:
    proc = bench(project, "models", "quantize", "--model", ".", "--method", "int3-magic", "--out", "q")
    assert proc.returncode == 2 and "unknown method(s) int3-magic" in proc.stderr and "int4-weight" in proc.stderr
    proc = bench(project, "models", "quantize", "--model", "suites", "--method", "int8-weight", "--out", "q")
    assert proc.returncode == 3 and "not a model directory" in proc.stderr
