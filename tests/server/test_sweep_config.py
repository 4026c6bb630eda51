"""sweep:, concurrency: and slo: in suites: expansion into workloads, and errors with file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.config.suites import load_suite
from harness.config.sweep import context_prompt
from harness.config.yaml_lines import ConfigError
from harness.workloads import prepare_workloads

REPO = Path(__file__).resolve().parents[2]


def _suite(tmp_path: Path, body: str) -> Path:
    shutil.copytree(REPO / "suites" / "media", tmp_path / "media")
    path = tmp_path / "s.yaml"
    path.write_text(body, encoding="utf-8")
    return path


HEAD = """name: s
prompt: Describe.
workloads:
  - {name: img, kind: image, source: media/grace_hopper.jpg, size: [224, 224]}
  - {name: vid, kind: video, source: media/grace_hopper.jpg, size: [224, 224], frames: 4}
"""


def test_cross_product_names_params_and_specs(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, HEAD + """sweep:
  size: [[224, 224], [336, 336]]
  frames: [2, 8]
  output_tokens: [4, 6]
slo: {ttft_ms: 500}
"""))
    names = [w.name for w in suite.config.workloads]
    # image: 2 sizes x 2 lengths (frames do not apply); video: 2 x 2 x 2
    assert len(names) == 4 + 8 and len(set(names)) == 12
    assert "img-336x336-o6" in names and "vid-224x224-f8-o4" in names
    by_name = {w.name: w for w in suite.config.workloads}
    vid = by_name["vid-224x224-f8-o4"]
    assert (vid.frames, vid.output_tokens, tuple(vid.size)) == (8, 4, (224, 224))
    assert vid.params == {"size": [224, 224], "frames": 8, "output_tokens": 4, "sweep_of": "vid",
                          "slo": {"ttft_ms": 500.0}}
    specs = {p.spec.name: p for p in prepare_workloads(suite)}
    spec = specs["vid-224x224-f8-o4"].spec
    assert len(spec.frames) == 8 and spec.output_tokens == 4 and spec.params["frames"] == 8
    # each point is rendered at its own size (the PPM header says so)
    assert specs["img-336x336-o6"].files[0][1].startswith(b"P6\n336 336\n")


def test_listed_points_concurrency_and_prompt_words(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, HEAD.replace(
        "  - {name: vid, kind: video, source: media/grace_hopper.jpg, size: [224, 224], frames: 4}\n", "") + """sweep:
  points:
    - {size: [224, 224], prompt_words: 0}
    - {size: [448, 448], prompt_words: 50}
concurrency: [1, 4]
"""))
    got = [(w.name, w.concurrency, len(w.prompt.split())) for w in suite.config.workloads]
    assert [g[:2] for g in got] == [("img-224x224-p0-c1", 1), ("img-224x224-p0-c4", 4),
                                   ("img-448x448-p50-c1", 1), ("img-448x448-p50-c4", 4)]
    assert got[0][2] == 1 and got[2][2] == 1 + 50 + 1  # "Context:" + 50 words + "Describe."
    assert context_prompt("Q?", 3).endswith("\nQ?")


@pytest.mark.parametrize("sweep, message", [
    ("sweep: {frames: [2, 4]}\n", "sweep.frames needs a video workload"),
    ("sweep: {}\n", "an empty sweep"),
    ("sweep: {size: [[224, 224]], points: [{size: [224, 224]}]}\n", "either points"),
    ("sweep: {size: [[10, 10]]}\n", "between 28 and 4096"),
    ("sweep: {output_tokens: [1]}\n", "between 2 and 8192"),
    ("concurrency: [0]\n", "between 1 and 1024"),
    ("slo: {}\n", "at least one of ttft_ms"),
    ("sweep: {colour: [1]}\n", "colour"),
])
def test_bad_sweeps_name_the_problem(tmp_path: Path, sweep: str, message: str) -> None:
    body = HEAD.replace("  - {name: vid, kind: video, source: media/grace_hopper.jpg, size: [224, 224], frames: 4}\n", "")
    with pytest.raises(ConfigError) as info:
        load_suite(_suite(tmp_path, body + sweep))
    assert message in str(info.value) and "s.yaml:" in str(info.value)


@pytest.mark.parametrize("name", ["sweep-resolution", "sweep-frames", "server-concurrency"])
def test_shipped_suites_load(name: str) -> None:
    suite = load_suite(REPO / "suites" / ("%s.yaml" % name))
    assert len(suite.config.workloads) == 4
    params = [w.params for w in suite.config.workloads]
    key = {"sweep-resolution": "size", "sweep-frames": "frames", "server-concurrency": "concurrency"}[name]
    assert len({str(p[key]) for p in params}) == 4
    if name == "server-concurrency":
        assert all(p["slo"] == {"ttft_ms": 2000.0, "tpot_ms": 200.0} for p in params)
