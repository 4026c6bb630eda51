"""The lm-eval model class that evaluates a board: requests go to the board's runner.

lm-eval runs on the controller (tasks, prompts, filters, metrics); ``BoardLM.generate_until``
turns its requests into runner requests and asks an *answer source* for the answers:

- ``ShipToBoard``: ships the batch now, through the same controller path as ``bench run`` (deploy
  the runner by hash, upload, start detached, follow, pull, sha256-check), for one device and
  one model variant - what ``lm_eval --model edge-board --model_args device=NAME,variant=V`` uses;
- ``PulledAnswers``: answers a run already brought back (``bench run --suite vqa-quant`` ships
  every variant's requests in the run that also measures latency, then scores each variant).

Either way every request's answer is checked against the sha256 of the pixels and prompt it
was asked for, and each sample's outcome is kept in ``records`` for the per-sample store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ..runner.protocol import Answer
from .requests import EvalRequest, request_from_instance, truncate


@dataclass
class SampleRecord:
    """One request's journey: what was asked, what came back, and why it may be missing."""

    request_id: str
    task: str
    doc_id: int
    prompt: str
    answer: str  # after lm-eval's stop strings; "" when the board gave none
    raw_answer: str
    status: str  # ok, error (the runner's), missing (no answer pulled), mismatch (other inputs)
    error: Optional[str]
    input_sha256: str
    wall_ms: Optional[float]
    emulated: bool


class AnswerSource:
    """Where answers come from: ``answers(requests)`` -> request id -> Answer."""

    def answers(self, requests: Sequence[EvalRequest]) -> Dict[str, Answer]:
        raise NotImplementedError


class PulledAnswers(AnswerSource):
    """Answers already pulled from a board (one device, one variant)."""

    def __init__(self, answers: Sequence[Answer]) -> None:
        self._answers = {a.request_id: a for a in answers}

    def answers(self, requests: Sequence[EvalRequest]) -> Dict[str, Answer]:
        return {r.id: self._answers[r.id] for r in requests if r.id in self._answers}


@register_model("edge-board")
class BoardLM(LM):
    """An lm-eval LM whose generations come from a board's runner (generate_until only)."""

    MULTIMODAL = True  # lm-eval hands image tasks only to models that say so

    def __init__(self, source: AnswerSource) -> None:
        super().__init__()
        self.source = source
        self.records: List[SampleRecord] = []

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: Optional[Dict[str, Any]] = None) -> "BoardLM":
        """``device=NAME,variant=V[,devices_file=F,results_dir=D]`` (lm_eval --model_args)."""
        from lm_eval.utils import simple_parse_args_string

        from .board import ShipToBoard

        args = simple_parse_args_string(arg_string)
        return cls(ShipToBoard.from_names(**args))

    def generate_until(self, requests: List[Any], disable_tqdm: bool = False) -> List[str]:
        batch = [request_from_instance(r) for r in requests]
        answers = self.source.answers(batch)
        out = []
        for request in batch:
            record = self._record(request, answers.get(request.id))
            self.records.append(record)
            out.append(record.answer)
        return out

    def _record(self, request: EvalRequest, answer: Optional[Answer]) -> SampleRecord:
        status, error, raw = "missing", "no answer came back from the board", ""
        sha, wall, emulated = request.input_sha256, None, False
        if answer is not None:
            raw, wall, emulated = answer.answer, answer.wall_ms, answer.emulated
            if answer.status != "ok":
                status, error = "error", "%s: %s" % (answer.error_kind, answer.error)
            elif answer.input_sha256 != request.input_sha256:
                # answered, but not this question with these pixels: never score it
                status, error = "mismatch", "answer is for inputs %s, request is %s" % (
                    answer.input_sha256[:12], request.input_sha256[:12])
                raw = ""
            else:
                status, error = "ok", None
        return SampleRecord(request_id=request.id, task=request.task, doc_id=request.doc_id,
                            prompt=request.prompt, answer=truncate(raw, request.until).strip() if status == "ok" else "",
                            raw_answer=raw, status=status, error=error, input_sha256=sha, wall_ms=wall,
                            emulated=emulated)

    def loglikelihood(self, requests: List[Any], disable_tqdm: bool = False) -> List[Any]:
        raise NotImplementedError(
            "edge-board evaluates generate_until tasks only: board engines (ax-llm, llama.cpp, "
            "OpenVINO GenAI) return text, not log-probabilities")

    def loglikelihood_rolling(self, requests: List[Any], disable_tqdm: bool = False) -> List[Any]:
        raise NotImplementedError("edge-board evaluates generate_until tasks only")
