"""The `llamacpp` backend: llama.cpp's multimodal CLI (``llama-mtmd-cli``) with a GGUF + mmproj.

Why the binary and not llama-cpp-python: the binary is what llama.cpp builds on every board
(CUDA on Jetson / RTX, CPU elsewhere) with no Python wheel to compile, and the runner stays
standard-library only. Each query is one single-turn run (``-p`` + ``--image``): the model loads
first, then the CLI logs its "experimental CLI" warning and turns to the image. That line's arrival
is our ``t_start``, so model loading is never timed; every later line and token is timestamped as
it arrives (logs on stderr, tokens on stdout, read separately).

What comes from where:
  preprocess     t_start -> "encoding image slice" (image file load, resize, tokenize)
  vision encode  "encoding image slice" -> last "image slice encoded in N ms" (CLIP + projector)
  prefill        -> first token (image-token decode + text decode)
  token times    arrival of each token write on stdout, used when there is one write per
                 token the engine counted (``eval ... runs`` + 1: the last decode is not synchronised
                 before the perf print)
  input tokens   ``prompt eval time = ... / N tokens`` (text and image tokens)
  visual tokens  the sum of ``n_tokens_batch`` over the image batches
  engine         slice encode and image decode times, llama_perf figures (load, prompt eval,
                 eval, total)
Greedy (``--temp 0``), fixed length (``-n N --ignore-eos``). Video: llama.cpp's mtmd takes frames
as separate images, which is not the model's video path, so video workloads are refused.

``answer()`` (accuracy requests) runs the same command with ``-n max_new_tokens`` and without
``--ignore-eos``, so EOS ends the answer; the answer is the token text on stdout (the logs are on
stderr, read separately), stripped.

Lost output: the CLI prints everything - tokens included - through llama.cpp's log thread, whose
queue is deliberately never flushed at exit (llama.cpp issue #22142, PR #25504). When the compute
threads take every CPU, that thread gets no time and a run exits with code 0 having printed
neither its answer nor its perf lines: 18 of 30 runs of the canary with ``-t 2`` on a 2-CPU
machine, 0 of 30 with ``-t 1``. So a run counts only when its last line, the perf print's
``total time``, arrived (everything is printed in order, so nothing before it was lost); a run
without it is re-run (``lost_output_retries`` times, recorded in the measurement's warnings) and
then reported as an error, never as an empty answer. The default thread count leaves one CPU to
that thread (CPUs - 1); ``threads`` set to every CPU is allowed and warned about at load.

Model variants: the variant's path is a ``.gguf`` file, or a directory holding one model
``.gguf`` and one ``mmproj*.gguf`` (Q4/Q8/F16 variants are different files).

Options:
  cli            path to llama-mtmd-cli (default: found on PATH)
  mmproj         the projector GGUF (default: the mmproj*.gguf beside the model)
  threads        -t (default: the CPUs this process may use, minus one; see "Lost output")
  gpu_layers     -ngl (CUDA builds)       ctx_size  -c
  lost_output_retries  re-runs of a run whose output was lost at exit (default 3)
  extra_args     appended to the command line
  token_stream   per_token (default) or none, as for axllm
  pty            give the CLI terminals for its output (default true)
  load_timeout_s how long loading may take before the query starts (default 600)

Standard library only (Python >= 3.8).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs
from . import register_backend
from ._axllm_io import ConsoleProcess, ProcessExited, png_bytes
from ._axllm_parse import Chunk
from ._llamacpp_parse import ParsedQuery, parse_query
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
)

_TOKEN_STREAMS = ("per_token", "none")
_ANSWER_TIMEOUT_S = GenerationSpec(output_tokens=2).timeout_s  # the runner's default per query
_BUILD_HINT = ("build llama.cpp (cmake -B build && cmake --build build --target llama-mtmd-cli) and set the "
               "backend's cli option, or put llama-mtmd-cli on PATH")


def _positive_int(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BackendError("llamacpp backend: %s must be a non-negative integer, got %r" % (name, value))
    return value


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@register_backend("llamacpp")
class LlamaCppBackend(Backend):
    option_names = ("cli", "mmproj", "threads", "gpu_layers", "ctx_size", "extra_args", "token_stream", "pty",
                    "load_timeout_s", "lost_output_retries")

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        super().__init__(options, model)
        self.cli = str(options.get("cli", "llama-mtmd-cli"))
        self.mmproj_option = options.get("mmproj")
        self.threads = _positive_int(options.get("threads"), "threads")
        retries = _positive_int(options.get("lost_output_retries", 3), "lost_output_retries")
        self.lost_output_retries = 3 if retries is None else retries
        self.lost_output_reruns = 0  # re-runs so far (answers have no warnings list to carry them)
        self.gpu_layers = _positive_int(options.get("gpu_layers"), "gpu_layers")
        self.ctx_size = _positive_int(options.get("ctx_size"), "ctx_size")
        extra = options.get("extra_args", [])
        if not isinstance(extra, (list, tuple)) or not all(isinstance(a, (str, int, float)) for a in extra):
            raise BackendError("llamacpp backend: extra_args must be a list of strings, got %r" % (extra,))
        self.extra_args = [str(a) for a in extra]
        self.token_stream = options.get("token_stream", "per_token")
        if self.token_stream not in _TOKEN_STREAMS:
            raise BackendError("llamacpp backend: token_stream %r not understood; use per_token or none"
                               % (self.token_stream,))
        self.use_pty = bool(options.get("pty", True))
        timeout = options.get("load_timeout_s", 600)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise BackendError("llamacpp backend: load_timeout_s must be a positive number, got %r" % (timeout,))
        self.load_timeout_s = float(timeout)
        self._cli_path: Optional[str] = None
        self._model_file = ""
        self._mmproj = ""
        self._tmp: Optional[str] = None
        self._media: Dict[str, str] = {}

    def supports(self, kind: str) -> bool:
        return kind == "image"

    def _files(self) -> "Tuple[str, str]":
        path = os.path.expanduser(self.model.path)
        if not os.path.exists(path):
            raise ModelNotFound("llamacpp backend: model %s does not exist; convert one with llama.cpp's "
                                "convert_hf_to_gguf.py (and --mmproj for the projector)" % path)
        if os.path.isdir(path):
            ggufs = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
            projectors = [n for n in ggufs if n.startswith("mmproj")]
            models = [n for n in ggufs if not n.startswith("mmproj")]
            if len(models) != 1:
                raise ModelNotFound("llamacpp backend: %s should hold exactly one model .gguf (besides mmproj*.gguf), "
                                    "found %s" % (path, ", ".join(models) or "none"))
            model_file = os.path.join(path, models[0])
        else:
            model_file, projectors = path, sorted(n for n in os.listdir(os.path.dirname(path) or ".")
                                                  if n.startswith("mmproj") and n.endswith(".gguf"))
            path = os.path.dirname(path) or "."
        if self.mmproj_option:
            mmproj = os.path.expanduser(str(self.mmproj_option))
        elif len(projectors) == 1:
            mmproj = os.path.join(path, projectors[0])
        else:
            raise ModelNotFound("llamacpp backend: no single mmproj*.gguf beside %s (found %s); set the mmproj option"
                                % (model_file, ", ".join(projectors) or "none"))
        if not os.path.isfile(mmproj):
            raise ModelNotFound("llamacpp backend: projector %s does not exist" % mmproj)
        return model_file, mmproj

    def load(self) -> LoadInfo:
        self._model_file, self._mmproj = self._files()
        cli = os.path.expanduser(self.cli)
        resolved = shutil.which(cli) if os.sep not in cli else (cli if os.access(cli, os.X_OK) else None)
        if not resolved:
            raise BackendUnavailable("llamacpp backend: %s was not found or is not executable; %s" % (cli, _BUILD_HINT))
        self._cli_path = os.path.abspath(resolved)
        version = "unknown"
        try:
            proc = subprocess.run([self._cli_path, "--version"], capture_output=True, text=True, timeout=60)
            lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if "version" in ln]
            version = lines[0] if lines else version
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._tmp = tempfile.mkdtemp(prefix="llamacpp-bench-")
        marker_dir = os.path.dirname(self._model_file)
        marker: Dict[str, Any] = {}
        marker_path = os.path.join(marker_dir, MARKER_NAME)
        if os.path.isfile(marker_path):
            import json

            try:
                with open(marker_path, encoding="utf-8") as handle:
                    loaded = json.load(handle)
                marker = loaded if isinstance(loaded, dict) else {"weights": "random"}
            except (OSError, ValueError):
                marker = {"weights": "random"}
        digest = hashlib.sha256()
        for name in (self._model_file, self._mmproj):
            digest.update(os.path.basename(name).encode("utf-8") + b"\0" + _sha256(name).encode("ascii"))
        accelerator = "cpu" if not self.gpu_layers else "gpu (-ngl %d)" % self.gpu_layers
        cpus = _usable_cpus()
        threads_note = "set" if self.threads else "default: %d usable CPUs - 1" % cpus
        if not self.threads:
            self.threads = max(1, cpus - 1)
        elif self.threads >= cpus:
            threads_note = ("set to %d on %d usable CPUs: llama.cpp's log thread gets no CPU while the model runs, "
                            "and runs lose their output at exit (llama.cpp #22142); each such run is re-run up to "
                            "%d times, then reported as an error" % (self.threads, cpus, self.lost_output_retries))
        return LoadInfo(
            engine="llama.cpp llama-mtmd-cli (%s)" % version,
            engine_versions={"llama.cpp": version, "llama-mtmd-cli sha256": _sha256(self._cli_path)},
            model_id=os.path.basename(self._model_file),
            model_sha256=digest.hexdigest(),
            weights=str(marker.get("weights", "random")) if marker else "real",
            dtype=str(marker.get("gguf_type", self.model.quantization or "see GGUF")),
            accelerator=accelerator,
            extra={
                "cli": self._cli_path,
                "model_file": self._model_file,
                "mmproj": self._mmproj,
                "threads": self.threads,
                "threads_note": threads_note,
                "lost_output_retries": self.lost_output_retries,
                "gpu_layers": self.gpu_layers,
                "token_stream": self.token_stream,
                "marker": marker or None,
                "decoding": "greedy (--temp 0), -n N --ignore-eos; answers: -n max_new_tokens, EOS honoured",
                "process": "one single-turn llama-mtmd-cli run per query; loading is before t_start",
                "unsupported": {"video": "llama.cpp's mtmd takes frames as separate images, not the model's video "
                                         "path"},
            },
        )

    def _media_path(self, inputs: WorkloadInputs) -> str:
        path = self._media.get(inputs.input_sha256)
        if path is None:
            assert self._tmp is not None
            frame = inputs.frames[0]
            path = os.path.join(self._tmp, "image-%s.png" % inputs.input_sha256[:12])
            with open(path, "wb") as handle:
                handle.write(png_bytes(frame.width, frame.height, frame.rgb))
            self._media[inputs.input_sha256] = path
        return path

    def _argv(self, image: str, prompt: str, n_tokens: int, ignore_eos: bool = True) -> List[str]:
        assert self._cli_path is not None
        argv = [self._cli_path, "-m", self._model_file, "--mmproj", self._mmproj, "--image", image, "-p", prompt,
                "-n", str(n_tokens)] + (["--ignore-eos"] if ignore_eos else []) + [
                "--temp", "0", "--seed", "0",
                # the model's own chat template (as transformers and OpenVINO apply it: same token
                # counts), and log level 4, without which this CLI prints no perf figures
                "--jinja", "-lv", "4"]
        if self.threads:
            argv += ["-t", str(self.threads)]
        if self.gpu_layers is not None:
            argv += ["-ngl", str(self.gpu_layers)]
        if self.ctx_size:
            argv += ["-c", str(self.ctx_size)]
        return argv + self.extra_args

    def _image(self, inputs: WorkloadInputs, what: str) -> str:
        """Checks shared by run() and answer(), then the image file given to the CLI."""
        if self._cli_path is None:
            raise BackendError("llamacpp backend: %s() before load()" % what)
        if not self.supports(inputs.kind):
            raise UnsupportedWorkload("llamacpp backend cannot %s %s workload %r: llama.cpp's mtmd takes frames as "
                                      "separate images, not the model's video path" % (what, inputs.kind, inputs.name))
        return self._media_path(inputs)

    def _execute(self, argv: List[str], timeout_s: float, announce: Optional[Announcer] = None) -> "Tuple[ParsedQuery, int]":
        """One single-turn CLI run to its exit, every output chunk stamped on arrival by the
        runner's clock (``announce.now``), then parsed; re-run while its output was lost at exit
        (module docstring, "Lost output"). Returns the parsed run and how many re-runs it took."""
        for attempt in range(self.lost_output_retries + 1):
            query, code, tail = self._execute_once(argv, timeout_s, announce)
            if query.legacy_cli is not None and query.t_ready is None:
                raise BackendError("llamacpp backend: %s (%s exited with code %s)" % (query.legacy_cli, argv[0], code))
            if code == 0 and "total_ms" in query.perf and query.t_ready is not None:
                return query, attempt
            if code != 0:
                break
            if attempt < self.lost_output_retries:
                self.lost_output_reruns += 1
        lost = code == 0
        raise BackendError("llamacpp backend: llama-mtmd-cli exited with code %s%s%s; its last output:\n%s"
                           % (code, " (%s)" % "; ".join(query.errors) if query.errors else "",
                              " but its output ended before the perf print in %d of %d runs (llama.cpp's log "
                              "thread loses what it has not printed at exit, llama.cpp #22142: use fewer threads "
                              "than CPUs)" % (attempt + 1, attempt + 1) if lost else "", tail))

    def _execute_once(self, argv: List[str], timeout_s: float,
                      announce: Optional[Announcer]) -> "Tuple[ParsedQuery, Optional[int], str]":
        try:
            proc = ConsoleProcess(argv, cwd=self._tmp, use_pty=self.use_pty, split_stderr=True)
        except OSError as exc:
            raise BackendUnavailable("llamacpp backend: cannot start %s: %s" % (argv[0], exc)) from exc
        proc.stamp = (announce if announce is not None else Announcer()).now
        chunks: List[Chunk] = []
        try:
            chunks = proc.read_until(lambda text: False, timeout_s)
        except ProcessExited as exc:  # the normal end: the CLI exits after one answer
            chunks = getattr(exc, "chunks", [])
        except TimeoutError as exc:
            raise BackendError("llamacpp backend: no end within %.0f s; its last output:\n%s"
                               % (timeout_s, proc.tail())) from exc
        finally:
            proc.close(quit_line=None)
        return parse_query(chunks), proc.proc.returncode, proc.tail()

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
        announce: Optional[Announcer] = None,
    ) -> RawTiming:
        argv = self._argv(self._image(inputs, "run"), inputs.prompt, generation.output_tokens)
        announce = announce if announce is not None else Announcer(on_phase)
        query, reruns = self._execute(argv, self.load_timeout_s + generation.timeout_s, announce)
        timing = self._timing(query, generation, announce)
        if reruns:
            timing.warnings.append("re-run %d time(s): llama-mtmd-cli exited with its output lost before the perf "
                                   "print (llama.cpp #22142); these figures are from the run that printed it" % reruns)
        return timing

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """Greedy answer to one accuracy request: ``-n max_new_tokens``, EOS honoured (no
        ``--ignore-eos``); the text is what the CLI printed on stdout."""
        argv = self._argv(self._image(inputs, "answer"), prompt, max_new_tokens, ignore_eos=False)
        # the perf print, the CLI's last line, proves the answer before it arrived whole
        return self._execute(argv, self.load_timeout_s + _ANSWER_TIMEOUT_S)[0].text.strip()

    def _timing(self, query: ParsedQuery, generation: GenerationSpec, announce: Announcer) -> RawTiming:
        warnings: List[str] = []
        assert query.t_ready is not None
        engine: Dict[str, Any] = dict(query.perf)
        if query.encode_ms:
            engine["image_slice_encode_ms"] = query.encode_ms
        if query.media_decode_ms:
            engine["image_decode_ms"] = query.media_decode_ms
        # The engine's own count: "eval time = ... / N runs" counts the decodes of generated tokens
        # except the last one, which is never synchronised before the perf print (N = tokens - 1).
        requested = generation.output_tokens
        n_engine = int(query.perf["eval_runs"]) + 1 if "eval_runs" in query.perf else None
        writes = [t for t, _ in query.writes]
        engine["stream_writes"] = len(writes)
        if n_engine is not None:
            engine["tokens_implied_by_eval_runs"] = n_engine
        expected = n_engine if n_engine is not None else requested
        per_token = self.token_stream == "per_token" and len(writes) == expected
        if self.token_stream == "per_token" and not per_token:
            warnings.append("per-token times unavailable: %d token writes for %d tokens (writes merged while the "
                            "reader was late, or tokens with no text)" % (len(writes), expected))
        n_output = len(writes) if per_token else expected
        if per_token:
            token_times = writes
        else:
            # no per-token times: nothing is spread over the span; what we observed is kept here
            token_times = []
            end = writes[-1] if writes else None
            engine["observed"] = {
                "ttft_ms": (writes[0] - query.t_ready) / 1e6 if writes else None,
                "e2e_ms": (end - query.t_ready) / 1e6 if end is not None else None,
                "note": "first and last token writes as they arrived",
            }
        if n_output != requested:
            warnings.append("asked for %d output tokens, got %d" % (requested, n_output))
        # Boundaries are arrival times: two lines read in one chunk share a timestamp, and the span
        # between them is unknown (not zero), so it is left empty.
        t_pre_end, t_vis_start, t_vis_end = query.t_encode_start, query.t_encode_start, query.t_encode_end
        if t_pre_end is not None and t_pre_end == query.t_ready:
            t_pre_end = None
            warnings.append("preprocess not resolved: the ready and encoding lines arrived together")
        if t_vis_start is not None and t_vis_start == t_vis_end:
            t_vis_start = None
            warnings.append("vision encode not resolved: its start and end lines arrived together")
        prompt_tokens = query.perf.get("prompt_eval_tokens")
        first_write = writes[0] if writes and not per_token else None
        last_write = writes[-1] if writes and not per_token else None
        # each boundary announced at its line's arrival (readings of the runner's clock, above)
        announce.start(at=query.t_ready)
        if t_pre_end is not None:
            announce.phase_end("preprocess", at=t_pre_end)
        if t_vis_start is not None:
            announce.phase_start("vision_encode", at=t_vis_start)
        if t_vis_end is not None:
            announce.phase_end("vision_encode", at=t_vis_end)
        for arrival in token_times:
            announce.token(at=arrival)
        for arrival in (first_write, last_write):
            if arrival is not None:
                announce.output(at=arrival)
        return announce.timing(
            n_input_tokens=int(prompt_tokens) if prompt_tokens is not None else None,
            n_visual_tokens=query.n_media_tokens,
            n_output_tokens=n_output,
            output_text=query.text,
            peak_accel_mb=None,
            peak_accel_source="none: llama-mtmd-cli reports no device memory peak",
            engine=engine,
            warnings=warnings,
        )

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._media = {}
        self._cli_path = None
