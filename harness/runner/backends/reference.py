"""The `reference` engine: configured phase times and token gaps, produced against the clock.

It proves the clock (a test measures known phase times through the whole runner) and emulates the
five boards from published figures (``reference_profiles``). Its results are marked emulated.

Options:
  profile:   one of the emulated board profiles (ax650n, orin-nano, agx-orin, upsquared-n, rtx)
  phases:    {image|video: {preprocess_ms, vision_encode_ms, prefill_ms, tpot_ms, itl_ms: [...],
              n_input_tokens, n_visual_tokens}}, overriding the profile's values
  busy:      spin instead of sleeping (burns a core, as a real engine would)
  time_scale: multiply every configured duration (e.g. 0.01 for quick smoke runs; recorded)
  kinds:     workload kinds this emulated engine accepts (default image and video), to emulate
             engines without a video path
  answers:   accuracy requests: {prompt: answer} answered verbatim (an emulated answer policy,
             never a model: accuracy through this engine measures the plumbing, not a model)
  default_answer: the answer to any other prompt (default "yes")
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..clock import now_ns, wait_until
from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs
from . import register_backend
from .base import Backend, BackendError, LoadInfo, PhaseCallback, RawTiming
from .reference_profiles import PROFILES

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

    def supports(self, kind: str) -> bool:
        return kind in self.kinds

    def load(self) -> LoadInfo:
        extra: Dict[str, Any] = {"time_scale": self.time_scale, "busy": self.busy}
        extra["answer_policy"] = "emulated: %d configured answer(s), otherwise %r" % (
            len(self.answers), self.default_answer)
        if self.profile:
            extra["profile_board"] = PROFILES[self.profile]["board"]
            extra["profile_sources"] = PROFILES[self.profile]["sources"]
        return LoadInfo(
            engine="reference (emulated)",
            engine_versions={"reference": "1"},
            model_id="emulated:%s" % (self.profile or "custom"),
            weights="emulated",
            dtype="n/a",
            accelerator="none",
            extra=extra,
        )

    def _gaps_ms(self, kind: str, count: int) -> List[float]:
        phases = self.phases[kind]
        pattern = phases.get("itl_ms")
        if pattern:
            return [float(pattern[i % len(pattern)]) for i in range(count)]
        return [float(phases["tpot_ms"])] * count

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
    ) -> RawTiming:
        phases = self.phases[inputs.kind]
        scale_ns = 1e6 * self.time_scale
        n_tokens = generation.output_tokens
        # Deadlines follow the configured schedule from the query's start: a late wake-up (a busy
        # machine) shortens the next wait instead of pushing every later phase back, so TTFT,
        # TPOT and e2e stay on schedule; only the boundary that woke late is off.
        t_start = now_ns()
        deadline = t_start + int(phases["preprocess_ms"] * scale_ns)
        if on_phase:
            on_phase("preprocess")
        t_pre_end = wait_until(deadline, self.busy)
        if on_phase:
            on_phase("vision_encode")
        t_vision_start = t_pre_end
        deadline += int(phases["vision_encode_ms"] * scale_ns)
        t_vision_end = wait_until(deadline, self.busy)
        if on_phase:
            on_phase("prefill")
        deadline += int(phases["prefill_ms"] * scale_ns)
        token_times = [wait_until(deadline, self.busy)]
        if on_phase:
            on_phase("decode")
        for gap in self._gaps_ms(inputs.kind, n_tokens - 1):
            deadline += int(gap * scale_ns)
            token_times.append(wait_until(deadline, self.busy))
        return RawTiming(
            t_start=t_start,
            t_preprocess_end=t_pre_end,
            t_vision_start=t_vision_start,
            t_vision_end=t_vision_end,
            token_times=token_times,
            n_input_tokens=int(phases["n_input_tokens"]),
            n_visual_tokens=int(phases["n_visual_tokens"]),
            n_output_tokens=len(token_times),
            output_text=" ".join("tok%d" % i for i in range(len(token_times))),
            # what the emulated engine was told to take, after time_scale: our figures should agree
            engine={"configured_ms": {k: phases[k] * self.time_scale for k in phases
                                      if k.endswith("_ms") and k != "itl_ms"}},
        )

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """The emulated answer policy (``answers`` / ``default_answer``), after the profile's time
        to first token plus one token gap (an answer word and EOS), so a run takes as long as the
        emulated board would."""
        if inputs.kind not in self.kinds:
            raise BackendError("reference backend: %s requests are not accepted (kinds)" % inputs.kind)
        phases = self.phases[inputs.kind]
        total_ms = sum(float(phases[k]) for k in ("preprocess_ms", "vision_encode_ms", "prefill_ms"))
        total_ms += self._gaps_ms(inputs.kind, 1)[0]
        wait_until(now_ns() + int(total_ms * 1e6 * self.time_scale), self.busy)
        return self.answers.get(prompt, self.default_answer)
