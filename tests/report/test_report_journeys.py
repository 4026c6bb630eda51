"""The report pages as a user gets them: `bench run` then `bench report` / `report --history`
through the installed `bench` script, on the reference backend (issue 11: a 0% variant crashed the
report, index.html did not link accuracy.html, accuracy.html lost its by-question-type table,
`--metric nosuch` wrote an empty page and exited 0, nothing said a run was disturbed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ..journey.conftest import Bench

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, devices: list) -> Path:
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": devices}))
    return tmp_path


def _reference(name: str, **options: object) -> dict:
    return {"name": name, "type": "local", "transport": "local", "workdir": "results/work", "idle_s": 0,
            "backend": "reference", "backend_options": {"profile": "rtx", "time_scale": 0.05, **options},
            "models": [{"variant": "fp32", "path": "."}, {"variant": "int4", "path": ".", "quantization": "int4"}]}


@pytest.mark.journey
def test_a_zero_percent_variant_reports_and_the_pages_link_with_every_table(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval", reason="the vqa-quant suite needs the [eval] extra")
    # every answer is wrong: 0% accuracy, a Wilson lower bound of ~1e-19 (the crash of issue 11)
    project = _project(tmp_path, [_reference("emu", default_answer="zzz-never-right")])
    suite = project / "suites" / "vqa-quant.yaml"
    suite.write_text(suite.read_text().replace("  task: easy_vqa\n", "  task: easy_vqa\n  limit: 30\n")
                     .replace("repetitions: 5", "repetitions: 2"))
    bench = Bench()
    run = bench(project, "run", "--suite", "vqa-quant", "--devices", "emu", "--json", timeout=600)
    assert run.returncode in (0, 1), run.stderr[-3000:]  # below min_accuracy may fail the run; it must report
    payload = json.loads(run.stdout)
    assert {a["variant"]: a["accuracy"] for a in payload["accuracy"]} == {"fp32": 0.0, "int4": 0.0}
    report = bench(project, "report", "latest")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Traceback" not in report.stderr
    out = project / "reports" / payload["run_id"]
    index = (out / "index.html").read_text()
    assert re.search(r'<a href="accuracy.html">', index)  # the run page links its accuracy page
    assert "(accuracy.md)" in (out / "summary.md").read_text()
    page = (out / "accuracy.html").read_text()
    assert "<style>" in page and 'href=\'index.html\'' in page  # styled, and links back
    # the markdown's "By question type" table is a table in the HTML too, with the same cells
    markdown = (out / "accuracy.md").read_text()
    md_types = markdown[markdown.index("By question type"):].splitlines()[2]
    types = [c.strip() for c in md_types.strip("|").split("|")][2:]
    assert types and all(t for t in types)
    html_after = page[page.index("By question type"):]
    table = re.search(r"<table>.*?</table>", html_after, flags=re.S).group(0)
    assert re.findall(r"<th>([^<]*)</th>", table) == ["device", "variant"] + types
    assert table.count("<tr>") == 1 + 2 and "0.0% (" in table
    assert (out / "accuracy_vs_latency.png").stat().st_size > 1000


@pytest.mark.journey
def test_history_refuses_an_unknown_metric_and_draws_plain_axes(tmp_path: Path) -> None:
    project = _project(tmp_path, [_reference("emu")])
    bench = Bench()
    bad = bench(project, "report", "--history", "--metric", "nosuch")
    assert bad.returncode == 2, bad.stderr
    assert "unknown metric 'nosuch'" in bad.stderr and "ttft_ms" in bad.stderr and "Traceback" not in bad.stderr
    assert not (project / "reports" / "history" / "history.html").exists()
    assert bench(project, "run", "--suite", "image", "--devices", "emu", "-r", "2").returncode == 0
    good = bench(project, "report", "--history", "--metric", "ttft_ms")
    assert good.returncode == 0, good.stderr
    assert (project / "reports" / "history" / "history.html").stat().st_size > 2000


def test_history_axes_have_no_offset_and_ticks_differ() -> None:
    """The figure itself: a series with 0.0002 ms of jitter on 1116 ms keeps plain tick labels (no
    "1e-5+1.116e3" offset) and a y span of at least 4% of the level; runs of one day get distinct
    tick labels."""
    import numpy as np
    from matplotlib.figure import Figure

    from harness.analysis.history import MetricSeries, SeriesGroup
    from harness.report import history as page

    drawn = {}
    original = page.figure_png

    def keep(fig: Figure, dpi: int = 80) -> bytes:
        drawn["fig"] = fig
        return original(fig, dpi)

    values = [1116.0001, 1116.0003, 1116.0002, 1116.0001]
    series = MetricSeries(metric="ttft_ms", orders=np.arange(4), run_ids=["r%d" % i for i in range(4)],
                          created_at=["2026-12-02T15:%02d:%02dZ" % (m, s) for m, s in ((1, 5), (1, 40), (2, 0), (3, 0))],
                          medians=np.asarray(values), n=np.full(4, 5), change_points=[])
    group = SeriesGroup(device="d", suite="s", workload="w", variant="v", metrics=[series])
    page.figure_png = keep
    try:
        page._draw(group, {})
    finally:
        page.figure_png = original
    fig = drawn["fig"]
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    low, high = ax.get_ylim()
    assert high - low >= 0.04 * 1116 * 0.99
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) == 4 and len(set(labels)) == 4  # 15:01 twice: seconds are added


BUSY_LOOP = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"


@pytest.mark.journey
def test_a_run_under_load_is_flagged_disturbed_in_the_terminal_json_and_report(tmp_path: Path) -> None:
    project = _project(tmp_path, [_reference("emu", busy=True)])
    bench = Bench()
    # twice as many hogs as CPUs, settled for a second: with one per CPU the check was missed in CI
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(2 * (os.cpu_count() or 2))]
    try:
        time.sleep(1.0)
        run = bench(project, "run", "--suite", "image", "--devices", "emu", "-r", "3", "--json")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads(run.stdout)
    measured = [m for m in payload["measurements"] if not m["warmup"]]
    assert len(measured) == 6 and all(m["provenance"]["interference"]["disturbed"] for m in measured)
    ttft = [s for s in payload["summary"] if s["metric"] == "ttft_ms"]
    assert {(s["variant"], s["n_disturbed"], s["n_interference_checked"]) for s in ttft} == {("fp32", 3, 3),
                                                                                              ("int4", 3, 3)}
    assert "3/3 disturbed" in run.stderr and "not a basis for a decision" in run.stderr
    assert bench(project, "report", "latest").returncode == 0
    index = (project / "reports" / payload["run_id"] / "index.html").read_text()
    assert index.count('<span class="badge badge-disturbed">disturbed</span>') == 2
    assert "3 of 3 measured repetitions disturbed" in index
    # the random-weight/emulated badge once per variant, not on every metric row
    assert index.count('<span class="badge badge-emulated">emulated</span>') == 2


@pytest.mark.journey
def test_until_stable_from_the_command_line_and_a_suite(tmp_path: Path) -> None:
    project = _project(tmp_path, [_reference("emu")])
    bench = Bench()
    # a cap the CI cannot be reached before (no CI of the median under 6 repetitions)
    run = bench(project, "run", "--suite", "image", "--devices", "emu", "-r", "2", "--until-stable", "1e-9",
                "--max-repetitions", "4", "--json")
    assert run.returncode == 0, run.stderr[-3000:]
    measured = [m for m in json.loads(run.stdout)["measurements"] if not m["warmup"]]
    assert len(measured) == 2 * 4
    bad = bench(project, "run", "--suite", "image", "--devices", "emu", "-r", "5", "--until-stable", "0.05",
                "--max-repetitions", "3")
    assert bad.returncode == 2 and "max_repetitions" in bad.stderr
    suite = project / "suites" / "image.yaml"
    suite.write_text(suite.read_text().replace("  repetitions: 5\n", "  repetitions: 2\n  until_stable: "
                                               "{ci_width: 10.0, max_repetitions: 9}\n"))
    loose = bench(project, "run", "--suite", "image", "--devices", "emu", "--json")
    assert loose.returncode == 0, loose.stderr[-3000:]
    # a 1000% width is met as soon as a CI exists: 6 measured repetitions per variant
    assert len([m for m in json.loads(loose.stdout)["measurements"] if not m["warmup"]]) == 2 * 6
