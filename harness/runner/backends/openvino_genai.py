"""The `openvino_genai` backend: OpenVINO GenAI's ``VLMPipeline`` on an exported IR directory.

The model variant's path is an IR directory exported with ``optimum-cli export openvino --task
image-text-to-text`` (fp16 / int8 / int4 weights from NNCF are variants). One ``generate()`` call
per query, images as ``images=[ov.Tensor(HxWx3 uint8)]`` and a video as
``videos=[ov.Tensor(Nx HxWx3 uint8)]`` (the model's real video path, not N images).

What comes from where:
  ttft / token times   ours: a ``StreamerBase`` whose ``write()`` gets every token id as it is
                       generated; one ``announce.token(count)`` per call, stamped by the runner
  phases               not observable from outside the pipeline (preprocessing, vision encoding
                       and prefill all happen inside ``generate()``): left empty; the engine's
                       own durations are in ``engine``
  input tokens         PerfMetrics ``get_num_input_tokens()`` (counted by the engine)
  output tokens        counted by our streamer, cross-checked against the engine's count
  engine               PerfMetrics: ttft, tpot, throughput, generate / inference / tokenisation /
                       detokenisation durations, vision encoding, prepare embeddings, load time
Decoding is greedy with ``min_new_tokens == max_new_tokens`` and ``ignore_eos`` (llm_bench's
setting), so every board does the same work.

``answer()`` (accuracy requests) makes the same ``generate()`` call, greedy with the same media
tensors, but with ``ignore_eos`` off and no ``min_new_tokens``: EOS ends the answer, or
``max_new_tokens`` does. The engine's token counts of the last answer are kept in
``last_answer`` (input and generated tokens) for whoever wants to check them.

Options:
  device      CPU | GPU | GPU.N | NPU | AUTO ...             default CPU
  properties  plugin properties passed to VLMPipeline, e.g. {"INFERENCE_NUM_THREADS": 2,
              "CACHE_DIR": "/var/cache/ov"}                  default none
  kinds       workload kinds to run (default: image, plus video for model types with a video
              path: Qwen2-VL, Qwen2.5-VL, ...)

Standard library only at import time (Python >= 3.8): openvino loads in ``load()``.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ..clock import now_ns
from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs
from . import install_hint, register_backend
from .base import (
    MARKER_NAME,
    Announcer,
    Backend,
    BackendError,
    BackendUnavailable,
    LoadInfo,
    ModelNotFound,
    PhaseCallback,
    RawTiming,
    UnsupportedWorkload,
    read_json_file,
    read_quantization_info,
)

_LANGUAGE_MODEL = "openvino_language_model.xml"
_DEVICE_RE = re.compile(r"^(CPU|GPU|NPU|AUTO|HETERO|MULTI)(\.\d+|:[A-Z0-9.,]+)?$")
# model types whose GenAI pipeline takes videos= (the rest get images only unless `kinds` says so)
_VIDEO_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_next_video", "llava-qwen2")
_CONST_RE = re.compile(r'type="Const"[^>]*>\s*<data\b([^>]*)>')
_ELEMENT_TYPE_RE = re.compile(r'element_type="(\w+)"')
_SIZE_RE = re.compile(r'\bsize="(\d+)"')
_EXPORT_HINT = ("optimum-cli export openvino --model HF_DIR --task image-text-to-text --weight-format "
                "fp16|int8|int4 IR_DIR (scripts/export_openvino_fixture.sh builds a tiny one)")

# PerfMetrics getters (mean values) -> keys of the engine block; throughput in tokens/s, the rest ms
_PERF_METRICS = (
    ("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("ipot", "ipot_ms"), ("throughput", "throughput_tps"),
    ("generate_duration", "generate_ms"), ("inference_duration", "inference_ms"),
    ("tokenization_duration", "tokenization_ms"), ("detokenization_duration", "detokenization_ms"),
    ("prepare_embeddings_duration", "prepare_embeddings_ms"),
    ("vision_encoding_duration", "vision_encoding_ms"), ("sampling_duration", "sampling_ms"),
)



def _ir_sha256(path: str) -> "Tuple[str, List[str]]":
    """sha256 over the IR files (graphs and weights) in name order: name, NUL, bytes."""
    digest = hashlib.sha256()
    names = sorted(n for n in os.listdir(path) if n.endswith((".xml", ".bin")))
    for name in names:
        digest.update(name.encode("utf-8") + b"\0")
        with open(os.path.join(path, name), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest(), names


def _weight_types(xml_path: str) -> Dict[str, int]:
    """Bytes of constants per element type in the language model's graph (u4/i8/f16/f32...): the
    weight precision actually exported, whatever the variant is called."""
    sizes: Dict[str, int] = {}
    try:
        with open(xml_path, encoding="utf-8", errors="replace") as handle:
            for match in _CONST_RE.finditer(handle.read()):
                kind = _ELEMENT_TYPE_RE.search(match.group(1))
                size = _SIZE_RE.search(match.group(1))
                if kind and size:
                    sizes[kind.group(1)] = sizes.get(kind.group(1), 0) + int(size.group(1))
    except OSError:
        pass
    return sizes


def _mean_ms(getter: Any) -> Optional[float]:
    """A PerfMetrics MeanStdPair getter -> its mean (ms), None when this release lacks it."""
    if getter is None:
        return None
    try:
        return float(getter().mean)
    except Exception:  # older releases raise for metrics they did not collect
        return None


def _token_clock_class(genai: Any) -> Any:
    """A StreamerBase subclass, built in load() (openvino_genai is imported lazily)."""
    # releases before 2025.1 expect a bool ("stop?") from write(); later ones a StreamingStatus
    running = genai.StreamingStatus.RUNNING if hasattr(genai, "StreamingStatus") else False

    class TokenClock(genai.StreamerBase):
        """One announcement per ``write()`` (the runner stamps it); the ids it got, to count tokens per call."""

        def __init__(self, announce: Announcer) -> None:
            super().__init__()
            self._token = announce.token
            self.sizes: List[int] = []

        def write(self, token: Any) -> Any:
            size = len(token) if isinstance(token, (list, tuple)) else 1
            self._token(size)  # first, before anything else in the callback
            self.sizes.append(size)
            return running

        def end(self) -> None:
            pass

    return TokenClock


@register_backend("openvino_genai")
class OpenVINOGenAIBackend(Backend):
    option_names = ("device", "properties", "kinds")

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        super().__init__(options, model)
        device = str(options.get("device", "CPU"))
        if not _DEVICE_RE.match(device):
            raise BackendError("openvino_genai backend: device %r not understood; use CPU, GPU, GPU.N, NPU or AUTO"
                               % device)
        self.device = device
        properties = options.get("properties", {})
        if not isinstance(properties, dict) or not all(isinstance(k, str) for k in properties):
            raise BackendError("openvino_genai backend: properties must be a mapping of OpenVINO property names "
                               "to values, got %r" % (properties,))
        self.properties = dict(properties)
        kinds = options.get("kinds")
        if kinds is not None and (not isinstance(kinds, (list, tuple)) or not kinds
                                  or not set(kinds) <= {"image", "video"}):
            raise BackendError("openvino_genai backend: kinds must be a list of image and/or video, got %r"
                               % (kinds,))
        self.kinds_option = tuple(kinds) if kinds is not None else None
        self._kinds: Tuple[str, ...] = self.kinds_option or ("image", "video")
        self._ov: Any = None
        self._genai: Any = None
        self._pipe: Any = None
        self._clock_class: Any = None
        self._configs: Dict[Tuple[int, bool], Any] = {}
        self.last_answer: Dict[str, int] = {}

    def supports(self, kind: str) -> bool:
        return kind in self._kinds

    def load(self) -> LoadInfo:
        path = os.path.expanduser(self.model.path)
        if not os.path.isdir(path):
            raise ModelNotFound("openvino_genai backend: IR directory %s does not exist; export one with `%s`"
                                % (path, _EXPORT_HINT))
        if not os.path.isfile(os.path.join(path, _LANGUAGE_MODEL)):
            raise ModelNotFound("openvino_genai backend: %s is not an OpenVINO GenAI VLM directory (no %s); "
                                "export one with `%s`" % (path, _LANGUAGE_MODEL, _EXPORT_HINT))
        try:
            import numpy  # noqa: F401  (frames become ov.Tensors through numpy)
            import openvino
            import openvino_genai
        except ImportError as exc:
            raise BackendUnavailable(
                "openvino_genai backend: %s is not installed (%s); %s"
                % (getattr(exc, "name", None) or "openvino", exc, install_hint("openvino_genai"))) from exc
        self._ov, self._genai = openvino, openvino_genai
        config = read_json_file(os.path.join(path, "config.json")) or {}
        model_type = str(config.get("model_type", ""))
        if self.kinds_option is None:
            self._kinds = ("image", "video") if model_type in _VIDEO_MODEL_TYPES else ("image",)
        started = now_ns()
        try:
            self._pipe = openvino_genai.VLMPipeline(path, self.device, **self.properties)
        except RuntimeError as exc:
            message = str(exc).strip().splitlines()
            raise BackendError("openvino_genai backend: VLMPipeline could not load %s on %s: %s"
                               % (path, self.device, message[-1] if message else exc)) from exc
        load_ms = (now_ns() - started) / 1e6
        self._configs = {}
        self._clock_class = _token_clock_class(openvino_genai)
        marker = read_json_file(os.path.join(path, MARKER_NAME))
        sha, hashed = _ir_sha256(path)
        weight_types = _weight_types(os.path.join(path, _LANGUAGE_MODEL))
        ov_config = read_json_file(os.path.join(path, "openvino_config.json"))
        device_name = self.device
        try:
            device_name = "%s (%s)" % (self.device, openvino.Core().get_property(self.device.split(".")[0],
                                                                                 "FULL_DEVICE_NAME"))
        except Exception:  # AUTO/HETERO have no single device name
            pass
        if marker:
            model_id = "%s-%s random-weight (seed %s), OpenVINO IR" % (
                marker.get("arch", model_type), marker.get("preset", "?"), marker.get("seed", "?"))
        else:
            model_id = os.path.basename(os.path.normpath(os.path.abspath(path)))
        # the constant type holding most bytes of the language model, e.g. u4 for an int4 NNCF export
        dtype = max(weight_types, key=lambda k: weight_types[k]) if weight_types else "unknown"
        return LoadInfo(
            engine="OpenVINO GenAI %s / OpenVINO %s" % (openvino_genai.__version__, openvino.get_version()),
            engine_versions={"openvino": openvino.get_version(), "openvino_genai": openvino_genai.__version__},
            model_id=model_id,
            model_sha256=sha,
            weights=str(marker.get("weights", "random")) if marker else "real",
            dtype=dtype,
            accelerator=device_name,
            extra={
                "path": os.path.abspath(path),
                "device": self.device,
                "properties": self.properties,
                "model_type": model_type,
                "kinds": list(self._kinds),
                "weight_bytes_by_element_type": weight_types,
                "openvino_config": ov_config,
                "sha256_files": hashed,
                "marker": marker,
                "quantization": read_quantization_info(path),
                "pipeline_load_ms": load_ms,
                "decoding": "greedy, min_new_tokens = max_new_tokens, ignore_eos",
                "phases_observed": "token times only (streamer); preprocessing, vision encoding and prefill "
                                   "happen inside generate(): the engine's own durations are in engine",
                "video_fps": "not passed: GenAI's videos= takes frames only",
            },
        )

    def _generation_config(self, n_tokens: int, fixed_length: bool = True) -> Any:
        """Greedy; fixed length (run) or up to ``n_tokens``, ending at EOS (answer). Built once
        per (length, mode), off the clock."""
        key = (n_tokens, fixed_length)
        config = self._configs.get(key)
        if config is None:
            config = self._pipe.get_generation_config()
            config.do_sample = False
            config.num_beams = 1
            config.repetition_penalty = 1.0
            config.max_new_tokens = n_tokens
            config.min_new_tokens = n_tokens if fixed_length else 0
            config.ignore_eos = fixed_length
            self._configs[key] = config
        return config

    def _media(self, inputs: WorkloadInputs, what: str) -> Dict[str, Any]:
        """Checks shared by run() and answer(), then the frames as the pipeline's keyword argument:
        ``images=[HxWx3]`` or ``videos=[NxHxWx3]`` uint8 tensors."""
        if self._pipe is None:
            raise BackendError("openvino_genai backend: %s() before load()" % what)
        if not self.supports(inputs.kind):
            raise UnsupportedWorkload("openvino_genai backend cannot %s %s workload %r with this model "
                                      "(kinds: %s)" % (what, inputs.kind, inputs.name, ", ".join(self._kinds)))
        import numpy as np

        ov = self._ov
        arrays = [np.frombuffer(f.rgb, dtype=np.uint8).reshape(f.height, f.width, 3) for f in inputs.frames]
        if inputs.kind == "image":
            return {"images": [ov.Tensor(np.ascontiguousarray(arrays[0]))]}
        return {"videos": [ov.Tensor(np.ascontiguousarray(np.stack(arrays)))]}

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
        announce: Optional[Announcer] = None,
    ) -> RawTiming:
        # raw bytes -> tensors before the clock starts: decoding is not the engine's work
        media = self._media(inputs, "run")
        config = self._generation_config(generation.output_tokens)
        announce = announce if announce is not None else Announcer(on_phase)
        clock = self._clock_class(announce)
        announce.start()
        result = self._pipe.generate(inputs.prompt, generation_config=config, streamer=clock, **media)
        t_end = announce.now()
        return self._timing(inputs, generation, result, clock, announce, t_end)

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """Greedy answer to one accuracy request: stops at EOS or after ``max_new_tokens``."""
        media = self._media(inputs, "answer")
        config = self._generation_config(max_new_tokens, fixed_length=False)
        result = self._pipe.generate(prompt, generation_config=config, **media)
        metrics = result.perf_metrics
        self.last_answer = {"num_input_tokens": int(metrics.get_num_input_tokens()),
                            "num_generated_tokens": int(metrics.get_num_generated_tokens())}
        texts = list(getattr(result, "texts", []) or [])
        return str(texts[0]).strip() if texts else ""

    def _timing(self, inputs: WorkloadInputs, generation: GenerationSpec, result: Any, clock: Any,
                announce: Announcer, t_end: int) -> RawTiming:
        warnings: List[str] = []
        metrics = result.perf_metrics
        token_times = announce.token_times  # tokens delivered together share their arrival stamp
        if any(size > 1 for size in clock.sizes):
            warnings.append("the engine delivered several tokens in one streamer call; they share a timestamp")
        n_engine = int(metrics.get_num_generated_tokens())
        if n_engine != len(token_times):
            warnings.append("the engine counted %d generated tokens, the streamer saw %d" % (n_engine, len(token_times)))
        if len(token_times) != generation.output_tokens:
            warnings.append("asked for %d output tokens, got %d" % (generation.output_tokens, len(token_times)))
        engine: Dict[str, Any] = {}
        for name, key in _PERF_METRICS:
            value = _mean_ms(getattr(metrics, "get_" + name, None))
            if value is not None:
                engine[key] = value
        for name, key in (("get_ttft", "ttft_std_ms"), ("get_tpot", "tpot_std_ms")):
            try:
                engine[key] = float(getattr(metrics, name)().std)
            except Exception:
                pass
        engine["num_input_tokens"] = int(metrics.get_num_input_tokens())
        engine["num_generated_tokens"] = n_engine
        try:
            engine["load_time_ms"] = float(metrics.get_load_time())
        except Exception:
            pass
        engine["generate_call_ms"] = (t_end - announce.t_start) / 1e6  # ours, around the call
        texts = list(getattr(result, "texts", []) or [])
        return announce.timing(
            n_input_tokens=engine["num_input_tokens"],
            n_visual_tokens=None,  # GenAI does not expose it
            n_output_tokens=len(token_times),
            output_text=texts[0] if texts else "",
            peak_accel_mb=None,
            peak_accel_source=("none (CPU: model memory is host memory)" if self.device.startswith("CPU") else
                               "none: OpenVINO reports no device memory peak (the iGPU shares system RAM: "
                               "see system memory telemetry)"),
            engine=engine,
            warnings=warnings,
        )

    def close(self) -> None:
        self._pipe = None
        self._clock_class = None
        self._configs = {}
