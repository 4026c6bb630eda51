"""`regress` over a synthetic nightly history: a planted 10% TTFT step on one board is flagged
(with the provenance change that came with it), pure noise, a planted 2% drift and one noisy
night are not; every output format says the same."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest
from rich.console import Console

from harness.analysis.regress import (Baseline, RegressError, metric_direction, regress,
                                      suite_thresholds)
from harness.analysis.regress_output import emit, md_cell, to_json, to_junit_xml, to_markdown
from harness.store import Store

from .history_factory import SUITE, Plant, build_history

REGRESSED = ("orin-nano", "video-8f")
PLANTS = [
    # the real regression: 10% slower first token from night 27 on, with an engine update
    Plant("orin-nano", "ttft_ms", 0.10, 27, workload="video-8f", provenance={"engine_versions": {"synthetic": "1.1"}}),
    # below the practical threshold, however persistent
    Plant("agx-orin", "ttft_ms", 0.02, 20),
    # one noisy night: the newest one, and one in the middle of the history
    Plant("rtx-pc", "ttft_ms", 0.30, 29, workload="image"),
    Plant("upsquared-n", "ttft_ms", 0.40, 15, 16),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(tmp_path_factory.mktemp("regress") / "bench.sqlite")
    build_history(store, nights=30, plants=PLANTS, seed=11, tags_by_night={10: ["release"]}, batch_nights=10)
    yield store
    store.close()


def flagged_boards(report) -> set:  # type: ignore[no-untyped-def]
    return {(c.device, c.workload) for c in report.regressions}


@pytest.mark.parametrize("baseline", ["last:7", "tag:release", "20260111-020000-n0010"])
def test_only_the_planted_regression_fails_the_job(history: Store, baseline: str) -> None:
    report = regress(history, baseline)
    assert flagged_boards(report) == {REGRESSED}
    assert report.exit_code == 1
    ttft = next(c for c in report.regressions if c.metric == "ttft_ms")
    assert 0.07 < ttft.rel_change < 0.13 and ttft.worse and ttft.p_value < 0.01
    assert ttft.step.confirmed and ttft.step.segment_start_run == "20260128-020000-n0027"
    assert [p.text() for p in ttft.provenance_changes] == ["engine_versions.synthetic: 1.0 -> 1.1"]
    # the 2% drift is within the threshold; the single noisy night is unconfirmed, not failing
    agx = [c for c in report.changes if c.device == "agx-orin" and c.metric == "ttft_ms"]
    assert agx and all(c.status == "unchanged" for c in agx)
    rtx = next(c for c in report.changes if c.device == "rtx-pc" and c.workload == "image" and c.metric == "ttft_ms")
    assert rtx.status == "unconfirmed" and "not yet persistent" in rtx.step.note
    # improvements would be listed; warm-up values (3x) never reached a median
    assert not report.improvements
    assert all(c.status != "no_baseline" for c in report.changes)


def test_pure_noise_and_the_middle_outlier_are_quiet(tmp_path: Path) -> None:
    store = Store(tmp_path / "noise.sqlite")
    build_history(store, nights=20, seed=5, plants=[Plant("ax650n", "ttft_ms", 0.5, 12, 13)])
    report = regress(store, "last:7")
    assert report.exit_code == 0 and not report.regressions and not report.unconfirmed
    assert regress(store, "last:7", run=store.list_runs()[7].run_id).exit_code == 0  # night 12 vs 5..11: one night


def test_the_next_night_confirms_or_clears(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    build_history(store, nights=22, seed=2, plants=[Plant("ax650n", "ttft_ms", 0.12, 21)])
    first = regress(store, "last:7")
    assert first.exit_code == 0 and ("ax650n", "ttft_ms") in {(c.device, c.metric) for c in first.unconfirmed}
    assert regress(store, "last:7", min_persist=1).exit_code == 1  # a PR gate may choose to trust one run

    confirmed = Store(tmp_path / "c.sqlite")
    build_history(confirmed, nights=23, seed=2, plants=[Plant("ax650n", "ttft_ms", 0.12, 21)])
    assert flagged_boards(regress(confirmed, "last:7")) == {("ax650n", "image"), ("ax650n", "video-8f")}

    cleared = Store(tmp_path / "d.sqlite")
    build_history(cleared, nights=23, seed=2, plants=[Plant("ax650n", "ttft_ms", 0.12, 21, 22)])
    assert regress(cleared, "last:7").exit_code == 0


def test_thresholds_per_metric_and_from_the_suite(history: Store, tmp_path: Path) -> None:
    assert regress(history, "last:7", thresholds={"ttft_ms": 0.2, "e2e_ms": 0.2, "vision_encode_ms": 0.2,
                                                 "prefill_ms": 0.2, "preprocess_ms": 0.2, "energy_j": 0.2,
                                                 "j_per_token": 0.2}).exit_code == 0
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "media").mkdir()
    (suites / "media" / "x.jpg").write_bytes(b"")
    (suites / "nightly.yaml").write_text(
        "name: %s\nworkloads:\n  - {name: image, kind: image, source: media/x.jpg, size: [448, 448]}\n"
        "thresholds: {ttft_ms: 0.5}\n" % SUITE)
    table = suite_thresholds(suites)
    assert table == {SUITE: {"ttft_ms": 0.5}}
    report = regress(history, "last:7", metrics=["ttft_ms"], suite_thresholds=table)
    assert report.exit_code == 0 and {c.threshold for c in report.changes} == {0.5}


def test_outputs_agree(history: Store, tmp_path: Path) -> None:
    report = regress(history, "last:7")
    data = json.loads(to_json(report))
    assert data["summary"]["regressions"] == len(report.regressions) and data["summary"]["exit_code"] == 1
    markdown = to_markdown(report)
    assert markdown.startswith("## :red_circle:") and "### Regressions" in markdown and "orin-nano" in markdown
    assert "engine\\_versions.synthetic: 1.0 -&gt; 1.1" in markdown
    junit = ET.fromstring(to_junit_xml(report).split("?>", 1)[1])
    failures = junit.findall("./testcase/failure")
    assert int(junit.get("failures")) == len(failures) == len(report.regressions)
    assert {case.get("classname").split(".")[0] for case in junit.findall("./testcase") if case.find("failure") is not None} == {"orin-nano"}
    out, console = io.StringIO(), Console(file=io.StringIO(), width=250)
    code = emit(report, console, json_stdout=out, markdown=tmp_path / "ci.md", junit=tmp_path / "junit.xml")
    assert code == 1 and json.loads(out.getvalue())["summary"]["exit_code"] == 1
    assert (tmp_path / "ci.md").read_text() == markdown
    table = console.file.getvalue()  # type: ignore[attr-defined]
    assert "regression" in table and "engine_versions.synthetic: 1.0 -> 1.1" in table


def test_hostile_names_stay_data_in_every_format(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite")
    evil = "orin|nano <script>alert(1)</script> [bold]x[/bold]"
    build_history(store, nights=12, seed=1, boards=[(evil, 380.0, 2950.0, 14.1, 15.0)], workloads=["image"],
                  plants=[Plant(evil, "ttft_ms", 0.2, 9)])
    report = regress(store, "last:5")
    assert report.exit_code == 1
    markdown = to_markdown(report)
    assert "<script>" not in markdown and "orin\\|nano &lt;script&gt;" in markdown
    junit = ET.fromstring(to_junit_xml(report).split("?>", 1)[1])
    assert any(evil in (case.get("classname") or "") for case in junit.findall("./testcase"))
    console = Console(file=io.StringIO(), width=300)
    emit(report, console)
    assert "[bold]x[/bold]" in console.file.getvalue()  # type: ignore[attr-defined]
    assert md_cell("a|b\nc") == "a\\|b c"


def test_baselines_and_errors(history: Store) -> None:
    assert Baseline.parse("last:3") == Baseline("last", "last:3", 3)
    assert Baseline.parse("tag:rel").value == "rel"
    for bad in ("last:0", "last:x", "tag:", "", "latest"):
        with pytest.raises(RegressError):
            Baseline.parse(bad)
    with pytest.raises(RegressError, match="no run 'nope'"):
        regress(history, "nope")
    report = regress(history, "tag:no-such-tag")
    assert report.exit_code == 0 and {c.status for c in report.changes} == {"no_baseline"}
    assert metric_direction("ttft_ms") == 1 and metric_direction("decode_tps") == -1
    assert metric_direction("accuracy") == -1 and metric_direction("energy_j") == 1
    assert metric_direction("n_output_tokens") is None


def test_accuracy_hook_uses_mcnemar(history: Store) -> None:
    scores = {"vqa/%d" % i: 1.0 for i in range(200)}
    worse = dict(scores, **{"vqa/%d" % i: 0.0 for i in range(40)})  # 40 right answers lost

    def answers(run_id: str, device: str, variant: str):  # type: ignore[no-untyped-def]
        if device != "ax650n":
            return {}
        return {"vqa": worse if run_id.endswith("n0029") else scores}

    report = regress(history, "last:7", metrics=["decode_tps", "accuracy"], accuracy_samples=answers)
    [acc] = [c for c in report.changes if c.metric == "accuracy"]  # one per variant, not per workload
    assert acc.status == "regression" and acc.test.startswith("McNemar") and acc.workload == "vqa"
    assert acc.baseline_median == 1.0 and acc.latest_median == pytest.approx(0.8)
    assert acc.p_value is not None and acc.p_value < 1e-6 and len(acc.baseline_runs) == 1
    # asked only for decode_tps: no accuracy comparison
    report = regress(history, "last:7", metrics=["decode_tps"], accuracy_samples=answers)
    assert not [c for c in report.changes if c.metric == "accuracy"]
