"""What every inference backend provides to the runner.

A backend turns raw inputs (decoded RGB frames and a prompt) into tokens and *announces* what
happens (the query starts, a phase ends, a token arrives) to an :class:`Announcer`; the announcer
stamps each announcement with the runner's clock (``harness.runner.clock``) at the moment it is
made. A backend never hands in its own clock readings as our measurement: the runner replaces the
timestamps of whatever a backend returns with its announcer's stamps (``Announcer.stamped``);
what an engine says about its own timing goes into ``RawTiming.engine``. The runner turns the
stamps into metrics in one place (``harness.runner.metrics``) so every backend is measured the
same way.

Standard library only: engines are imported inside each backend's ``load()``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from ..clock import now_ns
from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs


# Written into a model directory by `bench models make` (harness/models/marker.py, which a test
# keeps in sync): how every backend labels random-weight models. Defined once for the runner,
# which cannot import the controller's packages.
MARKER_NAME = "edge_vlm_bench_model.json"
# Written beside a variant by `bench models quantize` (harness/models/quantize.py QUANT_INFO): the
# tool, its version and settings. Backends copy it into the load info so variants are told apart.
QUANT_INFO_NAME = "quantization.json"


def read_json_file(path: str) -> Optional[Dict[str, Any]]:
    """A JSON object file: None when there is none; an unreadable one or one that is not an
    object gives ``{"error": why}`` instead of vanishing."""
    import json
    import os

    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_JSON_BYTES + 1)
        if len(raw) > _MAX_JSON_BYTES:
            return {"error": "unreadable: larger than %d bytes" % _MAX_JSON_BYTES}
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {"error": "unreadable: %s" % exc}
    except RecursionError:  # "[[[[..." nested deeper than the interpreter's stack
        return {"error": "unreadable: nested too deeply"}
    return data if isinstance(data, dict) else {"error": "not an object"}


#: marker / quantization JSON files are small; a bigger one is refused, not loaded
_MAX_JSON_BYTES = 16 << 20


def read_quantization_info(model_dir: str) -> Optional[Dict[str, Any]]:
    """The variant's ``quantization.json`` (see read_json_file)."""
    import os

    return read_json_file(os.path.join(model_dir, QUANT_INFO_NAME))


class BackendError(RuntimeError):
    """A failure the user can act on; the message says what to do."""


class BackendUnavailable(BackendError):
    """The backend's engine is not installed on this machine."""


class UnsupportedWorkload(BackendError):
    """The backend or the model cannot run this kind of workload."""


class ModelNotFound(BackendError):
    """The model directory or file named by the device is missing."""


@dataclass
class LoadInfo:
    """What was loaded: goes into every measurement's provenance."""

    engine: str  # e.g. "transformers 5.23.0 / torch 2.14.1"
    engine_versions: Dict[str, str] = field(default_factory=dict)
    model_id: str = ""
    model_sha256: str = ""
    weights: str = "unknown"  # "real", "random" (random-weight architecture) or "emulated"
    dtype: str = ""
    accelerator: str = "cpu"
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RawTiming:
    """Timestamps (the runner's clock, stamped by an Announcer) and counts from one query.

    ``t_start`` is taken with the raw inputs already decoded in memory. Phase boundaries a
    backend cannot observe stay None; the runner then leaves the metric empty.
    """

    t_start: int
    t_preprocess_end: Optional[int]
    t_vision_start: Optional[int]
    t_vision_end: Optional[int]
    token_times: List[int]  # one timestamp per output token, the first one is the first token
    n_input_tokens: Optional[int]
    n_visual_tokens: Optional[int]
    n_output_tokens: int
    output_text: str = ""
    # Engines that stream several tokens per write cannot give one time per token; they still
    # show when the first and the last token became available (token_times then stays empty).
    t_first_token: Optional[int] = None
    t_last_token: Optional[int] = None
    peak_accel_mb: Optional[float] = None
    peak_accel_source: str = ""
    engine: Dict[str, Any] = field(default_factory=dict)  # the engine's own figures
    warnings: List[str] = field(default_factory=list)


PhaseCallback = Callable[[str], None]

# the boundaries an announcer stamps, as RawTiming fields
_STAMP_FIELDS = ("t_start", "t_preprocess_end", "t_vision_start", "t_vision_end", "token_times",
                 "t_first_token", "t_last_token")


class Announcer:
    """The runner's stopwatch for one query: the backend says *what* happened, the runner stamps *when*.

    Live announcements (``start()``, ``phase_end("preprocess")``, ``token()``) are stamped with the
    runner's clock as they are made. A reader that must stamp output before it knows what it means
    (a CLI's lines, parsed after the process ends) takes its arrival readings from ``now()`` and
    later announces ``at=`` one of them; a value the announcer did not issue is refused, so an
    engine's own clock (or a computed deadline) can never become our timestamp.

    ``on_phase`` is told when a phase begins (preprocess, vision_encode, prefill, decode), for
    progress display; it is called after the stamp, so a slow callback is never counted in the
    phase it announces (except ``start``, which reports before stamping for the same reason).
    """

    def __init__(self, on_phase: Optional[PhaseCallback] = None,
                 clock: Optional[Callable[[], int]] = None) -> None:
        self._clock = clock or now_ns
        self._on_phase = on_phase
        self._issued: Set[int] = set()
        self.t_start: Optional[int] = None
        self.t_preprocess_end: Optional[int] = None
        self.t_vision_start: Optional[int] = None
        self.t_vision_end: Optional[int] = None
        self.token_times: List[int] = []
        self.t_first_token: Optional[int] = None  # first output chunk, for streams without per-token writes
        self.t_last_token: Optional[int] = None

    # -- readings -----------------------------------------------------------------------------
    def now(self) -> int:
        """A reading of the runner's clock for an arrival whose meaning is known later."""
        reading = self._clock()
        self._issued.add(reading)
        return reading

    def _stamp(self, at: Optional[int]) -> int:
        if at is None:
            return self._clock()
        if at not in self._issued:
            raise BackendError(
                "announced time %r is not a reading of the runner's clock (Announcer.now()): a backend "
                "announces events, it never hands in its own timestamps" % (at,))
        return at

    def _progress(self, phase: str) -> None:
        if self._on_phase is not None:
            self._on_phase(phase)

    # -- announcements ------------------------------------------------------------------------
    def start(self, at: Optional[int] = None) -> None:
        """The raw inputs are in memory and the query begins (``t_start``)."""
        if at is None:
            self._progress("preprocess")
        self.t_start = self._stamp(at)
        if at is not None:
            self._progress("preprocess")

    def phase_start(self, name: str, at: Optional[int] = None) -> None:
        """A phase begins; only ``vision_encode`` has a start of its own (its first call counts)."""
        if name != "vision_encode":
            raise BackendError("announcer: no start boundary for phase %r" % name)
        stamp = self._stamp(at)
        if self.t_vision_start is None:
            self.t_vision_start = stamp
        self._progress("vision_encode")

    def phase_end(self, name: str, at: Optional[int] = None) -> None:
        """``preprocess`` or ``vision_encode`` ended (for the vision tower its last call counts)."""
        stamp = self._stamp(at)
        if name == "preprocess":
            self.t_preprocess_end = stamp
        elif name == "vision_encode":
            self.t_vision_end = stamp
            self._progress("prefill")
        else:
            raise BackendError("announcer: unknown phase %r (preprocess, vision_encode)" % name)

    def token(self, count: int = 1, at: Optional[int] = None) -> None:
        """``count`` output tokens became available together (they share one stamp)."""
        stamp = self._stamp(at)
        first = not self.token_times
        self.token_times.extend([stamp] * count)
        if first and count:
            self._progress("decode")

    def output(self, at: Optional[int] = None) -> None:
        """Output arrived from an engine that writes several tokens at once: the first such call
        is the first token's time, the latest one the last token's (no per-token times)."""
        stamp = self._stamp(at)
        if self.t_first_token is None:
            self.t_first_token = stamp
            self._progress("decode")
        self.t_last_token = stamp

    # -- results ------------------------------------------------------------------------------
    def timing(self, **fields: Any) -> "RawTiming":
        """A RawTiming with this announcer's stamps and the backend's counts, text and engine figures."""
        if self.t_start is None:
            raise BackendError("announcer: the backend never announced the query's start")
        stamps = {name: getattr(self, name) for name in _STAMP_FIELDS}
        stamps["token_times"] = list(self.token_times)
        return RawTiming(**stamps, **fields)

    def stamped(self, raw: "RawTiming") -> "RawTiming":
        """``raw`` with every timestamp replaced by this announcer's: what the runner measures."""
        if self.t_start is None:
            raise BackendError("the backend announced nothing to the runner's clock (no start): it must "
                               "announce the query's boundaries and tokens (Backend.run's announce)")
        stamps = {name: getattr(self, name) for name in _STAMP_FIELDS}
        stamps["token_times"] = list(self.token_times)
        return dataclasses.replace(raw, **stamps)


class Backend:
    """Base class. Subclasses validate ``options`` in ``__init__`` and import engines in ``load``."""

    name = "base"
    #: option names this backend accepts; anything else is refused with the list of known names
    option_names: tuple = ()

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise BackendError(
                "backend %r: unknown option(s) %s; known options: %s"
                % (self.name, ", ".join(unknown), ", ".join(self.option_names) or "none")
            )
        self.options = dict(options)
        self.model = model

    def supports(self, kind: str) -> bool:
        return kind in ("image", "video")

    def load(self) -> LoadInfo:
        raise NotImplementedError

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
        announce: Optional[Announcer] = None,
    ) -> RawTiming:
        """Run one query with greedy decoding and exactly ``generation.output_tokens`` tokens.

        Every boundary and token is announced to ``announce`` (the runner's; a backend called
        without one makes its own, ``Announcer(on_phase)``) and the result built with
        ``announce.timing(...)``."""
        raise NotImplementedError

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """Answer one accuracy request: greedy, stopping at EOS (or after ``max_new_tokens``).

        Unlike ``run`` the output length is not forced: accuracy needs the model's own answer.
        Backends that cannot answer say so; the runner records one error per request.
        """
        raise UnsupportedWorkload(
            "backend %r cannot answer accuracy requests (no answer() method)" % self.name
        )

    def close(self) -> None:
        """Release the engine; called once per model variant."""
