"""Accuracy requests through the runner: protocol, resume, failures, and lm-eval's BoardLM.

The reference engine answers from a configured policy, so every accuracy figure here is known
in advance and asserted exactly: what is tested is the path (lm-eval -> requests -> runner ->
journal -> pull -> lm-eval scoring), not a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="accuracy tests need the [eval] extra: bash scripts/setup-venv.sh local,dev,eval")

from harness.eval.board import ShipToBoard, read_answers
from harness.eval.lm import BoardLM
from harness.runner.execute import SpecRunner
from harness.runner.journal import INPUTS, RESULTS, Journal
from harness.runner.protocol import (Answer, BackendSpec, GenerationSpec, ModelSpec, ProtocolError, RunSpec,
                                     parse_record)

from .helpers import accuracy_spec, make_project, prompt_of, reference_device, subset_rows


def test_protocol_carries_accuracy_and_answers() -> None:
    spec = RunSpec(run_id="r", device="d", suite="s", backend=BackendSpec("reference"),
                   models=[ModelSpec("v", ".")], workloads=[], generation=GenerationSpec(output_tokens=2),
                   accuracy={"task": "easy_vqa", "requests": "accuracy/requests.jsonl"})
    assert RunSpec.from_json(spec.to_json()).accuracy["task"] == "easy_vqa"
    legacy = json.loads(spec.to_json())
    del legacy["accuracy"]  # a spec from a controller before accuracy existed still parses
    assert RunSpec.from_dict(legacy).accuracy == {}
    answer = Answer(run_id="r", device="d", suite="s", task="t", backend="b", variant="v",
                    request_id="t/1", status="ok", answer="yes", wall_ms=1.5)
    parsed = parse_record(answer.to_json())
    assert isinstance(parsed, Answer) and parsed.answer == "yes" and parsed.key == ("r", "d", "t", "v", "t/1")
    bad = dict(json.loads(answer.to_json()), extra=1)
    with pytest.raises(ProtocolError, match="unknown fields"):
        parse_record(json.dumps(bad))


def _spec(run_dir: Path, backend: BackendSpec, models, limit: int = 12) -> RunSpec:
    return accuracy_spec(run_dir, backend, models, limit)


def _run(spec: RunSpec, run_dir: Path) -> int:
    journal = Journal(str(run_dir))
    try:
        return SpecRunner(spec, str(run_dir), journal).run()
    finally:
        journal.close()


def test_runner_answers_resumes_and_reports_failures(tmp_path: Path) -> None:
    rows = subset_rows(12)
    policy = {prompt_of(rows[1]): rows[1]["answers"][0]}
    backend = BackendSpec("reference", {"time_scale": 0.01, "answers": policy, "default_answer": "no"})
    spec = _spec(tmp_path, backend, [ModelSpec("emulated", "emulated")])
    assert _run(spec, tmp_path) == 0
    answers = read_answers(tmp_path / RESULTS)
    assert len(answers) == 12 and all(a.status == "ok" and a.emulated for a in answers)
    # request ids follow the task's doc order; the policy answers by prompt
    assert [a.answer for a in answers] == [policy.get(prompt_of(r), "no") for r in rows]
    assert answers[1].answer == rows[1]["answers"][0]
    assert all(a.wall_ms is not None and a.wall_ms >= 0 for a in answers)

    # a second start on the same run directory answers nothing twice
    size = os.path.getsize(tmp_path / RESULTS)
    assert _run(spec, tmp_path) == 0
    assert os.path.getsize(tmp_path / RESULTS) == size

    # a variant whose model is missing: one error answer per request, never a gap
    other = tmp_path / "other"
    spec2 = _spec(other, BackendSpec("transformers", {}), [ModelSpec("fp32", str(tmp_path / "nowhere"))], limit=5)
    assert _run(spec2, other) == 1
    failed = read_answers(other / RESULTS)
    assert len(failed) == 5 and {a.error_kind for a in failed} == {"model_not_found"}

    # a request whose pixels do not hash to what the controller sent is refused
    third = tmp_path / "third"
    spec3 = _spec(third, backend, [ModelSpec("emulated", "emulated")], limit=3)
    requests = third / INPUTS / spec3.accuracy["requests"]
    lines = requests.read_text().splitlines()
    first = json.loads(lines[0])
    first["input_sha256"] = "0" * 64
    requests.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    assert _run(spec3, third) == 1
    kinds = [a.error_kind for a in read_answers(third / RESULTS)]
    assert kinds == ["input", None, None]


def test_board_lm_ships_through_the_controller_and_lm_eval_scores_it(tmp_path: Path, monkeypatch) -> None:
    """lm-eval's simple_evaluate with BoardLM: requests shipped to the runner (local transport)."""
    import lm_eval

    limit = 30
    rows = subset_rows(limit)
    # the policy: right on the first five questions, otherwise "yes"
    policy = {prompt_of(r): r["answers"][0] for r in rows[:5]}
    project = make_project(tmp_path, [reference_device(answers=policy, default_answer="yes")])
    monkeypatch.chdir(project)
    source = ShipToBoard.from_names("emu", devices_file=str(project / "devices.yaml"),
                                    results_dir=str(project / "results"))
    source.run_ids = []
    lm = BoardLM(source)
    from harness.eval.requests import load_task

    _, manager = load_task("easy_vqa")
    results = lm_eval.simple_evaluate(model=lm, tasks=["easy_vqa"], task_manager=manager, limit=limit,
                                      bootstrap_iters=0)
    expected = sum(1 for r in rows if policy.get(prompt_of(r), "yes") == r["answers"][0]) / limit
    assert results["results"]["easy_vqa"]["exact_match,none"] == pytest.approx(expected)
    assert len(source.run_ids) == 1  # one batch, one trip to the board
    assert len(lm.records) == limit and all(r.status == "ok" and r.emulated for r in lm.records)
    mirror = project / "results" / "pulled" / source.run_ids[0] / "emu.results.jsonl"
    assert len(read_answers(mirror)) == limit  # answers came back in the verified journal
