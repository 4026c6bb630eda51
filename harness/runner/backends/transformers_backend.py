"""The `transformers` backend: a Hugging Face VLM (Qwen2.5-VL / Qwen2-VL) on CPU or CUDA.

Every phase comes from the single ``generate()`` call that produced the tokens:
  preprocess     start -> preprocess end: chat template + processor (resize, normalise,
                 tokenize, placeholder expansion) + copy to the device
  vision encode  a forward pre-hook and a forward hook on the vision tower (Qwen's ``visual``
                 includes the patch merger, i.e. the projector)
  tokens         a streamer whose ``put()`` is called by generate() once with the prompt, then
                 once per selected token: one ``announce.token()`` per token
Each boundary is announced to the runner's Announcer, which stamps it (base.py).
Decoding is greedy with ``min_new_tokens == max_new_tokens`` so the output length is fixed and
EOS is ignored. On CUDA the device is synchronised before every timestamp.

Options:
  device:              cpu | cuda | cuda:N | auto (cuda when available)       default auto
  dtype:               float32 | bfloat16 | float16 | auto (the checkpoint's)  default auto
  attn_implementation: eager | sdpa | flash_attention_2 | flash_attention_3 | flex_attention
                       default: transformers' choice
  threads:             torch intra-op threads (CPU)                           default: torch's

Standard library only at import time (Python >= 3.8): torch and transformers load in ``load()``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional

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


_DEVICES = ("cpu", "cuda", "auto")
_DTYPES = ("float32", "bfloat16", "float16", "auto")
_ATTN = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
# Weight files that identify a checkpoint (model_sha256 is computed over these, in name order).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_MAKE_HINT = "bench models make --arch qwen2.5-vl --preset small --out DIR"


def _read_marker(path: str) -> Optional[Dict[str, Any]]:
    marker = read_json_file(os.path.join(path, MARKER_NAME))
    if marker is not None and "error" in marker and "weights" not in marker:
        # a marker we cannot read still says "made by us": never label such weights real
        return {"weights": "random", "error": "marker %s" % marker["error"]}
    return marker


def weights_sha256(path: str) -> "tuple[str, List[str]]":
    """sha256 over the weight files of a model directory: for each file in name order, its name,
    a NUL byte, then its bytes. Returns the digest and the files it covered."""
    digest = hashlib.sha256()
    names = sorted(n for n in os.listdir(path) if n.endswith(_WEIGHT_SUFFIXES))
    for name in names:
        digest.update(name.encode("utf-8") + b"\0")
        with open(os.path.join(path, name), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest(), names


def _vision_hooks(announce: Announcer, calls: List[str], sync: Any) -> "tuple[Any, Any]":
    """A forward pre-hook and a forward hook that announce the vision phase (after a device sync
    on CUDA); ``calls`` counts them (the first start and the last end bound the phase)."""

    def vision_in(module: Any, args: Any) -> None:
        if sync is not None:
            sync()
        announce.phase_start("vision_encode")
        calls.append("in")

    def vision_out(module: Any, args: Any, output: Any) -> None:
        if sync is not None:
            sync()
        announce.phase_end("vision_encode")
        calls.append("out")

    return vision_in, vision_out


_STREAMER_CLASS: Any = None


def _token_clock_class() -> Any:
    """A BaseStreamer subclass (built on first use: transformers is imported lazily)."""
    global _STREAMER_CLASS
    if _STREAMER_CLASS is not None:
        return _STREAMER_CLASS
    from transformers.generation.streamers import BaseStreamer

    class TokenClock(BaseStreamer):
        """Announces every ``put()`` after the first (the prompt) as one token.

        ``put`` is rebound per instance so the steady state is one attribute lookup and one
        announcer call; the prompt call (once) swaps it in.
        """

        def __init__(self, announce: Announcer, sync: Any = None) -> None:
            self.puts = 0  # calls seen, the prompt's included
            token = announce.token
            if sync is None:
                def tick(value: Any) -> None:
                    token()
            else:
                def tick(value: Any) -> None:
                    sync()  # tokens arrive via .cpu(), already synchronous; cheap insurance
                    token()

            def prompt(value: Any) -> None:  # generate() hands the prompt over first: not a token
                self.puts += 1
                self.put = tick

            self.put = prompt

        def put(self, value: Any) -> None:  # replaced per instance in __init__
            raise AssertionError("rebound in __init__")

        def end(self) -> None:
            pass

    _STREAMER_CLASS = TokenClock
    return TokenClock


@register_backend("transformers")
class TransformersBackend(Backend):
    option_names = ("device", "dtype", "attn_implementation", "threads")

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        super().__init__(options, model)
        device = str(options.get("device", "auto"))
        if device not in _DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise BackendError(
                "transformers backend: device %r not understood; use one of %s or cuda:N"
                % (device, ", ".join(_DEVICES))
            )
        dtype = str(options.get("dtype", "auto"))
        if dtype not in _DTYPES:
            raise BackendError(
                "transformers backend: dtype %r not understood; use one of %s" % (dtype, ", ".join(_DTYPES))
            )
        attn = options.get("attn_implementation")
        if attn is not None and attn not in _ATTN:
            raise BackendError(
                "transformers backend: attn_implementation %r not understood; use one of %s"
                % (attn, ", ".join(_ATTN))
            )
        threads = options.get("threads")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise BackendError("transformers backend: threads must be a positive integer, got %r" % (threads,))
        self.device_option = device
        self.dtype_option = dtype
        self.attn = attn
        self.threads = threads
        self._torch: Any = None
        self._model: Any = None
        self._processor: Any = None
        self._device: Any = None
        self._cuda = False
        self._gen_base: Any = None
        self._gen_configs: Dict[int, Any] = {}
        self._vision_start: Any = None
        self._vision_end: Any = None
        self._token_ids: Dict[str, Optional[int]] = {}
        self._kinds: Dict[str, str] = {}  # kind -> why it is unsupported ("" = supported)
        self._threads_before: Optional[int] = None

    # -- loading ----------------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            "transformers backend: %s is not installed (%s); %s"
            % (getattr(exc, "name", None) or "an engine package", exc, install_hint("transformers"))
        )

    def load(self) -> LoadInfo:
        path = os.path.expanduser(self.model.path)
        if not os.path.exists(path):
            raise ModelNotFound(
                "transformers backend: model directory %s does not exist; build a random-weight "
                "model with `%s` or point the device's model path at a Hugging Face model directory"
                % (path, _MAKE_HINT)
            )
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelNotFound(
                "transformers backend: %s is not a Hugging Face model directory (no config.json); "
                "build one with `%s`" % (path, _MAKE_HINT)
            )
        try:
            import torch
            import transformers
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise self._unavailable(exc) from exc
        self._torch = torch
        if self.threads:
            # process-wide in torch: remembered so close() gives the process back as it was
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        device = self.device_option
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                "transformers backend: device %r requested but CUDA is not available to torch %s; "
                "use device: cpu (or auto)" % (device, torch.__version__)
            )
        self._device = torch.device(device)
        self._cuda = self._device.type == "cuda"
        dtype: Any = "auto" if self.dtype_option == "auto" else getattr(torch, self.dtype_option)
        kwargs: Dict[str, Any] = {"dtype": dtype, "local_files_only": True}
        if self.attn:
            kwargs["attn_implementation"] = self.attn
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        except ImportError as exc:  # e.g. torchvision, needed by the Qwen video processor
            raise self._unavailable(exc) from exc
        from transformers.utils import logging as hf_logging

        # no progress bar in the runner's log: loading is reported by the runner's own events
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model.to(self._device)
        model.eval()
        self._model = model
        self._processor = processor
        self._find_vision(model)
        self._check_kinds(model, processor)
        self._prepare_generation(model, processor)

        marker = _read_marker(path)
        sha, hashed = weights_sha256(path)
        versions = {"transformers": transformers.__version__, "torch": torch.__version__}
        for name in ("torchvision", "tokenizers", "safetensors"):
            try:
                versions[name] = __import__(name).__version__
            except Exception:  # optional: only recorded when importable
                pass
        param = next(model.parameters())
        config = model.config
        if marker:
            model_id = "%s-%s random-weight (seed %s)" % (
                marker.get("arch", config.model_type), marker.get("preset", "?"), marker.get("seed", "?"))
        else:  # the directory name, e.g. Qwen2.5-VL-3B-Instruct (the full path is in extra)
            model_id = os.path.basename(os.path.normpath(os.path.abspath(path)))
        if self._cuda:
            accelerator = "%s (%s)" % (self._device, torch.cuda.get_device_name(self._device))
        else:
            accelerator = "cpu"
        return LoadInfo(
            engine="transformers %s / torch %s" % (transformers.__version__, torch.__version__),
            engine_versions=versions,
            model_id=model_id,
            model_sha256=sha,
            weights=str(marker.get("weights", "random")) if marker else "real",
            dtype=str(param.dtype).replace("torch.", ""),
            accelerator=accelerator,
            extra={
                "path": os.path.abspath(path),
                "model_type": config.model_type,
                "model_class": type(model).__name__,
                "n_parameters": sum(p.numel() for p in model.parameters()),
                "attn_implementation": getattr(config, "_attn_implementation", None),
                "threads": torch.get_num_threads(),
                "sha256_files": hashed,
                "marker": marker,
                "quantization": read_quantization_info(path),
                "decoding": "greedy, min_new_tokens = max_new_tokens, repetition_penalty 1.0",
                "unsupported": {k: v for k, v in self._kinds.items() if v},
            },
        )

    def _find_vision(self, model: Any) -> None:
        """The modules whose entry and exit bound the vision phase (tower through projector)."""
        def find(name: str) -> Any:
            # explicit None tests: an nn.Module container can be falsy
            for owner in (getattr(model, "model", None), model):
                found = getattr(owner, name, None) if owner is not None else None
                if found is not None:
                    return found
            return None

        visual = find("visual")
        if visual is not None:  # Qwen2-VL / Qwen2.5-VL: the merger is inside `visual`
            self._vision_start = self._vision_end = visual
            return
        tower = find("vision_tower")
        projector = find("multi_modal_projector")
        if tower is not None:  # LLaVA-style: tower, then a separate projector
            self._vision_start = tower
            self._vision_end = projector if projector is not None else tower

    def _check_kinds(self, model: Any, processor: Any) -> None:
        config = model.config
        self._token_ids = {
            "image": getattr(config, "image_token_id", None),
            "video": getattr(config, "video_token_id", None),
        }
        name = type(model).__name__
        self._kinds["image"] = "" if getattr(processor, "image_processor", None) is not None else (
            "model %s has no image processor" % name)
        if getattr(processor, "video_processor", None) is None:
            self._kinds["video"] = "model %s has no video processor (no video path)" % name
        elif self._token_ids["video"] is None or not hasattr(model, "get_video_features"):
            self._kinds["video"] = "model %s has no video path (no video token / video features)" % name
        else:
            self._kinds["video"] = ""

    def _prepare_generation(self, model: Any, processor: Any) -> None:
        import copy

        # Start from the checkpoint's config (eos/pad ids) but force plain greedy: real
        # checkpoints ship sampling settings and a repetition penalty that would change the work
        # done per token and make boards incomparable. Neutral values, not None: generate()
        # fills None fields back in from the checkpoint's generation_config.
        config = copy.deepcopy(model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        config.repetition_penalty = 1.0
        config.temperature = 1.0
        config.top_p = 1.0
        config.top_k = 50
        if config.pad_token_id is None:
            config.pad_token_id = getattr(processor.tokenizer, "pad_token_id", None) or config.eos_token_id
        self._gen_base = config
        self._gen_configs = {}

    def generation_config(self, n_tokens: int) -> Any:
        """The greedy config for a fixed output length, built once per length (off the clock)."""
        config = self._gen_configs.get(n_tokens)
        if config is None:
            import copy

            config = copy.deepcopy(self._gen_base)
            # min == max: EOS is masked until the last token, so every board does the same work
            config.max_new_tokens = n_tokens
            config.min_new_tokens = n_tokens
            self._gen_configs[n_tokens] = config
        return config

    @property
    def hf_model(self) -> Any:
        """The loaded transformers model (None before load); for tools that compare against it."""
        return self._model

    @property
    def hf_processor(self) -> Any:
        """The loaded processor (None before load)."""
        return self._processor

    def supports(self, kind: str) -> bool:
        if kind not in ("image", "video"):
            return False
        if self._model is None:  # before load() we cannot know; the runner asks after load()
            return True
        return not self._kinds.get(kind, "unknown kind")

    # -- one query ----------------------------------------------------------------------------
    def _media(self, inputs: WorkloadInputs) -> Any:
        import numpy as np

        arrays = [
            np.frombuffer(f.rgb, dtype=np.uint8).reshape(f.height, f.width, 3).copy()  # writable
            for f in inputs.frames
        ]
        return arrays[0] if inputs.kind == "image" else np.stack(arrays)

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
        announce: Optional[Announcer] = None,
    ) -> RawTiming:
        if self._model is None:
            raise BackendError("transformers backend: run() before load()")
        if not self.supports(inputs.kind):
            raise UnsupportedWorkload(
                "transformers backend cannot run %s workload %r: %s"
                % (inputs.kind, inputs.name, self._kinds.get(inputs.kind) or "unknown workload kind")
            )
        torch = self._torch
        model = self._model
        processor = self._processor
        n_tokens = generation.output_tokens
        kind = inputs.kind
        media = self._media(inputs)  # raw bytes -> arrays: before the clock starts
        messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": inputs.prompt}]}]
        if kind == "image":
            media_kwargs: Dict[str, Any] = {"images": [media]}
        else:
            # one video of all its frames (not N images): the processor must not resample them,
            # and the real frame rate sets Qwen's temporal positions (second_per_grid_ts)
            media_kwargs = {
                "videos": [media],
                "do_sample_frames": False,
                "video_metadata": [{"fps": float(inputs.fps), "total_num_frames": len(inputs.frames),
                                    "height": media.shape[1], "width": media.shape[2]}],
            }
        sync = torch.cuda.synchronize if self._cuda else None
        announce = announce if announce is not None else Announcer(on_phase)
        vision_calls: List[str] = []
        vision_in, vision_out = _vision_hooks(announce, vision_calls, sync)
        handles = []
        if self._vision_start is not None:
            handles.append(self._vision_start.register_forward_pre_hook(vision_in))
            handles.append(self._vision_end.register_forward_hook(vision_out))
        clock = _token_clock_class()(announce, sync=sync)
        gen_config = self.generation_config(n_tokens)
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(self._device)
        try:
            # no inference_mode/no_grad wrapper of our own: generate() sets its own, and the
            # processor builds no autograd graph; the timed path is what a bare call does
            if sync is not None:
                sync()
            announce.start()
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            batch = processor(text=[text], return_tensors="pt", **media_kwargs).to(self._device)
            if sync is not None:
                sync()
            announce.phase_end("preprocess")
            output = model.generate(**batch, generation_config=gen_config, streamer=clock)
        finally:
            for handle in handles:
                handle.remove()
        return self._timing(inputs, batch, output, announce, len(vision_calls), n_tokens)

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """Greedy answer to one request, stopping at EOS: the accuracy path (no timing hooks)."""
        if self._model is None:
            raise BackendError("transformers backend: answer() before load()")
        if not self.supports(inputs.kind):
            raise UnsupportedWorkload(
                "transformers backend cannot answer %s requests: %s"
                % (inputs.kind, self._kinds.get(inputs.kind) or "unknown kind")
            )
        import copy

        media = self._media(inputs)
        messages = [{"role": "user", "content": [{"type": inputs.kind}, {"type": "text", "text": prompt}]}]
        text = self._processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        key = "images" if inputs.kind == "image" else "videos"
        extra: Dict[str, Any] = {} if inputs.kind == "image" else {"do_sample_frames": False}
        batch = self._processor(text=[text], return_tensors="pt", **{key: [media]}, **extra).to(self._device)
        config = self._gen_configs.get(-max_new_tokens)
        if config is None:
            # same greedy settings as run(), without min_new_tokens: EOS ends the answer
            config = copy.deepcopy(self._gen_base)
            config.max_new_tokens = max_new_tokens
            config.min_new_tokens = 0
            self._gen_configs[-max_new_tokens] = config  # negative keys: never a timed config
        output = self._model.generate(**batch, generation_config=config)
        generated = output[0, int(batch["input_ids"].shape[1]):]
        return str(self._processor.tokenizer.decode(generated, skip_special_tokens=True)).strip()

    def _timing(
        self,
        inputs: WorkloadInputs,
        batch: Any,
        output: Any,
        announce: Announcer,
        n_vision_hooks: int,
        n_requested: int,
    ) -> RawTiming:
        """Counts and text, all derived after the clock stopped."""
        warnings: List[str] = []
        input_ids = batch["input_ids"][0]
        n_input = int(input_ids.shape[0])
        generated = output[0, n_input:]
        n_output = int(generated.shape[0])
        n_streamed = len(announce.token_times)
        if n_output != n_streamed:
            warnings.append("generate returned %d tokens but the streamer saw %d" % (n_output, n_streamed))
        if n_output != n_requested:
            warnings.append("asked for %d output tokens, got %d" % (n_requested, n_output))
        pad_id = self._token_ids.get(inputs.kind)
        n_visual = int((input_ids == pad_id).sum()) if pad_id is not None else None
        if not n_vision_hooks:
            warnings.append("the vision tower was not observed (no hookable vision module found)")
        grid_key = "image_grid_thw" if inputs.kind == "image" else "video_grid_thw"
        engine: Dict[str, Any] = {"vision_calls": n_vision_hooks // 2}
        if grid_key in batch:
            engine[grid_key] = batch[grid_key].tolist()
        if "second_per_grid_ts" in batch:
            engine["second_per_grid_ts"] = [float(x) for x in batch["second_per_grid_ts"]]
        if self._cuda:
            peak: Optional[float] = self._torch.cuda.max_memory_allocated(self._device) / (1024.0 * 1024.0)
            source = "torch.cuda.max_memory_allocated (tensors only, excludes the CUDA context), per query"
        else:
            peak, source = None, "none (CPU: model memory is host memory)"
        text = self._processor.tokenizer.decode(generated, skip_special_tokens=True)
        return announce.timing(
            n_input_tokens=n_input,
            n_visual_tokens=n_visual,
            n_output_tokens=n_output,
            output_text=text,
            peak_accel_mb=peak,
            peak_accel_source=source,
            engine=engine,
            warnings=warnings,
        )

    def close(self) -> None:
        self._model = None
        self._processor = None
        self._vision_start = self._vision_end = None
        if self._torch is not None:
            if self._cuda:
                self._torch.cuda.empty_cache()
            if self._threads_before is not None:
                self._torch.set_num_threads(self._threads_before)
                self._threads_before = None
