"""Accuracy requests through the runner for the board backends: openvino_genai, axllm, llamacpp.

A full AccuracyJob (requests file -> SpecRunner -> backend.answer() -> journalled Answer records),
as on a board, over the first easy-VQA requests, for every backend whose engine (or stand-in) is
available here. The stand-ins (tests/backends/fixtures) answer from a policy keyed by prompt, so
their answers are asserted exactly; the tiny OpenVINO IR has random weights, so only the records'
completeness is asserted for it; the canary exported to OpenVINO IR answers for real.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("lm_eval", reason="accuracy tests need the [eval] extra: bash scripts/setup-venv.sh local,dev,eval")

from harness.eval.board import read_answers
from harness.runner.execute import SpecRunner
from harness.runner.journal import RESULTS, Journal
from harness.runner.protocol import BackendSpec, ModelSpec

from ..backends.fixtures.axllm_env import deployment, tokenizer_service
from ..backends.fixtures.axllm_env import options as axllm_options
from .helpers import REPO, accuracy_spec, prompt_of, subset_rows

FIXTURES = REPO / "tests" / "backends" / "fixtures"
CANARY_IR = REPO / "tests" / "fixtures" / "canary_openvino"
HAS_OPENVINO = all(importlib.util.find_spec(m) for m in ("openvino", "openvino_genai"))
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino-genai is not installed "
                                                             "(pip install -e '.[openvino]')")


def _answers(run_dir: Path, backend: BackendSpec, model: ModelSpec, limit: int) -> List[Any]:
    spec = accuracy_spec(run_dir, backend, [model], limit, run_id="acc", device="board")
    journal = Journal(str(run_dir))
    try:
        code = SpecRunner(spec, str(run_dir), journal).run()
    finally:
        journal.close()
    answers = read_answers(run_dir / RESULTS)
    assert code == 0, [(a.status, a.error) for a in answers]
    return answers


@pytest.fixture(scope="module")
def tokenizer_url() -> Iterator[str]:
    with tokenizer_service() as url:
        yield url


def _policy(rows: List[Dict[str, Any]]) -> Dict[str, str]:
    """Right on the first question, a hostile multi-line reply on the second (7 words: within
    the task's 8-token budget), else the default."""
    return {prompt_of(rows[0]): rows[0]["answers"][0],
            prompt_of(rows[1]): "Grün ✓ 🙂\n[I][ Run][ 796]: ttft: 1.00"}


def _expected(rows: List[Dict[str, Any]], policy: Dict[str, str], default: str) -> List[str]:
    return [policy.get(prompt_of(r), default).strip() for r in rows]


def test_axllm_answers_three_requests(tmp_path: Path, tokenizer_url: str) -> None:
    rows = subset_rows(3)
    policy = _policy(rows)
    # the binary reads one line: the stand-in sees each prompt with its whitespace collapsed
    dep = deployment(tmp_path, answers={" ".join(k.split()): v for k, v in policy.items()}, default_answer="maybe",
                     encode_ms=5.0, ttft_ms=5.0, token_gap_ms=2.0, init_ms=10)
    backend = BackendSpec("axllm", axllm_options(dep, tokenizer_url))
    answers = _answers(tmp_path / "run", backend, ModelSpec("w8a16", str(dep["models"])), 3)
    assert [a.status for a in answers] == ["ok"] * 3
    assert [a.answer for a in answers] == _expected(rows, policy, "maybe")
    assert [a.request_id for a in answers] == ["easy_vqa/0", "easy_vqa/1", "easy_vqa/2"]
    assert all(a.backend == "axllm" and a.wall_ms and a.wall_ms > 0 for a in answers)


def test_llamacpp_answers_three_requests(tmp_path: Path) -> None:
    rows = subset_rows(3)
    policy = _policy(rows)
    cfg = {"load_ms": 5, "preprocess_ms": 5, "encode_ms": 5, "decode_ms": 5, "prefill_ms": 5, "token_gap_ms": 2.0,
           "answers": policy, "default_answer": "maybe"}
    (tmp_path / "standin.json").write_text(json.dumps(cfg))
    cli = tmp_path / "llama-mtmd-cli"
    cli.write_text("#!/bin/sh\nexec '%s' '%s' \"$@\"\n" % (sys.executable, FIXTURES / "llamacpp_mtmd_cli_standin.py"))
    cli.chmod(0o755)
    backend = BackendSpec("llamacpp", {"cli": str(cli), "extra_args": ["--standin_config", str(tmp_path / "standin.json")]})
    answers = _answers(tmp_path / "run", backend, ModelSpec("f32", str(FIXTURES / "llamacpp_tiny_qwen2_5_vl")), 3)
    assert [a.status for a in answers] == ["ok"] * 3
    assert [a.answer for a in answers] == _expected(rows, policy, "maybe")


@needs_openvino
def test_openvino_genai_answers_three_requests(tmp_path: Path) -> None:
    """The tiny random-weight IR: real generate() calls, meaningless text."""
    answers = _answers(tmp_path / "run", BackendSpec("openvino_genai", {"device": "CPU"}),
                       ModelSpec("fp32", str(FIXTURES / "openvino_tiny_qwen2_5_vl")), 3)
    assert [a.status for a in answers] == ["ok"] * 3
    assert all(isinstance(a.answer, str) and a.answer == a.answer.strip() for a in answers)
    assert all(a.backend == "openvino_genai" and not a.emulated for a in answers)


@needs_openvino
@pytest.mark.slow
def test_canary_openvino_ir_answers_easy_vqa(tmp_path: Path) -> None:
    """The canary exported to IR (tests/fixtures/canary_openvino) answers for real: >= 80% exact
    match on the first 40 questions (33/40 here; 432/500 on the whole subset, see its README)."""
    from harness.eval.vqa import exact_match

    limit = 40
    answers = _answers(tmp_path / "run", BackendSpec("openvino_genai", {"device": "CPU"}),
                       ModelSpec("fp32", str(CANARY_IR)), limit)
    rows = subset_rows(limit)
    assert [a.status for a in answers] == ["ok"] * limit
    accuracy = sum(exact_match(a.answer, r["answers"]) for a, r in zip(answers, rows)) / limit
    assert accuracy >= 0.8, [(a.answer, r["answers"][0]) for a, r in zip(answers, rows)]
