"""The `openai` backend: any OpenAI-compatible ``/v1/chat/completions`` endpoint, streamed.

``llama-server``, vLLM, OpenVINO Model Server, ``transformers serve``, ``axllm serve``: one client.
Standard library only (http.client + a server-sent-events reader, ``_sse``).

What is measured, on the runner's clock (the backend announces, the runner's Announcer stamps):
  t_start        just before the request is written (the connection is opened first, so TCP set-up
                 is not in TTFT; its time goes to engine.connect_ms). The image is PNG-encoded and
                 base64'd before that (engine.client_encode_ms).
  token times    the arrival of every SSE event with content (``delta.content`` or
                 ``delta.reasoning_content``). When the server's token count equals the number of
                 content events, each event is one token and these are the token times. When it is
                 larger, some events carried several tokens: token times stay empty (TTFT, e2e and
                 the decode rate come from the first and last event), a warning says how many tokens
                 came in how many events, and engine.chunks keeps every event's arrival and text size.
  token counts   ``usage`` (asked for with stream_options.include_usage; ``transformers serve`` sends
                 it regardless), else llama-server's ``timings``; counted events only as a last resort
                 (warned).
  visual tokens  prompt tokens with the images minus prompt tokens of the same text alone (one
                 untimed request per distinct prompt, answered once and cached); the image's delimiter
                 tokens are included, and the metric source says so.
  engine         the server's own figures: usage, llama-server's ``timings``, finish_reason, how the
                 fixed output length was asked for and whether the server took it.

Fixed output length: ``max_tokens`` plus, by ``fixed_length``:
  ignore_eos          {"ignore_eos": true, "min_tokens": n} (vLLM, llama-server)
  generation_config   {"generation_config": "{\\"min_new_tokens\\": n, ...}"} (transformers serve)
  none                max_tokens only (the server may stop early at EOS: warned per measurement)
  auto (default)      the first of those the server accepts, found by one short untimed request at load
                      (a 400/422 answer is a refusal); every measurement records which one was used.

Options:
  url               base URL, e.g. http://127.0.0.1:8080 (``/v1/chat/completions`` is appended unless
                    the URL already ends in ``/chat/completions``)
  model             the model name to ask for (default: the first id of GET /v1/models)
  api_key_env       the NAME of an environment variable holding the API key (never the key itself)
  fixed_length      auto | ignore_eos | generation_config | none
  temperature, seed sampling (default greedy: temperature 0); a random-weight model repeats one token
                    under greedy decoding, which streaming servers may hold back and send as one chunk
  extra_body        a mapping merged into every request (e.g. {"cache_prompt": false} for llama-server)
  timeout_s         socket timeout per request (default: the suite's timeout_s)
  launch            {cmd: [...], ready_timeout_s: 300, env: {...}}: start the server on load and stop it
                    on close (it must listen on the url's host and port); in cmd, {model} is the
                    variant's path and {bin} the directory of the runner's Python (its venv's tools)
  weights           real | random: the label when the model is not a local directory with our marker

Video workloads are sent as their frames, one ``image_url`` per frame (what every server accepts),
recorded as engine.video_sent_as = "images".
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from .. import clock
from ..protocol import GenerationSpec, ModelSpec
from ..workloads import WorkloadInputs
from . import register_backend
from ._axllm_io import png_bytes
from ._server_launch import ServerProcess, launch_command, start_server
from ._sse import read_events
from .base import (
    MARKER_NAME,
    Announcer,
    Backend,
    BackendError,
    BackendUnavailable,
    LoadInfo,
    PhaseCallback,
    RawTiming,
    read_json_file,
)

FIXED_LENGTH_FORMS = ("ignore_eos", "generation_config", "none")
_REFUSED = (400, 404, 422)  # how servers answer a request field they do not take


def fixed_length_fields(form: str, n: int) -> Dict[str, Any]:
    """The request fields that ask for exactly ``n`` output tokens, by form."""
    if form == "ignore_eos":
        return {"ignore_eos": True, "min_tokens": n}
    if form == "generation_config":
        return {"generation_config": json.dumps({"min_new_tokens": n, "max_new_tokens": n, "do_sample": False})}
    return {}


@dataclass
class StreamResult:
    """What one streamed answer held, with every event's arrival on the runner's clock."""

    content: List[Tuple[int, str]] = field(default_factory=list)  # (arrival ns, text) per content event
    first_event_ns: Optional[int] = None
    n_events: int = 0
    usage: Optional[Dict[str, Any]] = None
    timings: Optional[Dict[str, Any]] = None  # llama-server's own figures
    finish_reason: Optional[str] = None
    error: Optional[str] = None


def collect_stream(events: Any) -> StreamResult:
    """Fold chat.completion.chunk events into a StreamResult (stops at [DONE])."""
    result = StreamResult()
    for event in events:
        if event.done:
            break
        result.n_events += 1
        if result.first_event_ns is None:
            result.first_event_ns = event.t_ns
        chunk = event.json()
        if chunk is None:
            continue
        if "error" in chunk:
            error = chunk["error"]
            result.error = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            continue
        if isinstance(chunk.get("usage"), dict):
            result.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            result.timings = chunk["timings"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            continue
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                result.finish_reason = str(choice["finish_reason"])
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            text = ""
            for key in ("content", "reasoning_content"):
                value = delta.get(key)
                if isinstance(value, str):
                    text += value
            if text:
                result.content.append((event.t_ns, text))
    return result


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def token_counts(result: StreamResult) -> "tuple[Optional[int], Optional[int], str]":
    """(output tokens, input tokens, where they came from)."""
    usage = result.usage or {}
    out = _int_or_none(usage.get("completion_tokens"))
    inp = _int_or_none(usage.get("prompt_tokens"))
    if out is not None:
        return out, inp, "usage"
    timings = result.timings or {}
    out = _int_or_none(timings.get("predicted_n"))
    if out is not None:
        return out, _int_or_none(timings.get("prompt_n")) if inp is None else inp, "timings"
    return None, inp, "none"


class HttpAnswerError(BackendError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__("server answered HTTP %d: %s" % (status, body[:500]))
        self.status = status


@register_backend("openai")
class OpenAIBackend(Backend):
    option_names = ("url", "model", "api_key_env", "fixed_length", "temperature", "seed", "extra_body",
                    "timeout_s", "launch", "weights")
    supports_concurrency = True  # every request has its own connection; see runner/concurrent.py

    def __init__(self, options: Dict[str, Any], model: ModelSpec) -> None:
        super().__init__(options, model)
        url = options.get("url")
        if not isinstance(url, str) or not url:
            raise BackendError("openai backend: option url is required (e.g. http://127.0.0.1:8080)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError("openai backend: url must be http(s)://HOST[:PORT][/PATH], got %r" % url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        base = parts.path.rstrip("/")
        if base.endswith("/chat/completions"):
            self.path = base
            self.models_path = base[: -len("/chat/completions")] + "/models"
        else:
            prefix = base if base.endswith("/v1") else base + "/v1"
            self.path = prefix + "/chat/completions"
            self.models_path = prefix + "/models"
        self.fixed_length = str(options.get("fixed_length", "auto"))
        if self.fixed_length not in FIXED_LENGTH_FORMS + ("auto",):
            raise BackendError("openai backend: fixed_length must be one of auto, %s; got %r"
                               % (", ".join(FIXED_LENGTH_FORMS), self.fixed_length))
        self.extra_body = options.get("extra_body") or {}
        if not isinstance(self.extra_body, dict):
            raise BackendError("openai backend: extra_body must be a mapping")
        self.temperature = float(options.get("temperature", 0.0))
        self.seed = options.get("seed")
        self.timeout_s = options.get("timeout_s")
        launch = options.get("launch")
        if launch is not None and not isinstance(launch, dict):
            raise BackendError("openai backend: launch must be a mapping {cmd: [...], ready_timeout_s: N}")
        self.launch = launch
        self.api_key_env = options.get("api_key_env")
        self.api_key: Optional[str] = None
        self.model_name: Optional[str] = options.get("model")
        self.form = "none"
        self.refused_forms: List[str] = []
        self.server: Optional[ServerProcess] = None
        self._text_prompt_tokens: Dict[str, Optional[int]] = {}
        self._probe_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = "Bearer %s" % self.api_key
        return headers

    def _where(self) -> str:
        return "%s://%s:%d%s" % (self.scheme, self.host, self.port, self.path)

    def _get_json(self, path: str) -> Any:
        conn = self._connection(30.0)
        try:
            conn.request("GET", path, headers=self._headers())
            response = conn.getresponse()
            body = response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            raise BackendUnavailable(
                "no OpenAI-compatible server answers at %s://%s:%d (%s); start it, or give the "
                "backend a launch command" % (self.scheme, self.host, self.port, exc)
            ) from None
        finally:
            conn.close()
        if response.status in (401, 403):
            raise BackendError("server at %s refused the API key (HTTP %d); set the variable named by "
                               "api_key_env" % (self._where(), response.status))
        if response.status != 200:
            raise HttpAnswerError(response.status, body)
        try:
            return json.loads(body)
        except ValueError:
            raise BackendError("server at %s: GET %s is not JSON: %r" % (self._where(), path, body[:200])) from None

    def _stream(self, body: Dict[str, Any], timeout: float,
                announce: Optional[Announcer] = None) -> "tuple[StreamResult, Dict[str, float]]":
        """Send one streamed request; return (result, client-side figures).

        With an announcer, the query's start is announced just before the request is written and
        every line's arrival is a reading of the runner's clock (``announce.now``); what each
        reading means (a token, several tokens) is announced once the stream's counts are known."""
        payload = json.dumps(body).encode("utf-8")
        conn = self._connection(timeout)
        readings = announce.now if announce is not None else clock.now_ns
        try:
            t_connect = clock.now_ns()
            conn.connect()
            connect_ms = clock.ns_to_ms(clock.now_ns() - t_connect)
            if announce is not None:
                announce.start()  # the request is written from here on
            conn.request("POST", self.path, body=payload, headers=self._headers())
            response = conn.getresponse()
            if response.status != 200:
                raise HttpAnswerError(response.status, response.read().decode("utf-8", errors="replace"))
            result = collect_stream(read_events(response.readline, readings))
        except (OSError, http.client.HTTPException) as exc:
            raise BackendError("request to %s failed: %s: %s" % (self._where(), type(exc).__name__, exc)) from None
        finally:
            conn.close()
        return result, {"connect_ms": connect_ms, "request_bytes": float(len(payload))}

    def _body(self, content: List[Dict[str, Any]], max_tokens: int, form: str) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "messages": [{"role": "user", "content": content}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        if self.model_name:
            body["model"] = self.model_name
        if self.seed is not None:
            body["seed"] = self.seed
        body.update(fixed_length_fields(form, max_tokens))
        if form == "generation_config" and self.temperature > 0:
            config = json.loads(body["generation_config"])
            config.update({"do_sample": True, "temperature": self.temperature})
            body["generation_config"] = json.dumps(config)
        body.update(self.extra_body)
        return body

    def _timeout(self, generation: Optional[GenerationSpec]) -> float:
        if self.timeout_s is not None:
            return float(self.timeout_s)
        return generation.timeout_s if generation is not None else 600.0

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self) -> LoadInfo:
        if self.api_key_env:
            self.api_key = os.environ.get(str(self.api_key_env))
            if not self.api_key:
                raise BackendError("openai backend: the environment variable %r named by api_key_env is not "
                                   "set on this machine" % self.api_key_env)
        if self.launch is not None:
            cmd = [part.replace("{model}", self.model.path).replace("{bin}", os.path.dirname(sys.executable))
                   for part in launch_command(self.launch.get("cmd"))]
            self.server = start_server(
                cmd, self.host, self.port,
                ready_path=self.models_path,
                ready_timeout_s=float(self.launch.get("ready_timeout_s", 300.0)),
                env={str(k): str(v) for k, v in (self.launch.get("env") or {}).items()},
            )
        listing = self._get_json(self.models_path)
        served = [m.get("id") for m in (listing.get("data") or []) if isinstance(m, dict)] if isinstance(listing, dict) else []
        if not self.model_name:
            if not served:
                raise BackendError("server at %s lists no models (GET %s); set the backend's model option"
                                   % (self._where(), self.models_path))
            self.model_name = str(served[0])
        self.form = self._choose_form()
        marker = read_json_file(os.path.join(self.model.path, MARKER_NAME)) if os.path.isdir(self.model.path) else None
        weights = str(self.options.get("weights") or (marker.get("weights", "random") if marker else "unknown"))
        extra: Dict[str, Any] = {"server": self._where(), "served_models": served[:10],
                                 "fixed_length": self.form, "fixed_length_refused": self.refused_forms}
        if self.server is not None:
            extra["launched"] = self.server.cmd
        return LoadInfo(engine="openai-compatible server at %s" % self._where(),
                        engine_versions={}, model_id=self.model_name or "", weights=weights,
                        accelerator="server", extra=extra)

    def _choose_form(self) -> str:
        """The first fixed-length form the server accepts (one short untimed request each)."""
        forms = FIXED_LENGTH_FORMS if self.fixed_length == "auto" else (self.fixed_length,)
        for form in forms:
            body = self._body([{"type": "text", "text": "Hi"}], 2, form)
            try:
                result, _ = self._stream(body, 120.0)
            except HttpAnswerError as exc:
                if exc.status in _REFUSED and form != "none":
                    self.refused_forms.append("%s: %s" % (form, str(exc)[:200]))
                    continue
                raise
            if result.error:
                raise BackendError("server at %s answered a test request with an error: %s"
                                   % (self._where(), result.error))
            return form
        raise BackendError("server at %s refused fixed_length %s: %s"
                           % (self._where(), self.fixed_length, "; ".join(self.refused_forms)))

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- queries --------------------------------------------------------------------------------
    def _content(self, inputs: WorkloadInputs, prompt: str) -> List[Dict[str, Any]]:
        parts: List[Dict[str, Any]] = []
        for frame in inputs.frames:
            png = png_bytes(frame.width, frame.height, frame.rgb, level=1)
            url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        parts.append({"type": "text", "text": prompt})
        return parts

    def _text_only_prompt_tokens(self, prompt: str, timeout: float) -> Optional[int]:
        with self._probe_lock:
            if prompt not in self._text_prompt_tokens:
                try:
                    result, _ = self._stream(self._body([{"type": "text", "text": prompt}], 2, self.form), timeout)
                    self._text_prompt_tokens[prompt] = token_counts(result)[1]
                except BackendError:
                    self._text_prompt_tokens[prompt] = None
            return self._text_prompt_tokens[prompt]

    def prepare(self, inputs: WorkloadInputs, generation: GenerationSpec) -> None:
        """Untimed work before a workload's first query (the text-only token count)."""
        self._text_only_prompt_tokens(inputs.prompt, self._timeout(generation))

    def run(self, inputs: WorkloadInputs, generation: GenerationSpec,
            on_phase: Optional[PhaseCallback] = None, announce: Optional[Announcer] = None) -> RawTiming:
        announce = announce if announce is not None else Announcer(on_phase)
        n = generation.output_tokens
        timeout = self._timeout(generation)
        text_tokens = self._text_only_prompt_tokens(inputs.prompt, timeout)
        t_encode = clock.now_ns()
        body = self._body(self._content(inputs, inputs.prompt), n, self.form)
        client: Dict[str, Any] = {"client_encode_ms": clock.ns_to_ms(clock.now_ns() - t_encode)}
        result, times = self._stream(body, timeout, announce)
        client.update(times)
        t_start = announce.t_start
        if result.error:
            raise BackendError("server at %s: %s" % (self._where(), result.error))
        if not result.content:
            raise BackendError("server at %s sent no content (finish_reason %r, %d events)"
                               % (self._where(), result.finish_reason, result.n_events))
        n_out, n_in, count_source = token_counts(result)
        warnings: List[str] = []
        stamps = [t for t, _ in result.content]
        if n_out is None:
            n_out = len(stamps)
            warnings.append("the server sent no token counts (usage or timings): output tokens are the "
                            "number of content events, a lower bound")
        if n_out == len(stamps):
            for stamp in stamps:
                announce.token(at=stamp)
        else:
            for stamp in stamps:
                announce.output(at=stamp)
            warnings.append("%d output tokens arrived in %d content events: some events carried several "
                            "tokens, so there are no per-token times (TTFT and the decode rate come from the "
                            "first and last event; every event's arrival is in engine.chunks)"
                            % (n_out, len(stamps)))
        if n_out < n:
            warnings.append("the server stopped after %d of %d tokens (finish_reason %r, fixed_length %s)"
                            % (n_out, n, result.finish_reason, self.form))
        n_visual = None
        if n_in is not None and text_tokens is not None and inputs.frames:
            n_visual = n_in - text_tokens
        engine: Dict[str, Any] = {
            "usage": result.usage,
            "token_counts_from": count_source,
            "finish_reason": result.finish_reason,
            "fixed_length": {"method": self.form, "requested": n, "reached": n_out >= n,
                             "refused_forms": self.refused_forms},
            "chunks": {
                "n_events": result.n_events,
                "n_content_events": len(stamps),
                "n_tokens": n_out,
                "multi_token_events": n_out > len(stamps),
                "arrival_ms": [round(clock.ns_to_ms(t - t_start), 4) for t in stamps],
                "chars": [len(text) for _, text in result.content],
            },
            "visual_tokens_from": "usage.prompt_tokens with the images minus the text alone (includes the "
                                  "image delimiter tokens)" if n_visual is not None else "not counted",
            "sampling": {"temperature": self.temperature, "seed": self.seed},
            "model": self.model_name,
        }
        engine.update(client)
        if result.timings is not None:
            engine["server_timings"] = result.timings
        if inputs.kind == "video":
            engine["video_sent_as"] = "images"
        return announce.timing(
            n_input_tokens=n_in, n_visual_tokens=n_visual, n_output_tokens=n_out,
            output_text="".join(text for _, text in result.content), engine=engine, warnings=warnings,
        )

    def answer(self, inputs: WorkloadInputs, prompt: str, max_new_tokens: int) -> str:
        body = self._body(self._content(inputs, prompt), max_new_tokens, "none")
        result, _ = self._stream(body, 600.0)
        if result.error:
            raise BackendError("server at %s: %s" % (self._where(), result.error))
        return "".join(text for _, text in result.content).strip()
