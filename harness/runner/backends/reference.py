"""The `reference` engine: configured phase times and token gaps, paced in a separate process.

It proves the clock and emulates the five boards from published figures (``reference_profiles``);
its results are marked emulated. The engine is a stand-in process (``_paced_engine``) whose lines
are paced by kernel timers, outside the runner's interpreter: ``load()`` starts it, ``run()``
announces the start, sends the query line and announces every line as it arrives, exactly as a
CLI engine is read. The runner's clock therefore measures something it cannot influence: a runner
whose clock is wrong (or that drops or doubles a token) disagrees with the configured pacing,
which the truth tests (tests/core/test_timing_truth.py) check from outside the runner.

Options:
  profile:   one of the emulated board profiles (ax650n, orin-nano, agx-orin, upsquared-n, rtx)
  phases:    {image|video: {preprocess_ms, vision_encode_ms, prefill_ms, tpot_ms, itl_ms: [...],
              n_input_tokens, n_visual_tokens}}, overriding the profile's values
  busy:      the engine process spins instead of sleeping (burns a core, as a real engine would)
  time_scale: multiply every configured duration (e.g. 0.01 for quick smoke runs; recorded)
  kinds:     workload kinds this emulated engine accepts (default image and video), to emulate
             engines without a video path
  answers:   accuracy requests: {prompt: answer} answered verbatim (an emulated answer policy,
             never a model: accuracy through this engine measures the plumbing, not a model)
  default_answer: the answer to any other prompt (default "yes")
"""

from __future__ import annotations

import json
import os
import pkgutil
import select
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs
from . import register_backend
from .base import Announcer, Backend, BackendError, LoadInfo, PhaseCallback, RawTiming
from .reference_profiles import PROFILES

_START_TIMEOUT_S = 30.0

_PHASE_KEYS = (
    "preprocess_ms",
    "vision_encode_ms",
    "prefill_ms",
    "tpot_ms",
    "itl_ms",
    "n_input_tokens",
    "n_visual_tokens",
)
_DEFAULT_PHASES = {
    "preprocess_ms": 5.0,
    "vision_encode_ms": 20.0,
    "prefill_ms": 30.0,
    "tpot_ms": 10.0,
    "n_input_tokens": 64,
    "n_visual_tokens": 16,
}


@register_backend("reference")
class ReferenceBackend(Backend):
    option_names = ("profile", "phases", "busy", "time_scale", "kinds", "answers", "default_answer")

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        super().__init__(options, model)
        profile = options.get("profile")
        if profile is not None and profile not in PROFILES:
            raise BackendError(
                "reference backend: unknown profile %r; profiles: %s"
                % (profile, ", ".join(sorted(PROFILES)))
            )
        self.profile = profile
        scale = options.get("time_scale", 1.0)
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise BackendError("reference backend: time_scale must be a positive number")
        self.time_scale = float(scale)
        self.busy = bool(options.get("busy", False))
        self.kinds = tuple(options.get("kinds", ("image", "video")))
        if not set(self.kinds) <= {"image", "video"}:
            raise BackendError("reference backend: kinds must be a list of image and/or video")
        overrides = options.get("phases", {})
        if not isinstance(overrides, dict):
            raise BackendError("reference backend: phases must be a mapping of image/video settings")
        self.phases: Dict[str, Dict[str, Any]] = {}
        for kind in ("image", "video"):
            base = dict(PROFILES[profile][kind]) if profile else dict(_DEFAULT_PHASES)
            override = overrides.get(kind, {})
            unknown = sorted(set(override) - set(_PHASE_KEYS))
            if unknown:
                raise BackendError(
                    "reference backend: unknown phase setting(s) %s for %s; known: %s"
                    % (", ".join(unknown), kind, ", ".join(_PHASE_KEYS))
                )
            base.update(override)
            for key, value in base.items():
                if key == "itl_ms":
                    if not value or any(not isinstance(v, (int, float)) or v < 0 for v in value):
                        raise BackendError("reference backend: itl_ms must be non-negative numbers")
                elif not isinstance(value, (int, float)) or value < 0:
                    raise BackendError("reference backend: %s.%s must be >= 0" % (kind, key))
            self.phases[kind] = base
        answers = options.get("answers", {})
        if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
            raise BackendError("reference backend: answers must map prompts to answer strings")
        self.answers: Dict[str, str] = {str(k): v for k, v in answers.items()}
        self.default_answer = str(options.get("default_answer", "yes"))
        self._engine: Optional[_PacedEngine] = None

    def supports(self, kind: str) -> bool:
        return kind in self.kinds

    def load(self) -> LoadInfo:
        self.close()  # a second load() replaces the engine process, never leaks it
        self._engine = _PacedEngine({"phases": self.phases, "time_scale": self.time_scale, "busy": self.busy})
        extra: Dict[str, Any] = {"time_scale": self.time_scale, "busy": self.busy,
                                 "pacing": "separate process, kernel timers (_paced_engine)"}
        extra["answer_policy"] = "emulated: %d configured answer(s), otherwise %r" % (
            len(self.answers), self.default_answer)
        if self.profile:
            extra["profile_board"] = PROFILES[self.profile]["board"]
            extra["profile_sources"] = PROFILES[self.profile]["sources"]
        return LoadInfo(
            engine="reference (emulated)",
            engine_versions={"reference": "2"},
            model_id="emulated:%s" % (self.profile or "custom"),
            weights="emulated",
            dtype="n/a",
            accelerator="none",
            extra=extra,
        )

    def _live(self, kind: str) -> "_PacedEngine":
        if self._engine is None:
            raise BackendError("reference backend: no engine process (run() before load(), or it was "
                               "stopped after an error)")
        if kind not in self.kinds:
            raise BackendError("reference backend: %s requests are not accepted (kinds)" % kind)
        return self._engine

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
        announce: Optional[Announcer] = None,
    ) -> RawTiming:
        engine = self._live(inputs.kind)
        announce = announce if announce is not None else Announcer(on_phase)
        phases = self.phases[inputs.kind]
        texts: List[str] = []
        reported: Dict[str, float] = {}
        announce.start()  # before the query is sent: the engine's schedule starts after this
        try:
            engine.send("query %s %d" % (inputs.kind, generation.output_tokens))
            for line in engine.lines(generation.timeout_s):
                if line == "preprocess done":
                    boundary = announce.now()  # the vision encode begins where preprocessing ends
                    announce.phase_end("preprocess", at=boundary)
                    announce.phase_start("vision_encode", at=boundary)
                elif line == "vision_encode done":
                    announce.phase_end("vision_encode")
                elif line.startswith("token "):
                    announce.token()
                    texts.append(line[len("token "):])
                elif line.startswith("perf "):
                    reported = _perf_fields(line)
                elif line == "done":
                    break
                else:
                    raise BackendError("reference backend: the engine said %r" % line)
        except BackendError:
            self.close()  # its output is out of step now: a later query must not read this one's lines
            raise
        return announce.timing(
            n_input_tokens=int(phases["n_input_tokens"]),
            n_visual_tokens=int(phases["n_visual_tokens"]),
            n_output_tokens=len(texts),  # counted from the engine's lines, not from our stamps
            output_text=" ".join(texts),
            # what the emulated engine was told to take (after time_scale), and what it measured
            # on its own clock: beside ours, never instead of ours
            engine={"configured_ms": {k: phases[k] * self.time_scale for k in phases
                                      if k.endswith("_ms") and k != "itl_ms"},
                    "reported_ms": reported},
        )

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """The emulated answer policy (``answers`` / ``default_answer``), after the engine has
        paced the profile's time to first token plus one token gap (an answer word and EOS), so
        a run takes as long as the emulated board would."""
        engine = self._live(inputs.kind)
        try:
            engine.send("query %s 2" % inputs.kind)
            for line in engine.lines(GenerationSpec(output_tokens=2).timeout_s):
                if line == "done":
                    break
        except BackendError:
            self.close()
            raise
        return self.answers.get(prompt, self.default_answer)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def _perf_fields(line: str) -> Dict[str, float]:
    fields: Dict[str, float] = {}
    for word in line.split()[1:]:
        name, _, value = word.partition("=")
        try:
            fields[name] = float(value)
        except ValueError:
            pass
    return fields


class _PacedEngine:
    """The stand-in process and a line reader on its stdout (select + os.read: a line is handed
    over as soon as its bytes arrive, never held back to fill a buffer)."""

    def __init__(self, config: Dict[str, Any]) -> None:
        source = pkgutil.get_data(__package__, "_paced_engine.py")
        if source is None:
            raise BackendError("reference backend: the paced engine's source is missing from the runner")
        # -I -S: no environment, no site packages, so nothing that alters the runner's interpreter
        # (a sitecustomize, PYTHONPATH) reaches the engine's clock
        argv = [sys.executable, "-I", "-S", "-c", source.decode("utf-8"), json.dumps(config)]
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise BackendError("reference backend: cannot start the paced engine: %s" % exc) from exc
        self._pending = b""
        for line in self.lines(_START_TIMEOUT_S):
            if line == "ready":
                break

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
        except OSError as exc:
            raise BackendError("reference backend: the paced engine is gone: %s%s" % (exc, self._stderr())) from exc

    def lines(self, timeout_s: float) -> "Any":
        """Each line as soon as it has arrived; BackendError on exit or after ``timeout_s``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while True:
            newline = self._pending.find(b"\n")
            if newline >= 0:
                line, self._pending = self._pending[:newline], self._pending[newline + 1:]
                yield line.decode("utf-8", "replace")
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError("reference backend: no output from the paced engine within %.0f s" % timeout_s)
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise BackendError("reference backend: the paced engine exited (code %s)%s"
                                   % (self.proc.wait(), self._stderr()))
            self._pending += data

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        text = self.proc.stderr.read().decode("utf-8", "replace").strip()
        return "; its stderr: %s" % text[-1500:] if text else ""

    def close(self) -> None:
        try:
            self.send("quit")
            self.proc.wait(timeout=5)
        except (BackendError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
