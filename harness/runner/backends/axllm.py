"""The `axllm` backend: AXERA's ax-llm ``main`` binary on an AX650N (or an AX8850 card via AXCL).

The binary is the one AXERA ships with its models (e.g. Qwen2.5-VL-3B-Instruct-AX650): it loads
the axmodels, talks to a tokenizer HTTP service, then loops on ``prompt >>`` / ``image >>`` on
stdin. ``load()`` starts it and waits for that loop (model init is never timed); ``run()`` writes
the frames as PNG (an image file, or a directory of frames for the video builds, as the binary
expects), starts the clock, sends the prompt and the path, and reads the output until the next
``prompt >>``, timestamping every piece as it arrives. ``answer()`` (accuracy requests) makes the
same exchange and returns the text streamed between the ttft line and the ``hit eos`` line; the
binary has no per-query token limit, so max_new_tokens is applied to that text (by streamed token
when the writes are countable as tokens, else by whitespace word: ``_axllm_parse.answer_text``).

What comes from where:
  ttft / token times   ours: arrival of each streamed token write (see ``token_stream``)
  vision end           ours: arrival of the ``image encode time`` line; the encode start is not
                       visible from outside, so vision_encode_ms stays empty (the engine's own
                       figure is in ``engine.image_encode_ms``)
  input tokens         the engine's ``input token num`` line (counted by the engine)
  visual tokens        encode ``size`` / ``tokens_embed_size`` (the encoder output is
                       n_visual x hidden values: 524288 = 256 x 2048, 991232 = 484 x 2048)
  peak_accel_mb        CMM used, /proc/ax_proc/mem_cmm_info, before and after the query
  engine               its encode time, its ttft with its definition and the end-to-end value,
                       its token/s (which counts the first token), the prefill chunks, CMM

Options:
  main            path to the ``main`` binary (or use run_script)
  args            argument template for ``main``; {axmodel_dir}, {tokenizer_url} and
                  {post_config} (a greedy sampler config written by us) are filled in
  run_script      AXERA's run script (e.g. run_qwen2_5_vl_image.sh), run with sh in its directory
  extra_args      appended to the command line
  axmodel_dir     the model directory (default: the model variant's path)
  tokenizer_url   the tokenizer service the binary uses (default http://127.0.0.1:12345);
                  null for builds with a built-in tokenizer
  cwd             working directory (default: the run script's directory, else axmodel_dir)
  ttft_definition after_encode (default: builds whose ttft timer starts after image encoding)
                  or end_to_end (``axllm serve`` builds)
  token_stream    per_token (default: each flushed write after the ttft line is one token,
                  cross-checked against the engine's own count) or none
  tokens_embed_size  LLM hidden size, for the visual token count (default: read from
                  ``--tokens_embed_size`` on the command line or in the run script)
  kinds           workload kinds this deployment serves (image and/or video: AXERA ships
                  separate image and video model builds and tokenizer services)
  cmm_root        root for /proc/ax_proc/mem_cmm_info (tests point it at a fake tree)
  pty             give the binary a terminal for its output (default true; see _axllm_io)
  init_timeout_s  how long model loading may take (default 600)
  hash_model      sha256 of the axmodel files for provenance (default true; ~GBs to read)

A model variant's own ``options`` (devices.yaml) override these, so image and video builds can
be two variants of one device. Standard library only (Python >= 3.8).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs
from . import register_backend
from ._axllm_io import ConsoleProcess, ProcessExited, png_bytes
from ._axllm_parse import (
    Chunk,
    CmmUsage,
    EOS_RE,
    ParsedRun,
    answer_text,
    implied_token_count,
    parse_cmm_info,
    parse_init,
    parse_run,
)
from .base import (
    Announcer,
    MARKER_NAME,
    Backend,
    BackendError,
    BackendUnavailable,
    LoadInfo,
    ModelNotFound,
    PhaseCallback,
    RawTiming,
    UnsupportedWorkload,
)

CMM_INFO = os.path.join("proc", "ax_proc", "mem_cmm_info")
_TTFT_DEFINITIONS = ("after_encode", "end_to_end")
_TOKEN_STREAMS = ("per_token", "none")
_READY_RE = re.compile(r"prompt\s*>>")
_IMAGE_PROMPT_RE = re.compile(r"image\s*>>")
_ERROR_LINE_RE = re.compile(r"^[ \t]*\[E\]", re.MULTILINE)  # [ \t], not \s: "\n" runs made it quadratic
_INIT_OK_RE = re.compile(r"init\s*ok", re.IGNORECASE)
_EMBED_ARG_RE = re.compile(r"--tokens_embed_size[\s=]+(\d+)")
_MODEL_SUFFIXES = (".axmodel", ".bin")
# accuracy answers: the runner's default per-query timeout, and how long the output must stay
# quiet after the final prompt (a real prompt is followed by silence; see _query)
_ANSWER_TIMEOUT_S = GenerationSpec(output_tokens=2).timeout_s
_ANSWER_SETTLE_S = 0.1
# sampling settings for ax-llm's post_config.json: every sampler off -> argmax (greedy)
_GREEDY_POST_CONFIG = {
    "enable_temperature": False, "temperature": 1.0,
    "enable_repetition_penalty": False, "repetition_penalty": 1.0, "penalty_window": 20,
    "enable_top_p_sampling": False, "top_p": 1.0,
    "enable_top_k_sampling": False, "top_k": 1,
}
_TOKENIZER_HINT = (
    "start it on the board first, e.g. `python qwen2_tokenizer_images.py --host %s --port %s` for "
    "image models or `python qwen2_tokenizer_video_308.py --host %s --port %s` for video models "
    "(the scripts ship with AXERA's model), or set the backend's tokenizer_url"
)


def _str_list(value: Any, name: str) -> List[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int, float)) for v in value):
        raise BackendError("axllm backend: %s must be a list of strings, got %r" % (name, value))
    return [str(v) for v in value]


def _host_port(url: str) -> Tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else "http://" + url)
    if not parts.hostname:
        raise BackendError("axllm backend: tokenizer_url %r has no host" % url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BackendError("axllm backend: tokenizer_url %r: %s" % (url, exc)) from exc
    return parts.hostname, port


@register_backend("axllm")
class AxllmBackend(Backend):
    option_names = (
        "main", "args", "run_script", "extra_args", "axmodel_dir", "tokenizer_url", "cwd",
        "ttft_definition", "token_stream", "tokens_embed_size", "kinds", "cmm_root", "pty",
        "init_timeout_s", "hash_model",
    )

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        super().__init__(options, model)
        merged = dict(options)
        variant_options = dict(model.options or {})
        unknown = sorted(set(variant_options) - set(self.option_names))
        if unknown:
            raise BackendError(
                "axllm backend: model variant %r has unknown option(s) %s; known options: %s"
                % (model.variant, ", ".join(unknown), ", ".join(self.option_names)))
        merged.update(variant_options)
        self.main = merged.get("main")
        self.run_script = merged.get("run_script")
        if bool(self.main) == bool(self.run_script):
            raise BackendError("axllm backend: set exactly one of main (the ax-llm binary) or run_script "
                               "(AXERA's run_*.sh)")
        self.args = _str_list(merged.get("args", []), "args")
        self.extra_args = _str_list(merged.get("extra_args", []), "extra_args")
        if self.run_script and self.args:
            raise BackendError("axllm backend: args is the argument template for main; with run_script "
                               "use extra_args")
        self.axmodel_dir = str(merged.get("axmodel_dir") or model.path)
        url = merged.get("tokenizer_url", "http://127.0.0.1:12345")
        self.tokenizer_url: Optional[str] = str(url) if url else None
        if self.tokenizer_url:
            self._tokenizer_addr: Optional[Tuple[str, int]] = _host_port(self.tokenizer_url)
        else:
            self._tokenizer_addr = None
        self.cwd = merged.get("cwd")
        self.ttft_definition = merged.get("ttft_definition", "after_encode")
        if self.ttft_definition not in _TTFT_DEFINITIONS:
            raise BackendError("axllm backend: ttft_definition %r not understood; use %s"
                               % (self.ttft_definition, " or ".join(_TTFT_DEFINITIONS)))
        self.token_stream = merged.get("token_stream", "per_token")
        if self.token_stream not in _TOKEN_STREAMS:
            raise BackendError("axllm backend: token_stream %r not understood; use %s"
                               % (self.token_stream, " or ".join(_TOKEN_STREAMS)))
        embed = merged.get("tokens_embed_size")
        if embed is not None and (not isinstance(embed, int) or isinstance(embed, bool) or embed < 1):
            raise BackendError("axllm backend: tokens_embed_size must be a positive integer, got %r" % (embed,))
        self.tokens_embed_size: Optional[int] = embed
        kinds = merged.get("kinds", ["image", "video"])
        if not isinstance(kinds, (list, tuple)) or not kinds or not set(kinds) <= {"image", "video"}:
            raise BackendError("axllm backend: kinds must be a list of image and/or video, got %r" % (kinds,))
        self.kinds = tuple(kinds)
        self.cmm_root = str(merged.get("cmm_root", "/"))
        self.use_pty = bool(merged.get("pty", True))
        timeout = merged.get("init_timeout_s", 600)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise BackendError("axllm backend: init_timeout_s must be a positive number, got %r" % (timeout,))
        self.init_timeout_s = float(timeout)
        self.hash_model = bool(merged.get("hash_model", True))
        self._proc: Optional[ConsoleProcess] = None
        self._tmp: Optional[str] = None
        self._media: Dict[str, str] = {}  # input sha256 -> file or directory given to the binary
        self._argv: List[str] = []

    # -- loading ----------------------------------------------------------------------------
    def supports(self, kind: str) -> bool:
        return kind in self.kinds

    def _cmm(self) -> "Tuple[Optional[CmmUsage], str]":
        path = os.path.join(self.cmm_root, CMM_INFO)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                usage = parse_cmm_info(handle.read())
        except OSError as exc:
            return None, "%s unreadable (%s)" % (path, exc.strerror or exc)
        if usage is None:
            return None, "%s has no 'total size=...,used=...,remain=...' line" % path
        return usage, path

    def _check_tokenizer(self) -> None:
        if self._tokenizer_addr is None:
            return
        host, port = self._tokenizer_addr
        try:
            socket.create_connection((host, port), timeout=3.0).close()
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            raise BackendError(
                "axllm backend: the tokenizer service at %s is not up (%s); %s"
                % (self.tokenizer_url, reason, _TOKENIZER_HINT % (host, port, host, port))) from exc

    def _command(self) -> "Tuple[List[str], str]":
        if self.run_script:
            script = os.path.abspath(os.path.expanduser(str(self.run_script)))
            if not os.path.isfile(script):
                raise BackendUnavailable("axllm backend: run script %s does not exist; copy AXERA's run_*.sh "
                                         "for this model to the board or set main" % script)
            cwd = str(self.cwd or os.path.dirname(script))
            return ["sh", script] + self.extra_args, cwd
        main = os.path.expanduser(str(self.main))
        resolved = shutil.which(main) if os.sep not in main else (main if os.path.isfile(main) else None)
        if not resolved:
            raise BackendUnavailable(
                "axllm backend: the ax-llm binary %s was not found; build it from AXERA-TECH/ax-llm "
                "(build_ax650.sh) or copy the prebuilt `main` shipped with the model, and set main" % main)
        if not os.access(resolved, os.X_OK):
            raise BackendUnavailable("axllm backend: %s is not executable (chmod +x it)" % resolved)
        assert self._tmp is not None
        post_config = os.path.join(self._tmp, "post_config.json")
        with open(post_config, "w", encoding="utf-8") as handle:
            json.dump(_GREEDY_POST_CONFIG, handle, indent=1)
        values = {"{axmodel_dir}": os.path.abspath(self.axmodel_dir),
                  "{tokenizer_url}": self.tokenizer_url or "", "{post_config}": post_config}
        args = []
        for arg in self.args:
            for key, value in values.items():
                arg = arg.replace(key, value)
            args.append(arg)
        return [os.path.abspath(resolved)] + args + self.extra_args, str(self.cwd or self.axmodel_dir)

    def _embed_size(self, argv: List[str]) -> Optional[int]:
        if self.tokens_embed_size:
            return self.tokens_embed_size
        text = " ".join(argv)
        if self.run_script:
            try:
                with open(argv[1], encoding="utf-8", errors="replace") as handle:
                    text += " " + handle.read()
            except OSError:
                pass
        match = _EMBED_ARG_RE.search(text)
        return int(match.group(1)) if match else None

    def _model_identity(self) -> "Tuple[str, str, Dict[str, Any]]":
        marker_path = os.path.join(self.axmodel_dir, MARKER_NAME)
        marker: Dict[str, Any] = {}
        if os.path.isfile(marker_path):
            try:
                with open(marker_path, encoding="utf-8") as handle:
                    loaded = json.load(handle)
                marker = loaded if isinstance(loaded, dict) else {"weights": "random"}
            except (OSError, ValueError):
                marker = {"weights": "random"}  # ours but unreadable: never call it real
        weights = str(marker.get("weights", "real")) if marker else "real"
        digest = ""
        if self.hash_model:
            sha = hashlib.sha256()
            names = sorted(n for n in os.listdir(self.axmodel_dir) if n.endswith(_MODEL_SUFFIXES))
            for name in names:
                sha.update(name.encode("utf-8") + b"\0")
                with open(os.path.join(self.axmodel_dir, name), "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        sha.update(block)
            digest = sha.hexdigest() if names else ""
        return weights, digest, marker

    def load(self) -> LoadInfo:
        if not os.path.isdir(self.axmodel_dir):
            raise ModelNotFound(
                "axllm backend: axmodel directory %s does not exist; copy AXERA's model (e.g. "
                "Qwen2.5-VL-3B-Instruct-AX650 with its *.axmodel files) to the board and point the "
                "variant's path (or axmodel_dir) at it" % self.axmodel_dir)
        self._tmp = tempfile.mkdtemp(prefix="axllm-bench-")
        try:
            argv, cwd = self._command()
            self._check_tokenizer()
            cmm_before, cmm_source = self._cmm()
            weights, digest, marker = self._model_identity()
            self._argv = argv
            try:
                proc = ConsoleProcess(argv, cwd=cwd, use_pty=self.use_pty)
            except OSError as exc:
                raise BackendUnavailable("axllm backend: cannot start %s: %s" % (argv[0], exc)) from exc
            self._proc = proc
            init_text = self._wait_ready(proc)
        except BaseException:
            self.close()
            raise
        cmm_after, _ = self._cmm()
        init = parse_init(init_text)
        extra: Dict[str, Any] = {
            "command": argv,
            "cwd": cwd,
            "axmodel_dir": os.path.abspath(self.axmodel_dir),
            "tokenizer_url": self.tokenizer_url,
            "ttft_definition": self.ttft_definition,
            "token_stream": self.token_stream,
            "tokens_embed_size": self._embed_size(argv),
            "kinds": list(self.kinds),
            "pty": self.use_pty,
            "greedy": "post_config.json with every sampler off (argmax)" if "{post_config}" in " ".join(self.args)
                      else "not enforced by us: the run script's post_config decides",
            "fixed_output_length": "not available: ax-llm's main stops at EOS",
            "answer_max_new_tokens": "no per-query limit in main: answers are cut to max_new_tokens after the "
                                     "fact (by streamed token when countable, else by whitespace word)",
            "phases_observed": "ttft and token times (arrival of streamed output), end of vision "
                               "encode (its log line); encode start and preprocess end are not visible",
            "cmm_source": cmm_source,
        }
        extra.update(init)
        # not required (only the prompt is), but a build that never says it loaded is worth a look
        extra["init_ok_seen"] = bool(_INIT_OK_RE.search(init_text))
        if cmm_before is not None and cmm_after is not None:
            extra["cmm_used_mb_before_load"] = round(cmm_before.used_mb, 3)
            extra["cmm_used_mb_after_load"] = round(cmm_after.used_mb, 3)
            extra["cmm_total_mb"] = round(cmm_after.total_mb, 3)
        if marker:
            extra["marker"] = marker
        binary = argv[1] if self.run_script else argv[0]
        versions = {"ax-llm main sha256": _file_sha256(binary)} if not self.run_script else {
            "run script sha256": _file_sha256(binary)}
        return LoadInfo(
            engine="ax-llm main (%s)" % os.path.basename(binary),
            engine_versions=versions,
            model_id=os.path.basename(os.path.normpath(os.path.abspath(self.axmodel_dir))),
            model_sha256=digest,
            weights=weights,
            dtype=str(marker.get("dtype", "axmodel (quantisation set at compile time, e.g. w8a16)")),
            accelerator="AX650N NPU",
            extra=extra,
        )

    def _wait_ready(self, proc: ConsoleProcess) -> str:
        """Read the init output up to the ``prompt >>`` loop; then whatever else it prints."""
        try:
            chunks = proc.read_until(lambda text: bool(_READY_RE.search(text)), self.init_timeout_s)
            chunks += proc.drain(0.3)  # some builds print the prompt twice at start
        except ProcessExited as exc:
            raise BackendError("axllm backend: %s stopped while loading the model (%s); its last output:\n%s"
                               % (self._argv[0], exc, proc.tail())) from exc
        except TimeoutError as exc:
            raise BackendError("axllm backend: %s did not reach its prompt within %.0f s (init_timeout_s); "
                               "its last output:\n%s" % (self._argv[0], self.init_timeout_s, proc.tail())) from exc
        return "".join(c.text for c in chunks)

    # -- one query ----------------------------------------------------------------------------
    def _media_path(self, inputs: WorkloadInputs) -> str:
        """Frames -> a PNG file (image) or a directory of PNG frames (video), once per input."""
        path = self._media.get(inputs.input_sha256)
        if path is not None:
            return path
        assert self._tmp is not None
        base = os.path.join(self._tmp, "%s-%s" % (inputs.kind, inputs.input_sha256[:12]))
        if inputs.kind == "image":
            frame = inputs.frames[0]
            path = base + ".png"
            with open(path, "wb") as handle:
                handle.write(png_bytes(frame.width, frame.height, frame.rgb))
        else:
            path = base
            os.makedirs(path, exist_ok=True)
            for index, frame in enumerate(inputs.frames):
                # the video builds list the directory in name order
                with open(os.path.join(path, "frame_%04d.png" % index), "wb") as handle:
                    handle.write(png_bytes(frame.width, frame.height, frame.rgb))
        self._media[inputs.input_sha256] = path
        return path

    def _live(self, inputs: WorkloadInputs, what: str) -> ConsoleProcess:
        """The running binary, after the checks run() and answer() share."""
        proc = self._proc
        if proc is None:
            raise BackendError("axllm backend: %s() before load()" % what)
        if not self.supports(inputs.kind):
            raise UnsupportedWorkload("axllm backend: this deployment serves %s workloads, not %s (option kinds)"
                                      % (" and ".join(self.kinds), inputs.kind))
        if not proc.alive:
            raise BackendError("axllm backend: %s is no longer running; its last output:\n%s"
                               % (self._argv[0], proc.tail()))
        return proc

    def _query(
        self,
        proc: ConsoleProcess,
        inputs: WorkloadInputs,
        prompt: str,
        timeout_s: float,
        on_phase: Optional[PhaseCallback] = None,
        settle_s: float = 0.0,
        announce: Optional[Announcer] = None,
    ) -> "Tuple[int, int, List[Chunk], List[str]]":
        """One prompt + media exchange: (t_start, "image >>" arrival, every output chunk up to the
        next prompt, warnings). With ``settle_s`` the output must also stay quiet that long after
        that prompt: a model's text that happens to end in "hit eos ... prompt >>" then cannot
        end the query early (the real prompt is always followed by silence)."""
        media = self._media_path(inputs)  # file writing happens before the clock starts
        line = " ".join(prompt.split())  # the binary reads one line
        warnings: List[str] = []
        if line != prompt:
            warnings.append("prompt whitespace collapsed to one line (the binary reads a line)")
        try:
            proc.drain(0.0)  # nothing stale may be mistaken for this query's output
        except ProcessExited as exc:
            raise BackendError("axllm backend: %s stopped between queries (%s); its last output:\n%s"
                               % (self._argv[0], exc, proc.tail())) from exc
        announce = announce if announce is not None else Announcer(on_phase)
        proc.stamp = announce.now  # every chunk's arrival: a reading of the runner's clock
        announce.start()
        t_start = announce.t_start
        try:
            proc.send_line(line)
            asked = proc.read_until(lambda text: bool(_IMAGE_PROMPT_RE.search(text)), 60.0)
            t_asked = asked[-1].t_ns
            proc.send_line(media)
            chunks = proc.read_until(_query_done, timeout_s)
            while settle_s > 0:
                more = proc.drain(settle_s)
                if not more:
                    break
                chunks += more  # that prompt was the model's text: read on to the real end
                seen = "".join(c.text for c in chunks)
                if not _query_done(seen):
                    chunks += proc.read_until(lambda text: _query_done(seen + text), timeout_s)
        except ProcessExited as exc:
            raise BackendError("axllm backend: %s stopped during the query (%s); its last output:\n%s"
                               % (self._argv[0], exc, proc.tail())) from exc
        except TimeoutError as exc:
            # its state is unknown now: stop it, so later queries fail clearly instead of misreading
            proc.close(quit_line=None)
            raise BackendError("axllm backend: no end of generation within %.0f s (timeout_s); the binary was "
                               "stopped; its last output:\n%s" % (timeout_s, proc.tail())) from exc
        except OSError as exc:
            raise BackendError("axllm backend: cannot talk to %s: %s" % (self._argv[0], exc)) from exc
        return t_start, t_asked, chunks, warnings

    def run(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        on_phase: Optional[PhaseCallback] = None,
        announce: Optional[Announcer] = None,
    ) -> RawTiming:
        proc = self._live(inputs, "run")
        cmm_before, _ = self._cmm()
        announce = announce if announce is not None else Announcer(on_phase)
        t_start, t_asked, chunks, warnings = self._query(proc, inputs, inputs.prompt, generation.timeout_s,
                                                         announce=announce)
        cmm_after, cmm_source = self._cmm()
        parsed = parse_run(chunks)
        return self._timing(inputs, generation, parsed, t_start, t_asked, cmm_before, cmm_after, cmm_source,
                            warnings, chunks, announce)

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        """Greedy answer to one accuracy request (the post_config run() uses), ending at EOS.

        The text is what the binary streamed between its ttft line and its ``hit eos`` line, log
        lines excluded by position (``_axllm_parse.answer_text``). The binary has no per-query
        token limit, so ``max_new_tokens`` is applied to what it printed (see answer_text)."""
        proc = self._live(inputs, "answer")
        _, _, chunks, _ = self._query(proc, inputs, prompt, _ANSWER_TIMEOUT_S, settle_s=_ANSWER_SETTLE_S)
        parsed = parse_run(chunks)
        if parsed.t_ttft_line is None:
            raise self._no_first_token(parsed, chunks)
        if parsed.t_eos_line is None:
            raise BackendError("axllm backend: the output has no 'hit eos' line, so the answer may be cut short%s; "
                               "output:\n%s" % (_errors(parsed), _tail(chunks)))
        n_engine = implied_token_count(parsed.rate_tps, parsed.t_ttft_line, parsed.t_eos_line)
        text, _ = answer_text(parsed, max_new_tokens, n_engine)
        return text

    def _no_first_token(self, run: ParsedRun, chunks: List[Chunk]) -> BackendError:
        return BackendError("axllm backend: the output has no 'ttft: N ms' line, so the first token cannot be "
                            "placed%s; output:\n%s" % (_errors(run), _tail(chunks)))

    def _timing(
        self,
        inputs: WorkloadInputs,
        generation: GenerationSpec,
        run: ParsedRun,
        t_start: int,
        t_asked: int,
        cmm_before: Optional[CmmUsage],
        cmm_after: Optional[CmmUsage],
        cmm_source: str,
        warnings: List[str],
        chunks: List[Chunk],
        announce: Announcer,
    ) -> RawTiming:
        """Everything derived after the clock stopped; boundaries announced at their lines' arrival."""
        if run.t_ttft_line is None:
            raise self._no_first_token(run, chunks)
        ms = 1e6
        engine: Dict[str, Any] = {
            "ttft_ms": run.engine_ttft_ms,
            "ttft_definition": self.ttft_definition,
            "image_roundtrip_ms": (t_asked - t_start) / ms,  # prompt sent -> "image >>" back
        }
        if run.encode_ms is not None:
            engine["image_encode_ms"] = run.encode_ms
            engine["image_encode_size"] = run.encode_size
        else:  # newer `axllm run` builds print no encode line: not reported, never invented
            engine["image_encode_ms"] = None
            engine["image_encode"] = "not reported by this build (no 'image encode time' line)"
        if self.ttft_definition == "after_encode":
            # this build's ttft timer starts after the image encoder: add it back (unknown without it)
            engine["ttft_end_to_end_ms"] = (None if run.engine_ttft_ms is None or run.encode_ms is None
                                            else run.engine_ttft_ms + run.encode_ms)
        else:
            engine["ttft_end_to_end_ms"] = run.engine_ttft_ms
        if run.n_input_tokens is not None:
            engine["input_tokens"] = run.n_input_tokens
        if run.prefill_split_num is not None:
            engine["prefill_split_num"] = run.prefill_split_num
        if run.prefill_chunks:
            engine["prefill_chunks"] = run.prefill_chunks
        if run.error_lines:
            engine["error_lines"] = run.error_lines
            warnings.append("the engine logged errors: %s" % " | ".join(run.error_lines[-3:]))

        n_engine = implied_token_count(run.rate_tps, run.t_ttft_line, run.t_eos_line)
        if run.rate_tps is not None:
            engine["avg_token_per_s"] = run.rate_tps  # ax-llm counts the first token in it
            engine["avg_token_per_s_counts_first_token"] = True
            if n_engine and n_engine > 1:
                engine["decode_tps_excluding_first_token"] = run.rate_tps * (n_engine - 1) / n_engine
        if n_engine is not None:
            engine["tokens_implied_by_rate"] = n_engine
        if run.t_eos_line is None:
            warnings.append("no 'hit eos' line: the end of generation was not seen")
        engine["stream_writes"] = len(run.writes)

        writes = [t for t, _ in run.writes]
        per_token = self.token_stream == "per_token" and bool(writes)
        if per_token and n_engine is not None and len(writes) != n_engine:
            per_token = False
            warnings.append(
                "per-token times unavailable: %d streamed writes but the engine's rate implies %d tokens "
                "(the build prints several tokens per write, or some tokens decode to no text)"
                % (len(writes), n_engine))
        elif per_token and n_engine is None:
            warnings.append("streamed writes counted as tokens without a cross-check (no token/s line)")
        observed_end = run.t_eos_line if run.t_eos_line is not None else (writes[-1] if writes else None)
        if per_token:
            token_times = writes
            n_output = len(writes)
        else:
            # never spread tokens over the span: without one timestamp per token there are no gaps,
            # so no token times at all go to the metrics; what we did observe is kept here
            token_times = []
            n_output = n_engine if n_engine is not None else len(writes)
            engine["observed"] = {
                "ttft_ms": (run.t_ttft_line - t_start) / ms,
                "e2e_ms": (observed_end - t_start) / ms if observed_end is not None else None,
                "decode_tps": ((n_output - 1) * 1e9 / (observed_end - run.t_ttft_line)
                               if observed_end is not None and observed_end > run.t_ttft_line and n_output > 1
                               else None),
                "note": "first token = arrival of the ttft line, end = arrival of the hit-eos line",
            }
            if self.token_stream == "none":
                warnings.append("token_stream is none: no per-token times; ttft, e2e and decode rate come "
                                "from the ttft and hit-eos lines' arrival (also in engine.observed)")
            else:
                warnings.append("no per-token times; ttft, e2e and decode rate come from the ttft and "
                                "hit-eos lines' arrival (also in engine.observed)")
        if n_output != generation.output_tokens:
            warnings.append("asked for %d output tokens, the engine produced %d (ax-llm's main stops at EOS "
                            "and has no fixed-length mode)" % (generation.output_tokens, n_output))

        n_visual = None
        embed = self._embed_size(self._argv)
        if run.encode_size is not None and embed:
            if run.encode_size % embed == 0:
                n_visual = run.encode_size // embed
            else:
                warnings.append("encode size %d is not a multiple of tokens_embed_size %d: visual tokens unknown"
                                % (run.encode_size, embed))
        elif run.encode_size is not None:
            warnings.append("visual tokens unknown: set tokens_embed_size (the LLM hidden size, 2048 for "
                            "Qwen2.5-VL-3B)")

        if cmm_before is not None and cmm_after is not None:
            peak: Optional[float] = max(cmm_before.used_mb, cmm_after.used_mb)
            source = ("CMM used (%s), max of before and after the query: ax-llm allocates CMM at init, "
                      "this is not sampled during the query" % cmm_source)
            engine["cmm_used_mb_before"] = round(cmm_before.used_mb, 3)
            engine["cmm_used_mb_after"] = round(cmm_after.used_mb, 3)
        else:
            peak, source = None, "none: %s" % cmm_source
        if run.t_encode_line is not None:
            announce.phase_end("vision_encode", at=run.t_encode_line)
        if per_token:
            for arrival in token_times:
                announce.token(at=arrival)
        else:
            announce.output(at=run.t_ttft_line)
            if observed_end is not None:
                announce.output(at=observed_end)
        return announce.timing(
            n_input_tokens=run.n_input_tokens,
            n_visual_tokens=n_visual,
            n_output_tokens=n_output,
            output_text=run.text.strip(),
            peak_accel_mb=peak,
            peak_accel_source=source,
            engine=engine,
            warnings=warnings,
        )

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._media = {}


def _errors(run: ParsedRun) -> str:
    return "; engine errors: " + " | ".join(run.error_lines) if run.error_lines else ""


def _tail(chunks: List[Chunk]) -> str:
    return "".join(c.text for c in chunks)[-1500:]


def _query_done(text: str) -> bool:
    """The query ends at the next ``prompt >>`` after the end-of-generation line, or after an
    error line (e.g. an image it cannot read: it prints the error and asks again). That prompt
    ends the output: the binary then waits for input, so a "prompt >>" with text after it is
    the model's own text."""
    ready = None
    for ready in _READY_RE.finditer(text):
        pass
    if ready is None or text[ready.end():].strip():
        return False
    head = text[:ready.start()]
    return EOS_RE.search(head) is not None or _ERROR_LINE_RE.search(head) is not None


def _file_sha256(path: str) -> str:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    except OSError:
        return "unreadable"
    return sha.hexdigest()
