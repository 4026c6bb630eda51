"""Parsing ``llama-mtmd-cli`` output (llama.cpp's multimodal CLI), stdlib only.

In single-turn mode (``-p`` and ``--image``) it loads the model and projector, logs two ``WARN``
lines, then loads the image, encodes it and decodes the prompt, and streams tokens. Its logs go to
stderr, every line flushed by llama.cpp's log thread (recorded from llama.cpp commit 0c1e570 with
``-lv 4``, which the perf lines need; older builds log "encoding image slice..." / "image slice
encoded in N ms" from libmtmd's helper instead of the batch lines):

  0.00.038.683 W       For normal use cases, please use the standard llama-cli
  0.00.040.082 I encoding mtmd batch, n_chunks = 1 (done = 1, total = 3)
  0.00.050.813 I mtmd batch encoding done in 10 ms
  0.00.050.901 I decoding image batch 1/1, n_tokens_batch = 256
  0.00.052.951 I image decoded (batch 1/1) in 2 ms
  0.00.055.389 I llama_perf_context_print:        load time =       4.60 ms
  0.00.055.402 I llama_perf_context_print: prompt eval time =      14.09 ms /   277 tokens (...)
  0.00.055.404 I llama_perf_context_print:        eval time =       1.07 ms /     7 runs   (...)
  0.00.055.404 I llama_perf_context_print:       total time =      40.88 ms /   284 tokens

Its stdout carries a newline when the prompt has been decoded, then each token's text as it is
sampled (one flushed write per token), then a blank line. Log prefixes (``--log-prefix``,
``--log-timestamps``) and colours are tolerated: patterns match words and numbers only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ._axllm_parse import Chunk, _Timeline

# Linear patterns: ASCII [0-9], bounded figures, and a word that is a name ("image", "batch") may not
# start inside another word ("\b"): "\w+\s+slice" tried every position of a long word (quadratic).
_NUM = r"([0-9]{1,12}(?:\.[0-9]{0,12})?)"
READY_RE = re.compile(r"For normal use cases|experimental CLI")
# the CLI's own batch encoder, or libmtmd's helper (older builds): both bound the vision encode
ENCODING_RE = re.compile(r"encoding[ \t]+(?:mtmd[ \t]+batch|\b\w{1,32}[ \t]+slice)")
ENCODED_RE = re.compile(r"(?:mtmd[ \t]+batch[ \t]+encoding[ \t]+done|\b\w{1,32}[ \t]+slice[ \t]+encoded)[ \t]+in[ \t]+"
                        + _NUM + r"[ \t]*ms")
DECODING_RE = re.compile(r"decoding[ \t]+(\w{1,32})[ \t]+batch[ \t]+([0-9]{1,6})[ \t]*/[ \t]*([0-9]{1,6})[ \t]*,[ \t]*"
                         r"n_tokens_batch[ \t]*=[ \t]*([0-9]{1,9})")
DECODED_RE = re.compile(r"\b(\w{1,32})[ \t]+decoded[ \t]+\(batch[ \t]+([0-9]{1,6})[ \t]*/[ \t]*([0-9]{1,6})\)[ \t]+in[ \t]+"
                        + _NUM + r"[ \t]*ms")
LOAD_RE = re.compile(r"\bload time[ \t]*=[ \t]*" + _NUM + r"[ \t]*ms")
PROMPT_EVAL_RE = re.compile(r"prompt eval time[ \t]*=[ \t]*" + _NUM + r"[ \t]*ms[ \t]*/[ \t]*([0-9]{1,9})[ \t]*tokens")
# llama_perf_context_print (src/llama-context.cpp): "eval time = %10.2f ms / %5d runs   (...)";
# the server's print_timings (tools/server): "eval time = %10.2f ms / %5d tokens (...)"
EVAL_RE = re.compile(r"(?<!prompt )\beval time[ \t]*=[ \t]*" + _NUM + r"[ \t]*ms[ \t]*/[ \t]*([0-9]{1,9})[ \t]*"
                     r"(?:runs|tokens)\b")
TOTAL_RE = re.compile(r"\btotal time[ \t]*=[ \t]*" + _NUM + r"[ \t]*ms[ \t]*/[ \t]*([0-9]{1,9})[ \t]*tokens")
# the keyword first (a cheap first-character test at each position); "starts a word" is checked in code
ERROR_RE = re.compile(r"(?:ERR:|error:|failed to|Unable to|Failed to)[^\n]{0,300}", re.IGNORECASE)
# Older multimodal CLIs (llava-cli, minicpmv-cli, qwen2vl-cli: examples/llava/llava.cpp) log through
# encode_image_with_clip (llama.cpp examples/llava README and MobileVLM.md):
#   encode_image_with_clip: image embedding created: 576 tokens
#   encode_image_with_clip: image encoded in  5739.65 ms by CLIP (    9.96 ms per image patch)
LEGACY_EMBED_RE = re.compile(r"encode_image_with_clip:[ \t]*image[ \t]+embedding[ \t]+created:[ \t]*([0-9]{1,9})[ \t]*"
                             r"tokens")
LEGACY_ENCODED_RE = re.compile(r"encode_image_with_clip:[ \t]*image[ \t]+encoded[ \t]+in[ \t]*" + _NUM + r"[ \t]*ms")
LEGACY_BUILD = (
    "this llama.cpp build's multimodal CLI is too old (llava-cli / qwen2vl-cli: 'encode_image_with_clip' "
    "lines, no ready line after loading, so the model load cannot be kept out of the timed query); its "
    "own figures were read (image tokens, encode ms) - use llama-mtmd-cli from a llama.cpp with libmtmd")


@dataclass
class ParsedQuery:
    """One single-turn run of llama-mtmd-cli; times are perf_counter_ns of the carrying chunk."""

    t_ready: Optional[int] = None
    t_encode_start: Optional[int] = None
    t_encode_end: Optional[int] = None
    encode_ms: List[float] = field(default_factory=list)  # per slice, the engine's own figure
    media_decode_ms: List[float] = field(default_factory=list)  # image-token prefill per batch
    n_media_tokens: Optional[int] = None
    perf: Dict[str, float] = field(default_factory=dict)
    writes: List[Tuple[int, str]] = field(default_factory=list)  # token writes on stdout
    text: str = ""
    errors: List[str] = field(default_factory=list)
    legacy_cli: Optional[str] = None  # set (LEGACY_BUILD) when the log is an older llava-cli / qwen2vl-cli's


def parse_query(chunks: Sequence[Chunk]) -> ParsedQuery:
    err = _Timeline([c for c in chunks if c.stream == "err"])
    out = _Timeline([c for c in chunks if c.stream == "out"])
    query = ParsedQuery()
    log = err.text
    ready = None
    for ready in READY_RE.finditer(log):
        pass
    search_from = 0
    if ready is not None:
        query.t_ready = err.line_time(ready.start())
        search_from = ready.end()
    encoding = ENCODING_RE.search(log, search_from)
    if encoding:
        query.t_encode_start = err.line_time(encoding.start())
    last_encoded = None
    # each pattern runs only when its literal word is in the log (a substring test is ~50x cheaper than a
    # regex scan that starts at every word)
    for match in (ENCODED_RE.finditer(log, search_from) if "encod" in log else ()):
        query.encode_ms.append(float(match.group(1)))
        last_encoded = match
    if last_encoded is not None:
        query.t_encode_end = err.line_time(last_encoded.start())
    batches = [int(m.group(4)) for m in DECODING_RE.finditer(log, search_from)]
    if batches:
        query.n_media_tokens = sum(batches)
    query.media_decode_ms = ([float(m.group(4)) for m in DECODED_RE.finditer(log, search_from)]
                             if "decoded" in log else [])
    for name, pattern in (("load", LOAD_RE), ("prompt_eval", PROMPT_EVAL_RE), ("eval", EVAL_RE),
                          ("total", TOTAL_RE)):
        match = pattern.search(log, search_from) if " time" in log else None
        if match:
            query.perf[name + "_ms"] = float(match.group(1))
            if match.lastindex and match.lastindex >= 2:
                query.perf[name + ("_runs" if name == "eval" else "_tokens")] = float(match.group(2))
    lowered = log.lower()
    if "err:" in lowered or "error:" in lowered or "failed to" in lowered or "unable to" in lowered:
        query.errors = [m.group(0).strip() for m in ERROR_RE.finditer(log)
                        if m.start() == 0 or log[m.start() - 1].isspace()][-5:]
    legacy_tokens = [int(m.group(1)) for m in LEGACY_EMBED_RE.finditer(log, search_from)]
    legacy_ms = [float(m.group(1)) for m in LEGACY_ENCODED_RE.finditer(log, search_from)]
    if legacy_tokens or legacy_ms:
        query.legacy_cli = LEGACY_BUILD
        if query.n_media_tokens is None and legacy_tokens:
            query.n_media_tokens = sum(legacy_tokens)
        if not query.encode_ms:
            query.encode_ms = legacy_ms
    # stdout: "\n" when the prompt is decoded, the tokens, then "\n\n" (or "\n" + "\n\n" at EOS)
    text = out.text
    start = 1 if text.startswith("\n") else 0
    end = len(text) - 2 if text.endswith("\n\n") and len(text) - 2 >= start else len(text)
    query.writes = out.writes(start, end)
    query.text = "".join(piece for _, piece in query.writes)
    return query
