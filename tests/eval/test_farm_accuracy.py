"""The easy_vqa lm-eval task through the reference backend over SSH to an emulated board.

A real OpenSSH sshd on 127.0.0.x is the board; the runner is deployed, started, followed and
pulled exactly as for a real board. The reference engine's answer policy makes the accuracy
known in advance, so the assertion is exact: every answer came back over SSH to the right
question, and lm-eval scored them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("lm_eval", reason="accuracy tests need the [eval] extra: bash scripts/setup-venv.sh local,dev,eval")
import yaml

from harness.config.devices import load_devices
from harness.eval.board import mirror_path, read_answers
from harness.eval.config import load_suite_with_accuracy
from harness.eval.report import write_accuracy_report
from harness.eval.suite import run_suite
from harness.farm.sshd_farm import FarmInfo, farm_down, farm_up
from harness.plan import Paths

from ..farm.conftest import require_sshd
from .helpers import make_project, prompt_of, subset_rows

LIMIT = 40


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmInfo]:
    require_sshd()
    state = tmp_path_factory.mktemp("eval-farm")
    info = farm_up(1, state, base_ip="127.0.0.70")  # away from tests/farm's 127.0.0.20-24
    try:
        yield info
    finally:
        farm_down(state)


def test_vqa_task_over_ssh_to_an_emulated_board(board: FarmInfo, tmp_path: Path) -> None:
    rows = subset_rows(LIMIT)
    policy = {prompt_of(r): r["answers"][0] for r in rows if r["question_type"] == "shape"}
    data = yaml.safe_load(Path(board.devices_yaml).read_text())
    [device] = data["devices"]
    device["backend_options"].update({"time_scale": 0.01, "busy": False, "answers": policy, "default_answer": "no"})
    device.update({"idle_s": 0, "timeouts": {"connect_s": 5.0, "command_s": 30.0, "run_s": 120.0}})
    project = make_project(tmp_path, [device])
    (project / "devices.yaml").write_text(yaml.safe_dump(dict(data, devices=[device]), sort_keys=False))
    paths = Paths(project / "devices.yaml", project / "suites", project / "results", project / "reports")
    inventory = load_devices(paths.devices_file)
    suite, accuracy = load_suite_with_accuracy(project / "suites" / "vqa-quant.yaml")
    assert accuracy is not None
    accuracy = accuracy.model_copy(update={"limit": LIMIT, "reference_variant": "emulated", "min_accuracy": None})

    out = run_suite(suite, accuracy, inventory.select(device["name"]), inventory, paths)

    [outcome] = out["outcomes"]
    assert outcome.state == "finished" and outcome.errors == 0, outcome.error
    assert outcome.integrity.endswith("verified")  # answers ride in the sha256-checked journal
    answers = read_answers(mirror_path(paths.results_dir, out["run_id"], device["name"]))
    assert len(answers) == LIMIT and all(a.emulated and a.backend == "reference" for a in answers)
    latency = [m for m in out["measurements"] if not m["warmup"]]
    assert len(latency) == 5 and all(m["metrics"]["ttft_ms"] > 0 for m in latency)

    [result] = out["accuracy"]
    # the policy answers by prompt, and one prompt ("what is the blue shape?") can have several
    # images and answers: the expected score follows the policy question by question
    expected = sum(1 for r in rows if policy.get(prompt_of(r), "no") == r["answers"][0]) / LIMIT
    assert result["n"] == LIMIT and result["accuracy"] == pytest.approx(expected)
    assert result["emulated"] is True and result["n_failed"] == 0
    assert result["ci_low"] < result["accuracy"] < result["ci_high"]

    report = write_accuracy_report(out["run_id"], paths.results_dir, out["measurements"], project / "reports" / "r")
    assert report is not None and "[emulated answers]" in report.markdown
    [row] = report.rows
    assert row["_raw"]["latency"]["ttft_ms"] == pytest.approx(
        sorted(m["metrics"]["ttft_ms"] for m in latency)[2])


def test_board_lm_ships_a_batch_over_ssh(board: FarmInfo, tmp_path: Path) -> None:
    """lm-eval drives the board directly: BoardLM -> ShipToBoard -> SSH -> runner -> answers."""
    import lm_eval

    from harness.eval.board import ShipToBoard
    from harness.eval.lm import BoardLM
    from harness.eval.requests import load_task

    rows = subset_rows(10)
    data = yaml.safe_load(Path(board.devices_yaml).read_text())
    [device] = data["devices"]
    device["backend_options"].update({"time_scale": 0.01, "busy": False, "default_answer": "yes"})
    device.update({"idle_s": 0, "timeouts": {"connect_s": 5.0, "command_s": 30.0, "run_s": 120.0}})
    project = make_project(tmp_path, [device])
    (project / "devices.yaml").write_text(yaml.safe_dump(dict(data, devices=[device]), sort_keys=False))
    source = ShipToBoard.from_names(device["name"], devices_file=str(project / "devices.yaml"),
                                    results_dir=str(project / "results"))
    source.run_ids = []
    lm = BoardLM(source)
    _, manager = load_task("easy_vqa")
    results = lm_eval.simple_evaluate(model=lm, tasks=["easy_vqa"], task_manager=manager, limit=10,
                                      bootstrap_iters=0)
    expected = sum(1 for r in rows if r["answers"][0] == "yes") / 10
    assert results["results"]["easy_vqa"]["exact_match,none"] == pytest.approx(expected)
    assert len(source.run_ids) == 1 and all(r.status == "ok" for r in lm.records)
