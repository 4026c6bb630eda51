"""`bench run` + `bench report` through the real transformers backend (tiny random-weight model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.runner.protocol import COUNT_METRICS, MEMORY_METRICS, TIMING_METRICS

from .test_cli import bench, devices

TINY = """\
devices:
  - name: cpu
    type: local
    transport: local
    workdir: results/work
    idle_s: 0.2
    backend: transformers
    backend_options: {device: cpu, dtype: float32}
    models:
      - variant: fp32
        make: {arch: qwen2.5-vl, preset: tiny, seed: 0}
"""

BOTH = """\
name: both
prompt: "Describe <b>this</b> & that."
workloads:
  - {name: image, kind: image, source: media/grace_hopper.jpg, size: [448, 448]}
  - {name: video-8f, kind: video, source: media/grace_hopper.jpg, size: [308, 308], frames: 8}
generation: {output_tokens: 6, warmup: 1, repetitions: 2}
"""


def test_image_and_video_through_transformers_and_the_report(project: Path) -> None:
    devices(project, TINY)
    (project / "suites" / "both.yaml").write_text(BOTH)
    proc = bench(project, "run", "--suite", "both", "--devices", "cpu", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)["measurements"]
    assert len(records) == 2 * 3 and all(r["status"] == "ok" for r in records)
    by_workload = {r["workload"]: r for r in records if not r["warmup"]}
    assert by_workload["image"]["metrics"]["n_visual_tokens"] == 256
    assert by_workload["video-8f"]["metrics"]["n_visual_tokens"] == 484  # the video path, not 8 images
    for record in records:
        assert record["metrics"]["n_output_tokens"] == 6
        assert record["provenance"]["weights"] == "random"
        assert len(record["provenance"]["model_sha256"]) == 64
    report = bench(project, "report", "latest")
    assert report.returncode == 0, report.stderr
    [out] = list((project / "reports").iterdir())
    html = (out / "index.html").read_text()
    assert "random-weight" in html
    for metric in TIMING_METRICS + COUNT_METRICS + MEMORY_METRICS:
        assert html.count(metric) >= 2, metric  # one row per workload
    assert "<b>this</b>" not in html  # the prompt is text, not markup
    assert not re.search(r"""(src|href)=["']https?://""", html)
