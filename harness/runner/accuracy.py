"""Accuracy requests on the board: answer each with the device's backend, one Answer record each.

The controller (``harness.eval``) turns an lm-eval task into requests and ships them as
``inputs/<spec.accuracy["requests"]>``, a JSON-lines file, one request a line::

    {"id": "easy_vqa/17", "prompt": "...", "images": ["accuracy/img/ab12.ppm"],
     "max_new_tokens": 8, "input_sha256": "..."}

Images are binary PPM files like the latency workloads' frames (readable with the standard
library). The runner only generates; scoring stays on the controller, so every backend -
transformers, OpenVINO GenAI, ax-llm, llama.cpp, reference - is evaluated by the same code.
Answers go into ``results.jsonl`` beside the measurements (fsynced per record), so they are pulled,
mirrored and checked by the same controller path; a restarted runner skips answered requests.

Standard library only, Python >= 3.8.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Dict, List, Optional, Set, Tuple

from .backends.base import Backend, BackendError, UnsupportedWorkload
from .clock import now_ns
from .journal import INPUTS, RESULTS
from .protocol import Answer, ModelSpec, ProtocolError, parse_record
from .workloads import Frame, WorkloadInputs, decode_ppm, input_digest

PROGRESS_EVERY = 25  # answers between progress events (events are for people watching)


def read_requests(path: str) -> List[Dict[str, Any]]:
    """The request file, validated: a request the runner cannot read is a bad spec (exit 2)."""
    requests: List[Dict[str, Any]] = []
    seen: Set[str] = set()
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ProtocolError("accuracy requests %s cannot be read: %s" % (path, exc)) from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except ValueError as exc:
                raise ProtocolError("%s:%d: not JSON: %s" % (path, number, exc)) from exc
            if not isinstance(request, dict):
                raise ProtocolError("%s:%d: a request is a JSON object" % (path, number))
            for key in ("id", "prompt", "images"):
                if key not in request:
                    raise ProtocolError("%s:%d: request without %r" % (path, number, key))
            if request["id"] in seen:
                raise ProtocolError("%s:%d: duplicate request id %r" % (path, number, request["id"]))
            seen.add(request["id"])
            requests.append(request)
    return requests


def answered_keys(run_dir: str) -> Set[Tuple[str, str, str]]:
    """(task, variant, request id) of every answer already journalled, ok or not: a resumed run
    does not redo them (as with measurements, an error is a result)."""
    keys: Set[Tuple[str, str, str]] = set()
    try:
        with open(os.path.join(run_dir, RESULTS), encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # a torn last line from a crash: redone
                if '"answer"' not in line:
                    continue  # cheap skip of measurements before parsing
                try:
                    record = parse_record(line)
                except ProtocolError:
                    continue
                if isinstance(record, Answer):
                    keys.add((record.task, record.variant, record.request_id))
    except FileNotFoundError:
        pass
    return keys


class AccuracyJob:
    """The accuracy part of one RunSpec, for one loaded model variant at a time."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner  # execute.SpecRunner: its spec, journal, events and counters
        spec = runner.spec
        self.task = str(spec.accuracy.get("task", "accuracy"))
        self.max_new_tokens = int(spec.accuracy.get("max_new_tokens", 16))
        self.inputs_dir = os.path.join(runner.run_dir, INPUTS)
        self.requests = read_requests(os.path.join(self.inputs_dir, str(spec.accuracy["requests"])))
        self.done = answered_keys(runner.run_dir)
        self._frames: Dict[str, Frame] = {}

    def _write(self, answer: Answer) -> None:
        key = (answer.task, answer.variant, answer.request_id)
        if key in self.done:
            return
        # Journal.measurement writes any record's JSON line, fsynced: answers ride in the same
        # journal so the controller's pull, mirror and sha256 check cover them too
        self.runner.journal.measurement(answer)
        self.done.add(key)
        self.runner.n_written += 1
        if answer.status != "ok":
            self.runner.n_errors += 1

    def _answer(self, model: ModelSpec, request: Dict[str, Any], status: str, **fields: Any) -> Answer:
        spec = self.runner.spec
        return Answer(run_id=spec.run_id, device=spec.device, suite=spec.suite, task=self.task,
                      backend=spec.backend.name, variant=model.variant, request_id=str(request["id"]),
                      status=status, **fields)

    def fail_all(self, model: ModelSpec, message: str, kind: str) -> None:
        """The variant could not be loaded: every request gets an error answer (visible, no gap)."""
        for request in self.requests:
            self._write(self._answer(model, request, "error", error=message, error_kind=kind))
        self.runner.event("error", "accuracy %s: %s" % (self.task, message), variant=model.variant)

    def _inputs(self, request: Dict[str, Any]) -> WorkloadInputs:
        frames = []
        for name in request["images"]:
            frame = self._frames.get(name)
            if frame is None:
                with open(os.path.join(self.inputs_dir, name), "rb") as handle:
                    frame = decode_ppm(handle.read(), where="request %r image %s" % (request["id"], name))
                self._frames[name] = frame
            frames.append(frame)
        if len(frames) != 1:
            # the backends' answer() takes one image or one video; several images per question
            # would need a multi-image path no backend has yet
            raise UnsupportedWorkload("request %r has %d images; one is supported" % (request["id"], len(frames)))
        prompt = str(request["prompt"])
        digest = input_digest(frames, prompt)
        expected = request.get("input_sha256")
        if expected and expected != digest:
            raise ProtocolError("request %r: inputs hash to %s here, the controller sent %s"
                                % (request["id"], digest[:12], str(expected)[:12]))
        return WorkloadInputs(name=str(request["id"]), kind="image", frames=frames, prompt=prompt,
                              fps=2.0, input_sha256=digest)

    def run(self, backend: Backend, model: ModelSpec, provenance: Dict[str, Any]) -> None:
        emulated = bool(provenance.get("emulated"))
        todo = [r for r in self.requests if (self.task, model.variant, str(r["id"])) not in self.done]
        total = len(self.requests)
        self.runner.event("accuracy", "%s: %d of %d requests to answer" % (self.task, len(todo), total),
                          variant=model.variant, data={"task": self.task, "total": total, "todo": len(todo)})
        refused: Optional[str] = None
        for index, request in enumerate(todo, 1):
            if refused is not None:  # the backend cannot answer at all: do not retry 500 times
                self._write(self._answer(model, request, "error", error=refused, error_kind="unsupported"))
                continue
            try:
                inputs = self._inputs(request)
            except (OSError, ProtocolError, UnsupportedWorkload) as exc:
                self._write(self._answer(model, request, "error", error=str(exc), error_kind="input"))
                continue
            max_new = int(request.get("max_new_tokens", self.max_new_tokens))
            started = now_ns()
            try:
                text = backend.answer(inputs, inputs.prompt, max_new)
            except UnsupportedWorkload as exc:
                refused = str(exc)
                self._write(self._answer(model, request, "error", error=refused, error_kind="unsupported",
                                         input_sha256=inputs.input_sha256))
                continue
            except BackendError as exc:
                self._write(self._answer(model, request, "error", error=str(exc), error_kind="engine",
                                         input_sha256=inputs.input_sha256))
                continue
            except Exception as exc:  # an engine crash on one request: record it, go on
                message = "%s: %s\n%s" % (type(exc).__name__, exc, traceback.format_exc(limit=3))
                self._write(self._answer(model, request, "error", error=message, error_kind="engine",
                                         input_sha256=inputs.input_sha256))
                continue
            wall_ms = (now_ns() - started) / 1e6
            self._write(self._answer(model, request, "ok", answer=text, input_sha256=inputs.input_sha256,
                                     wall_ms=round(wall_ms, 3), emulated=emulated))
            if index % PROGRESS_EVERY == 0 or index == len(todo):
                self.runner.event("accuracy", "%s: %d/%d answered" % (self.task, index, len(todo)),
                                  variant=model.variant,
                                  data={"task": self.task, "done": index, "total": len(todo)})
