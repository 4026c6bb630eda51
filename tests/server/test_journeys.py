"""The documented commands, through the installed `bench` script: a resolution sweep on the local
transformers backend, and the concurrency suite against a loopback `transformers serve`, each
followed by `bench report` with its scaling figures. The shipped suites are used, shortened in the
test's copy (fewer repetitions and tokens) so the journeys stay quick."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import bench_env

pytestmark = [pytest.mark.journey, pytest.mark.server]

BENCH = Path(sys.executable).parent / "bench"


def bench(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BENCH)] + list(args), cwd=project, capture_output=True, text=True,
                          env=bench_env(), timeout=timeout)




def _shorten(project: Path, name: str, pairs: list) -> None:
    path = project / "suites" / ("%s.yaml" % name)
    text = path.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


def _report_html(project: Path) -> str:
    report = bench(project, "report", "latest")
    assert report.returncode == 0, report.stderr
    [out] = list((project / "reports").iterdir())
    html = (out / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']https?://""", html)
    return html


def test_sweep_resolution_on_local(project: Path, served_tiny_dir: Path) -> None:
    (project / "devices.yaml").write_text(
        "devices:\n  - name: local\n    type: local\n    transport: local\n    workdir: work\n"
        "    backend: transformers\n    backend_options: {device: cpu, dtype: float32}\n"
        "    models:\n      - {variant: fp32, path: %s}\n    telemetry: []\n    idle_s: 0\n" % served_tiny_dir)
    _shorten(project, "sweep-resolution", [("warmup: 1", "warmup: 0"), ("repetitions: 3", "repetitions: 1"),
                                            ("output_tokens: 8", "output_tokens: 4")])
    proc = bench(project, "run", "--suite", "sweep-resolution", "--devices", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)["measurements"]
    sizes = {r["workload"]: r for r in records}
    assert sorted(sizes) == ["image-224x224", "image-336x336", "image-448x448", "image-672x672"]
    for name, record in sizes.items():
        side = record["params"]["size"][0]
        assert record["params"] == {"size": [side, side], "sweep_of": "image"}
        assert record["metrics"]["n_visual_tokens"] == (side // 28) ** 2  # Qwen2.5-VL: 14 px patches, 2x2 merge
    html = _report_html(project)
    assert "TTFT and vision encode vs visual tokens" in html and "Decode rate vs context length" in html
    assert re.search(r"TTFT vs visual tokens, local / fp32 / transformers: log-log slope -?\d+\.\d\d over 64 tok", html)


def test_server_concurrency_against_loopback_server(project: Path, transformers_server: str, served_tiny_dir: Path) -> None:
    (project / "devices.yaml").write_text(
        "devices:\n  - name: srv\n    type: local\n    transport: local\n    workdir: work\n"
        "    backend: openai\n    backend_options: {url: '%s', temperature: 1.0, seed: 0}\n"
        "    models:\n      - {variant: tiny, path: %s}\n    telemetry: []\n    idle_s: 0\n"
        % (transformers_server, served_tiny_dir))
    _shorten(project, "server-concurrency", [("concurrency: [1, 2, 4, 8]", "concurrency: [1, 2, 4]"),
                                              ("repetitions: 3", "repetitions: 1"),
                                              ("output_tokens: 16", "output_tokens: 4")])
    proc = bench(project, "run", "--suite", "server-concurrency", "--devices", "srv", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    records = payload["measurements"]
    counts = {w: sum(1 for r in records if r["workload"] == w) for w in ("image-c1", "image-c2", "image-c4")}
    assert counts == {"image-c1": 2, "image-c2": 4, "image-c4": 8}  # (1 warm-up + 1) rounds x N streams
    assert all(r["status"] == "ok" and r["metrics"]["n_output_tokens"] == 4 for r in records)
    assert all(r["engine"]["fixed_length"]["method"] == "generation_config" for r in records)
    html = _report_html(project)
    assert "Throughput and latency over concurrency" in html
    for c in (1, 2, 4):
        assert re.search(r"image \| concurrency %d: \d+\.\d tok/s, TTFT p50 [\d.]+ / p90 [\d.]+ ms, .*goodput \d+%% \(\d/%d\)"
                         % (c, c), html), c
    compare = bench(project, "report", "--compare", payload["run_id"])
    assert compare.returncode == 0, compare.stderr
    [page] = list((project / "reports").glob("compare-*/compare.html"))
    assert "Throughput and latency over concurrency" in page.read_text()
