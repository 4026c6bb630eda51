"""The contract between the controller and the runner.

A versioned :class:`RunSpec` goes in; JSON lines come out: :class:`Event` records (progress)
and :class:`Measurement` records (one per repetition). The controller and the runner import this
same module, and nothing else crosses between them.

Standard library only, Python >= 3.8: this file ships to every board.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

PROTOCOL_VERSION = 1
MEASUREMENT_SCHEMA_VERSION = 1

# Every metric a Measurement may carry, with its unit in the name. Reports and the store rely on
# this list: a backend that cannot fill a metric leaves it None, it never invents a number.
TIMING_METRICS = (
    "preprocess_ms",
    "vision_encode_ms",
    "prefill_ms",
    "ttft_ms",
    "decode_tps",
    "tpot_ms",
    "itl_p50_ms",
    "itl_p90_ms",
    "itl_p99_ms",
    "e2e_ms",
)
COUNT_METRICS = ("n_input_tokens", "n_visual_tokens", "n_output_tokens")
MEMORY_METRICS = ("peak_host_mb", "peak_accel_mb")
ALL_METRICS = TIMING_METRICS + COUNT_METRICS + MEMORY_METRICS

WORKLOAD_KINDS = ("image", "video")


class ProtocolError(ValueError):
    """A spec or record that does not follow this protocol version."""


def _require(mapping: Dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise ProtocolError("%s: missing field %r" % (where, key))
    return mapping[key]


@dataclass
class WorkloadSpec:
    """One workload: the frames (PPM files, raw RGB) and the prompt sent with them."""

    name: str
    kind: str  # "image" or "video"
    frames: List[str]  # paths of binary PPM (P6) files, in temporal order for video
    prompt: str
    input_sha256: str  # over the decoded pixels and the prompt, see workloads.input_digest
    fps: float = 2.0  # video only: the frame rate the frames were sampled at
    # A sweep point's settings (size, frames, output_tokens, prompt_words, concurrency, slo),
    # copied into each of its measurements' ``params``; empty for a plain workload.
    params: Dict[str, Any] = field(default_factory=dict)
    output_tokens: Optional[int] = None  # overrides GenerationSpec.output_tokens for this workload
    concurrency: int = 1  # streams sent at once (backends with supports_concurrency only)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ProtocolError("workload %r: concurrency must be >= 1" % self.name)
        if self.output_tokens is not None and self.output_tokens < 2:
            raise ProtocolError("workload %r: output_tokens must be >= 2" % self.name)
        if self.kind not in WORKLOAD_KINDS:
            raise ProtocolError(
                "workload %r: kind must be one of %s, got %r" % (self.name, WORKLOAD_KINDS, self.kind)
            )
        if not self.frames:
            raise ProtocolError("workload %r: no frames" % self.name)
        if self.kind == "image" and len(self.frames) != 1:
            raise ProtocolError("workload %r: an image workload has exactly one frame" % self.name)


@dataclass
class ModelSpec:
    """One model variant on the device (fp16, int8, ...)."""

    variant: str
    path: str
    quantization: str = "none"
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BackendSpec:
    name: str
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationSpec:
    output_tokens: int
    warmup: int = 1
    repetitions: int = 5
    timeout_s: float = 1800.0
    # --until-stable (harness/runner/stability.py): after `repetitions`, repeat until the 95% CI of
    # the median of `stable_metric` is within this relative width, or `max_repetitions` measured
    # repetitions. 0: off (exactly `repetitions`).
    until_stable: float = 0.0
    max_repetitions: int = 0
    stable_metric: str = "e2e_ms"

    def __post_init__(self) -> None:
        if self.output_tokens < 2:
            raise ProtocolError("output_tokens must be >= 2 (decode rate needs two tokens)")
        if self.warmup < 0 or self.repetitions < 1:
            raise ProtocolError("warmup must be >= 0 and repetitions >= 1")
        if self.until_stable < 0 or (self.until_stable and self.max_repetitions < self.repetitions):
            raise ProtocolError("until_stable must be >= 0, with max_repetitions >= repetitions")

    @property
    def planned_total(self) -> int:
        """Warm-up plus the most measured repetitions this spec may take."""
        return self.warmup + (max(self.max_repetitions, self.repetitions) if self.until_stable else self.repetitions)


@dataclass
class RunSpec:
    """Everything one device needs to run one suite."""

    run_id: str
    device: str
    suite: str
    backend: BackendSpec
    models: List[ModelSpec]
    workloads: List[WorkloadSpec]
    generation: GenerationSpec
    telemetry: List[Dict[str, Any]] = field(default_factory=list)
    device_info: Dict[str, Any] = field(default_factory=dict)  # type, expectations from devices.yaml
    controller: Dict[str, Any] = field(default_factory=dict)  # controller version and git commit
    # Optional accuracy work (harness/runner/accuracy.py): {"task": name, "requests": a jsonl file
    # under inputs/, "max_new_tokens": n}. Empty: a latency-only run, as before.
    accuracy: Dict[str, Any] = field(default_factory=dict)
    protocol_version: int = PROTOCOL_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RunSpec":
        version = data.get("protocol_version")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                "RunSpec protocol_version %r, this runner speaks %d: redeploy the runner"
                % (version, PROTOCOL_VERSION)
            )
        try:
            return cls(
                run_id=_require(data, "run_id", "RunSpec"),
                device=_require(data, "device", "RunSpec"),
                suite=_require(data, "suite", "RunSpec"),
                backend=BackendSpec(**_require(data, "backend", "RunSpec")),
                models=[ModelSpec(**m) for m in _require(data, "models", "RunSpec")],
                workloads=[WorkloadSpec(**w) for w in _require(data, "workloads", "RunSpec")],
                generation=GenerationSpec(**_require(data, "generation", "RunSpec")),
                telemetry=list(data.get("telemetry", [])),
                device_info=dict(data.get("device_info", {})),
                controller=dict(data.get("controller", {})),
                accuracy=dict(data.get("accuracy", {})),
                protocol_version=version,
            )
        except TypeError as exc:  # unknown or missing keyword in a nested record
            raise ProtocolError("RunSpec: %s" % exc) from exc

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProtocolError("RunSpec is not valid JSON: %s" % exc) from exc
        if not isinstance(data, dict):
            raise ProtocolError("RunSpec must be a JSON object")
        return cls.from_dict(data)


@dataclass
class Event:
    """A progress report. Events are for people watching; measurements are the data."""

    event: str  # run_start, load, repetition_start, phase, repetition_done, error, run_end
    ts_ns: int
    device: str = ""
    workload: str = ""
    variant: str = ""
    repetition: Optional[int] = None
    message: str = ""
    data: Dict[str, Any] = field(default_factory=dict)
    record: str = "event"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass
class Measurement:
    """One repetition of one workload on one model variant of one device: a flat, complete record."""

    run_id: str
    device: str
    suite: str
    workload: str
    backend: str
    variant: str
    repetition: int  # 0-based, counted over warm-up and measured repetitions together
    warmup: bool
    status: str  # "ok" or "error"
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)
    itl_ms: List[float] = field(default_factory=list)  # every inter-token gap
    metric_sources: Dict[str, str] = field(default_factory=dict)  # e.g. peak_host_mb -> VmHWM
    engine: Dict[str, Any] = field(default_factory=dict)  # the engine's own figures
    telemetry: Dict[str, Any] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)
    input_sha256: str = ""
    output_text: str = ""
    error: Optional[str] = None
    # unavailable (engine not installed), model_not_found, unsupported (workload), input, engine
    error_kind: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    started_at: str = ""  # wall-clock ISO 8601, for people; durations come from the monotonic clock
    # The workload's sweep parameters; under concurrency also stream, round and the round's
    # wall time and output tokens (harness/runner/concurrent.py)
    params: Dict[str, Any] = field(default_factory=dict)
    schema_version: int = MEASUREMENT_SCHEMA_VERSION
    record: str = "measurement"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Measurement":
        if data.get("record") != "measurement":
            raise ProtocolError("not a measurement record: %r" % data.get("record"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProtocolError("measurement has unknown fields %s (newer runner?)" % unknown)
        try:
            record = cls(**data)
        except TypeError as exc:
            raise ProtocolError("measurement: %s" % exc) from exc
        return _checked(record, "measurement")

    @property
    def key(self) -> tuple:
        """Identity of a measurement inside a run: storing it twice is a no-op."""
        return (self.run_id, self.device, self.workload, self.variant, self.repetition)


@dataclass
class Answer:
    """One accuracy request answered (or not) by one model variant: the per-sample record.

    Scoring happens on the controller (lm-eval); the runner only generates, so every backend is
    evaluated the same way. ``wall_ms`` is the answer's time on the runner's monotonic clock
    (generation until EOS), for people: latency metrics come from measurements, not from here.
    """

    run_id: str
    device: str
    suite: str
    task: str
    backend: str
    variant: str
    request_id: str
    status: str  # "ok" or "error"
    answer: str = ""
    input_sha256: str = ""  # over the request's pixels and prompt (workloads.input_digest)
    wall_ms: Optional[float] = None
    error: Optional[str] = None
    error_kind: Optional[str] = None
    emulated: bool = False  # an emulated engine's configured answer, not a model's
    schema_version: int = MEASUREMENT_SCHEMA_VERSION
    record: str = "answer"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Answer":
        if data.get("record") != "answer":
            raise ProtocolError("not an answer record: %r" % data.get("record"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProtocolError("answer has unknown fields %s (newer runner?)" % unknown)
        try:
            record = cls(**data)
        except TypeError as exc:
            raise ProtocolError("answer: %s" % exc) from exc
        return _checked(record, "answer")

    @property
    def key(self) -> tuple:
        return (self.run_id, self.device, self.task, self.variant, self.request_id)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# A record's fields by their annotation (this module's annotations are strings): a record read
# from a journal or a board is foreign text, and a wrong type must not reach the store as is.
_FIELD_CHECKS: Dict[str, Callable[[Any], bool]] = {
    "str": _is_str,
    "int": _is_int,
    "bool": lambda value: isinstance(value, bool),
    "float": _finite,
    "Optional[str]": _optional(_is_str),
    "Optional[int]": _optional(_is_int),
    "Optional[float]": _optional(_finite),
    "List[str]": lambda value: isinstance(value, list) and all(map(_is_str, value)),
    "List[float]": lambda value: isinstance(value, list) and all(map(_finite, value)),
    "Dict[str, str]": lambda value: isinstance(value, dict) and all(map(_is_str, value.values())),
    "Dict[str, Any]": lambda value: isinstance(value, dict),
    "Dict[str, Optional[float]]": lambda value: isinstance(value, dict) and all(
        v is None or _finite(v) for v in value.values()),
}
RECORD_STATUSES = ("ok", "error")
MIN_RECORD_CHARS = 20  # the shortest record, {"record": "event", ...}, is longer


def _checked(record: Any, kind: str) -> Any:
    """``record`` when every field has its annotated type (numbers finite), else ProtocolError."""
    for item in dataclasses.fields(record):
        check = _FIELD_CHECKS.get(str(item.type).replace("typing.", ""))
        value = getattr(record, item.name)
        if check is not None and not check(value):
            raise ProtocolError("%s field %r must be %s, not %s" % (kind, item.name, item.type, _brief(value)))
    status = getattr(record, "status", None)
    if status is not None and status not in RECORD_STATUSES:
        raise ProtocolError("%s field 'status' must be one of %s, not %s" % (kind, RECORD_STATUSES, _brief(status)))
    repetition = getattr(record, "repetition", None)
    if isinstance(repetition, int) and repetition < 0:
        raise ProtocolError("%s field 'repetition' must be >= 0, not %d" % (kind, repetition))
    return record


def _brief(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError("%s is not a number a record may carry" % name)


def parse_record(line: str) -> Any:
    """Parse one JSON line written by the runner into an Event, a Measurement or an Answer.

    Anything else - not JSON, NaN or Infinity, nesting past the parser's depth, a field of the
    wrong type, a status other than ok/error - is a ProtocolError that says what was wrong."""
    text = line.strip()
    if len(text) < MIN_RECORD_CHARS or text[:1] != "{" or text[-1:] != "}":
        # cheaply, before the JSON parser: a journal of a million short garbage lines stays linear
        raise ProtocolError("not a JSON line: no record object")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("not a JSON line: %s" % exc) from None
    if not isinstance(data, dict):
        raise ProtocolError("record must be a JSON object")
    kind = data.get("record")
    if kind == "measurement":
        return Measurement.from_dict(data)
    if kind == "answer":
        return Answer.from_dict(data)
    if kind == "event":
        data = dict(data)
        data.pop("record")
        try:
            return _checked(Event(**data), "event")
        except TypeError as exc:
            raise ProtocolError("event: %s" % exc) from exc
    raise ProtocolError("unknown record kind %s" % _brief(kind))
