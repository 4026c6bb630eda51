"""What every inference backend provides to the runner.

A backend turns raw inputs (decoded RGB frames and a prompt) into tokens and reports monotonic
timestamps (``time.perf_counter_ns``) at the phase boundaries. The runner turns timestamps into
metrics in one place (``harness.runner.metrics``) so every backend is measured the same way.

Standard library only: engines are imported inside each backend's ``load()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

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
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        return {"error": "unreadable: %s" % exc}
    return data if isinstance(data, dict) else {"error": "not an object"}


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
    """Timestamps (perf_counter_ns) and counts from one query.

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
    ) -> RawTiming:
        """Run one query with greedy decoding and exactly ``generation.output_tokens`` tokens."""
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
