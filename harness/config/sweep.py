"""``sweep:``, ``concurrency:`` and ``slo:`` in a suite: one workload per sweep point.

    sweep:                      # the cross product of every list given
      size: [[224, 224], [448, 448], [896, 896]]
      output_tokens: [16, 64]
    sweep:                      # or a listed set of points
      points:
        - {size: [224, 224], output_tokens: 16}
        - {size: [896, 896], output_tokens: 64}
    concurrency: [1, 2, 4, 8]   # streams at once (servers); one more sweep dimension
    slo: {ttft_ms: 2000, tpot_ms: 200}   # goodput: the share of requests meeting every bound

Dimensions: ``size`` (every workload's frame size), ``frames`` (video workloads only; image
workloads keep their one frame), ``output_tokens``, ``prompt_words`` (the prompt is preceded by
that many words of fixed context text, so input length grows while the question stays the same)
and ``concurrency``. Each point becomes an ordinary workload named ``<workload>-<point>`` (e.g.
``image-448x448-o64-c4``) whose settings travel in the measurement's ``params``; the SLO travels
with every point (``params.slo``) so a report can compute goodput from the store alone.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

DIMENSIONS = ("size", "frames", "output_tokens", "prompt_words", "concurrency")

# Plain, fixed filler for prompt-length sweeps: deterministic, so inputs hash the same every run.
_CONTEXT_WORDS = (
    "the camera looks out over a quiet street in the early morning light while a few people walk "
    "past the shops and a bicycle leans against a lamp post near the corner of the square"
).split()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SweepPoint(_Strict):
    size: Optional[Tuple[int, int]] = None
    frames: Optional[int] = Field(None, ge=2, le=256)
    output_tokens: Optional[int] = Field(None, ge=2, le=8192)
    prompt_words: Optional[int] = Field(None, ge=0, le=100000)
    concurrency: Optional[int] = Field(None, ge=1, le=1024)


class SweepConfig(_Strict):
    size: Optional[List[Tuple[int, int]]] = Field(None, min_length=1)
    frames: Optional[List[int]] = Field(None, min_length=1)
    output_tokens: Optional[List[int]] = Field(None, min_length=1)
    prompt_words: Optional[List[int]] = Field(None, min_length=1)
    concurrency: Optional[List[int]] = Field(None, min_length=1)
    points: Optional[List[SweepPoint]] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> "SweepConfig":
        lists = [d for d in DIMENSIONS if getattr(self, d) is not None]
        if self.points is not None and lists:
            raise ValueError("give either points (a listed set) or dimension lists (%s, their cross product), "
                             "not both" % ", ".join(lists))
        if self.points is None and not lists:
            raise ValueError("an empty sweep: give points or at least one of %s" % ", ".join(DIMENSIONS))
        for value in self.frames or []:
            if not 2 <= value <= 256:
                raise ValueError("frames must be between 2 and 256, got %d" % value)
        for value in self.output_tokens or []:
            if not 2 <= value <= 8192:
                raise ValueError("output_tokens must be between 2 and 8192, got %d" % value)
        for value in self.concurrency or []:
            if not 1 <= value <= 1024:
                raise ValueError("concurrency must be between 1 and 1024, got %d" % value)
        for value in self.prompt_words or []:
            if value < 0:
                raise ValueError("prompt_words must be >= 0, got %d" % value)
        for point in self.points or []:
            self._check_size(point.size)
        for size in self.size or []:
            self._check_size(size)
        return self

    @staticmethod
    def _check_size(size: Optional[Tuple[int, int]]) -> None:
        if size is not None and (min(size) < 28 or max(size) > 4096):
            raise ValueError("size must be between 28 and 4096 pixels per side, got %s" % (list(size),))

    def points_list(self, concurrency: Optional[List[int]] = None) -> List[Dict[str, Any]]:
        """Every point as {dimension: value}; ``concurrency`` (the suite's top-level list) is one
        more cross-product dimension."""
        if self.points is not None:
            base = [p.model_dump(exclude_none=True) for p in self.points]
        else:
            dims = [(d, getattr(self, d)) for d in DIMENSIONS if getattr(self, d) is not None]
            base = [dict(zip([d for d, _ in dims], combo)) for combo in itertools.product(*[v for _, v in dims])]
        if concurrency:
            base = [dict(p, concurrency=c) for p in base for c in concurrency]
        return base


class SloConfig(_Strict):
    """Service-level objective: a request is good when it meets every bound given."""

    ttft_ms: Optional[float] = Field(None, gt=0)
    tpot_ms: Optional[float] = Field(None, gt=0)
    e2e_ms: Optional[float] = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_bound(self) -> "SloConfig":
        if self.ttft_ms is None and self.tpot_ms is None and self.e2e_ms is None:
            raise ValueError("slo needs at least one of ttft_ms, tpot_ms, e2e_ms")
        return self


def context_prompt(prompt: str, words: int) -> str:
    """``prompt`` preceded by ``words`` words of fixed context text."""
    if words <= 0:
        return prompt
    filler = [_CONTEXT_WORDS[i % len(_CONTEXT_WORDS)] for i in range(words)]
    return "Context: %s.\n%s" % (" ".join(filler), prompt)


def point_suffix(point: Dict[str, Any]) -> str:
    parts = []
    if "size" in point:
        parts.append("%dx%d" % tuple(point["size"]))
    for key, tag in (("frames", "f"), ("output_tokens", "o"), ("prompt_words", "p"), ("concurrency", "c")):
        if key in point:
            parts.append("%s%d" % (tag, point[key]))
    return "-".join(parts)


def expand(workloads: List[Any], suite_prompt: str, sweep: Optional[SweepConfig],
           concurrency: Optional[List[int]], slo: Optional[SloConfig]) -> List[Any]:
    """The suite's workloads with every sweep point applied (WorkloadConfig copies)."""
    if sweep is None and not concurrency:
        return list(workloads)
    points = sweep.points_list(concurrency) if sweep is not None else [{"concurrency": c} for c in concurrency or []]
    slo_params = slo.model_dump(exclude_none=True) if slo is not None else None
    expanded = []
    for workload in workloads:
        seen = set()
        for point in points:
            applied = dict(point)
            if workload.kind == "image":
                applied.pop("frames", None)  # an image is one frame at every point
            suffix = point_suffix(applied)
            if suffix in seen:
                continue
            seen.add(suffix)
            update: Dict[str, Any] = {"name": ("%s-%s" % (workload.name, suffix))[:64] if suffix else workload.name}
            if "size" in applied:
                update["size"] = tuple(applied["size"])
            if "frames" in applied:
                update["frames"] = applied["frames"]
            if "output_tokens" in applied:
                update["output_tokens"] = applied["output_tokens"]
            if "concurrency" in applied:
                update["concurrency"] = applied["concurrency"]
            if "prompt_words" in applied:
                base = workload.prompt if workload.prompt is not None else suite_prompt
                update["prompt"] = context_prompt(base, applied["prompt_words"])
            params: Dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in applied.items()}
            params["sweep_of"] = workload.name
            if slo_params:
                params["slo"] = slo_params
            update["params"] = params
            expanded.append(workload.model_copy(update=update))
    return expanded


def slo_only(workloads: List[Any], slo: Optional[SloConfig]) -> List[Any]:
    """Workloads of a suite with an SLO but no sweep: the SLO still travels in params."""
    if slo is None:
        return list(workloads)
    return [w.model_copy(update={"params": dict(w.params, slo=slo.model_dump(exclude_none=True))}) for w in workloads]


def validate_against(workloads: List[Any], sweep: Optional[SweepConfig]) -> None:
    """Sweep settings that cannot apply to the suite's workloads."""
    if sweep is None:
        return
    wants_frames = bool(sweep.frames) or any(p.frames is not None for p in sweep.points or [])
    if wants_frames and not any(w.kind == "video" for w in workloads):
        raise ValueError("sweep.frames needs a video workload (image workloads have one frame)")


__all__: Tuple[str, ...] = ("SweepConfig", "SloConfig", "SweepPoint", "expand", "context_prompt", "slo_only")
