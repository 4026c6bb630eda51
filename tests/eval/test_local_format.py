"""Bring-your-own VQA data: the documented local format (jsonl or parquet), scored by lm-eval
with exact match and VQAv2's soft accuracy over ten annotators' answers."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="accuracy tests need the [eval] extra: bash scripts/setup-venv.sh local,dev,eval")

from harness.eval.lm import BoardLM, PulledAnswers
from harness.eval.requests import build_requests, load_task
from harness.runner.protocol import Answer

from .helpers import REPO

IMAGES = REPO / "suites" / "tasks" / "easy_vqa" / "images"
ROWS = [  # ten annotators each, VQAv2-style
    {"question_id": "q1", "image": "images/1.png", "question": "what colour?", "question_type": "colour",
     "answers": ["yellow"] * 10},
    {"question_id": "q2", "image": "images/2.png", "question": "what is it?", "question_type": "shape",
     "answers": ["triangle"] * 2 + ["blue triangle"] * 8},
    {"question_id": "q3", "image": "images/3.png", "question": "how many?", "question_type": "count",
     "answers": ["1"] * 10},
]
PREDICTIONS = ["Yellow.", "triangle", "one"]  # normalised: yellow / triangle / 1


def _task_dir(tmp_path: Path, fmt: str) -> Path:
    task = tmp_path / "my_vqa"
    shutil.copytree(REPO / "suites" / "tasks" / "vqa_local", task)
    yaml_text = (task / "vqa_local.yaml").read_text().replace("task: vqa_local", "task: my_vqa_%s" % fmt)
    if fmt == "jsonl":
        (task / "images").mkdir()
        for row in ROWS:
            shutil.copyfile(IMAGES / Path(row["image"]).name, task / row["image"])
        (task / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:  # parquet with the images inside, as HF datasets store an Image feature
        import pandas as pd

        frame = pd.DataFrame([dict(r, image={"bytes": (IMAGES / Path(r["image"]).name).read_bytes(), "path": None})
                              for r in ROWS])
        frame.to_parquet(task / "test.parquet")
        yaml_text = yaml_text.replace("data_files: test.jsonl", "data_files: test.parquet")
    (task / "vqa_local.yaml").write_text(yaml_text)
    return tmp_path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_local_subset_is_scored_with_both_metrics(tmp_path: Path, fmt: str) -> None:
    import lm_eval

    tasks_dir = _task_dir(tmp_path, fmt)
    name = "my_vqa_%s" % fmt
    requests = build_requests(name, tasks_dir)
    assert [r.prompt.splitlines()[0] for r in requests] == [r["question"] for r in ROWS]
    assert all(len(r.images) == 1 and r.max_new_tokens == 16 for r in requests)
    answers = [Answer(run_id="r", device="d", suite="s", task=name, backend="b", variant="v", request_id=req.id,
                      status="ok", answer=text + "\nmore text after the stop string", input_sha256=req.input_sha256)
               for req, text in zip(requests, PREDICTIONS)]
    lm = BoardLM(PulledAnswers(answers))
    _, manager = load_task(name, tasks_dir)
    results = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, bootstrap_iters=0)
    scores = results["results"][name]
    # exact: yellow yes, triangle (one of the references) yes, "one" -> "1" yes
    assert scores["exact_match,none"] == pytest.approx(1.0)
    # soft: q1 1.0; q2 "triangle" matches 2 of 10: (2 * 1/3 + 8 * 2/3) / 10 = 0.6; q3 1.0
    assert scores["vqa_acc,none"] == pytest.approx((1.0 + 0.6 + 1.0) / 3)
    assert [r.answer for r in lm.records] == PREDICTIONS  # cut at the task's "\n" stop string
