"""Parsing ax-llm's console output (AXERA's ``main`` binary) and the AX650N CMM summary.

Pure functions over text and arrival timestamps, kept apart from the process handling so they can
be tested on recorded output. Formats (FACTS.md, AXERA/M5Stack docs):

  [I][                          Encode][ 539]: image encode time : 773.948975 ms, size : 524288
  [I][                             Run][ 625]: input token num : 280, prefill_split_num : 3
  [I][                             Run][ 659]: input_num_token:128
  [I][                             Run][ 796]: ttft: 2076.95 ms
  <token text, flushed as it is generated>\n\n
  [N][                             Run][ 949]: hit eos,avg 4.83 token/s
  ... init post axmodel ok,remain_cmm(11442 MB)

Spacing, bracket padding, line numbers and extra fields differ between builds, so every pattern
matches the words and numbers only. Standard library only (the runner ships to Python 3.8 boards).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

# Every pattern is linear: ASCII [0-9], no two adjacent repeats that can match the same characters
# ("\s*[:=]?\s*" made a run of spaces quadratic), nothing spans lines unless it must, and a word-ish
# start cannot begin inside a word. Figures are bounded (a 400-digit "ttft" is not a time).
_NUM = r"([0-9]{1,12}(?:\.[0-9]{0,12})?)"
_SEP = r"[ \t]*(?:[:=][ \t]*)?"  # optional ":" or "=" between a name and its figure
ENCODE_RE = re.compile(r"image[ \t]*encode[ \t]*time" + _SEP + _NUM + r"[ \t]*ms(?:[ \t]*,?[ \t]*size" + _SEP
                       + r"([0-9]{1,15}))?", re.IGNORECASE)
TTFT_RE = re.compile(r"\bttft" + _SEP + _NUM + r"[ \t]*ms", re.IGNORECASE)
# the end-of-generation line; builds stopping at a token limit print the same words
EOS_RE = re.compile(r"hit[ \t]*eos(?:[ \t]*,)?(?:[ \t]*avg[ \t]*" + _NUM + r"[ \t]*token[ \t]*/[ \t]*s)?", re.IGNORECASE)
INPUT_RE = re.compile(r"input[ \t]*token[ \t]*num" + _SEP + r"([0-9]{1,9})(?:[ \t]*,?[ \t]*prefill_split_num" + _SEP
                      + r"([0-9]{1,9}))?", re.IGNORECASE)
# one prefill chunk: "[I][ Run][ 659]: input_num_token:128" (the whole message; SetKVCache's
# "... precompute_len:0 input_num_token:20" line is the prompt total, not a chunk), or in axllm
# builds with the new logger "INF Run:858 | prefill chunk p=0 history_len=0 ... input_tokens=20".
# Read line by line ("\r\n" and "\r" end lines too: CRLF logs keep their chunks).
CHUNK_RE = re.compile(r"(?:\]:|\|)[ \t]*input_num_token" + _SEP + r"([0-9]{1,9})[ \t]*$", re.IGNORECASE)
CHUNK_ALONE_RE = re.compile(r"[ \t]*input_num_token" + _SEP + r"([0-9]{1,9})[ \t]*$", re.IGNORECASE)
PREFILL_CHUNK_START_RE = re.compile(r"prefill[ \t]+chunk[ \t]+p[ \t]*=[ \t]*[0-9]", re.IGNORECASE)
PREFILL_CHUNK_TOKENS_RE = re.compile(r"\binput_tokens[ \t]*=[ \t]*([0-9]{1,9})", re.IGNORECASE)
REMAIN_CMM_RE = re.compile(r"remain_cmm[ \t]*\([ \t]*(-?[0-9]{1,9})[ \t]*MB[ \t]*\)", re.IGNORECASE)
# AXCL builds print, after init, the CMM left on each card - the authoritative figure (the
# "remain_cmm(N MB)" inside the "\r"-overwritten progress bar can be stale or garbled):
#   ________________________
#   |    ID| remain cmm(MB)|
#   ========================
#   |     0|           2286|
CMM_TABLE_HEADER_RE = re.compile(r"\|[ \t]*ID[ \t]*\|[ \t]*remain[ \t]*cmm[ \t]*\(MB\)[ \t]*\|", re.IGNORECASE)
CMM_TABLE_ROW_RE = re.compile(r"[ \t]*\|[ \t]*([0-9]{1,6})[ \t]*\|[ \t]*(-?[0-9]{1,9})[ \t]*\|")
# error lines: "[E][ Func][ 123]: ..." (sample_log.h macros, ANSI-coloured on a terminal), or
# "HH:MM:SS.mmm ERR Func:123 | ..." (ax-llm's logger.cpp: tags ERR, CRT, ALT, EMG above warnings)
ERROR_LINE_RE = re.compile(r"[ \t]*(?:\[E\]|(?:[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?[ \t]+)?(?:ERR|CRT|ALT|EMG)[ \t]+"
                           r"[^\s:|]+:[0-9]+[ \t]+\|)")
# ANSI colour / cursor sequences (CSI ... final byte) that both loggers wrap lines in on a terminal
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: a log line longer than this is cut before the line-wise patterns look at it (real ones are < 300)
MAX_LOG_LINE_CHARS = 4096


def _lines(text: str) -> List[str]:
    """The text's lines, "\n", "\r\n" and "\r" all ending one, each cut to MAX_LOG_LINE_CHARS."""
    return [ln[:MAX_LOG_LINE_CHARS] for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


@dataclass
class CmmUsage:
    total_mb: float
    used_mb: float
    remain_mb: float


def parse_cmm_info(text: str) -> Optional[CmmUsage]:
    """The summary line of /proc/ax_proc/mem_cmm_info, e.g.
    ``total size=3145728KB(3072MB),used=18876KB(18MB + 444KB),remain=3126852KB(3053MB + 580KB),...``"""
    from ..telemetry.ax650n import parse_cmm_summary  # one linear reader of that file for both users

    summary = parse_cmm_summary(text or "")
    if summary is None:
        return None
    total, used, remain = summary
    return CmmUsage(total, used, remain)


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour sequences."""
    return ANSI_RE.sub("", text)


def error_lines(text: str) -> List[str]:
    """The engine's error lines, colours removed."""
    return [ln.strip() for ln in _lines(strip_ansi(text)) if ERROR_LINE_RE.match(ln)]


def parse_cmm_table(text: str) -> Optional[Dict[int, Optional[int]]]:
    """The AXCL init table ``| ID| remain cmm(MB)|``: {device id: MB left, None where it reads -1
    (the card's CMM is not visible from the host)}; the last table printed wins; None without one."""
    table: Optional[Dict[int, Optional[int]]] = None
    current: Optional[Dict[int, Optional[int]]] = None
    for line in _lines(strip_ansi(text)):  # the table is printed in purple on a terminal
        if CMM_TABLE_HEADER_RE.search(line):
            current = {}
            table = current
            continue
        if current is None:
            continue
        row = CMM_TABLE_ROW_RE.match(line)
        if row:
            mb = int(row.group(2))
            current[int(row.group(1))] = mb if mb >= 0 else None
        elif line.strip().strip("=_-\u00af") == "" and not current:
            continue  # the rules above the first row ("=====")
        else:
            current = None  # the table ended
    return table


def parse_init(text: str) -> Dict[str, Any]:
    """What the binary says while loading: the CMM left after init, and error lines.

    AXCL builds (a card in a host) print a ``| ID| remain cmm(MB)|`` table after init: that is the
    figure. The ``remain_cmm(N MB)`` inside the progress bar is rewritten in place with ``\r`` and
    can be stale or garbled (``remain_cmm(3220 MB)545 MB))``), so it is used only when there is no
    table (board builds), and a -1 (not visible from the host) is never a measurement."""
    remains = [int(m.group(1)) for m in REMAIN_CMM_RE.finditer(text)]
    info: Dict[str, Any] = {}
    table = parse_cmm_table(text)
    if table:
        first = sorted(table)[0]
        info["remain_cmm_mb_after_init"] = table[first]
        info["remain_cmm_mb_by_device"] = {str(dev): mb for dev, mb in sorted(table.items())}
        info["remain_cmm_source"] = "AXCL init table '| ID| remain cmm(MB)|' (device %d)" % first
        if table[first] is None:
            info["remain_cmm_note"] = "the table reads -1: the card's CMM is not visible from the host (not measured)"
    elif remains:
        info["remain_cmm_mb_after_init"] = remains[-1] if remains[-1] >= 0 else None
        info["remain_cmm_source"] = "last remain_cmm(N MB) in the init progress lines"
        if remains[-1] < 0:
            info["remain_cmm_note"] = "remain_cmm(-1 MB): not visible from the host (not measured)"
    if remains:
        info["remain_cmm_mb_reported"] = remains[-20:]
    errors = error_lines(text)
    if errors:
        info["error_lines"] = errors[-10:]
    return info


@dataclass
class Chunk:
    """One read from the engine's output: when it arrived (perf_counter_ns), its text, and which
    stream it came from ("out", or "err" when stderr is read separately)."""

    t_ns: int
    text: str
    stream: str = "out"


@dataclass
class ParsedRun:
    """One query's output, parsed. Times are perf_counter_ns of the chunk that carried them."""

    encode_ms: Optional[float] = None
    encode_size: Optional[int] = None
    t_encode_line: Optional[int] = None
    n_input_tokens: Optional[int] = None
    prefill_split_num: Optional[int] = None
    prefill_chunks: List[int] = field(default_factory=list)
    engine_ttft_ms: Optional[float] = None
    t_ttft_line: Optional[int] = None
    rate_tps: Optional[float] = None
    t_eos_line: Optional[int] = None
    writes: List[Tuple[int, str]] = field(default_factory=list)  # token text writes after the ttft line
    text: str = ""
    error_lines: List[str] = field(default_factory=list)


class _Timeline:
    """The concatenated output with, for every character, the arrival time of its chunk."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.text = "".join(c.text for c in chunks)
        self.starts: List[int] = []
        self.times: List[int] = []
        pos = 0
        for chunk in chunks:
            if chunk.text:
                self.starts.append(pos)
                self.times.append(chunk.t_ns)
                pos += len(chunk.text)

    def time_at(self, index: int) -> int:
        """Arrival time of the character at ``index``."""
        return self.times[bisect.bisect_right(self.starts, index) - 1]

    def line_end(self, index: int) -> int:
        """Index of the newline ending the line that contains ``index`` (or the last character)."""
        end = self.text.find("\n", index)
        return end if end >= 0 else len(self.text) - 1

    def line_time(self, index: int) -> int:
        """When the line containing ``index`` was complete: the arrival of its newline."""
        return self.time_at(self.line_end(index))

    def writes(self, start: int, end: int) -> List[Tuple[int, str]]:
        """The chunks overlapping text[start:end], each clipped to that range."""
        out: List[Tuple[int, str]] = []
        if start >= end:
            return out
        first = bisect.bisect_right(self.starts, start) - 1
        for k in range(max(first, 0), len(self.starts)):
            c_start = self.starts[k]
            if c_start >= end:
                break
            c_end = self.starts[k + 1] if k + 1 < len(self.starts) else len(self.text)
            lo, hi = max(c_start, start), min(c_end, end)
            if hi > lo:
                out.append((self.times[k], self.text[lo:hi]))
        return out


def parse_run(chunks: Sequence[Chunk]) -> ParsedRun:
    """Parse the output of one query: from the prompt being sent to the next ``prompt >>``."""
    line = _Timeline(chunks)
    text = line.text
    run = ParsedRun()
    if not text:
        return run
    run.error_lines = error_lines(text)
    encode = ENCODE_RE.search(text)
    if encode:
        run.encode_ms = float(encode.group(1))
        run.encode_size = int(encode.group(2)) if encode.group(2) else None
        run.t_encode_line = line.line_time(encode.start())
    inputs = INPUT_RE.search(text)
    if inputs:
        run.n_input_tokens = int(inputs.group(1))
        run.prefill_split_num = int(inputs.group(2)) if inputs.group(2) else None
    ttft = TTFT_RE.search(text)
    if ttft is None:
        return run
    run.prefill_chunks = prefill_chunks(text[:ttft.start()])
    run.engine_ttft_ms = float(ttft.group(1))
    ttft_end = line.line_end(ttft.start())
    run.t_ttft_line = line.time_at(ttft_end)
    # the engine's end-of-generation line is the LAST match: nothing but the next prompt follows
    # it, while the generated text before it may contain the same words (it is the model's text)
    eos = None
    for eos in EOS_RE.finditer(text, ttft_end):
        pass
    if eos is None:
        gen_end = len(text)
    else:
        run.rate_tps = float(eos.group(1)) if eos.group(1) else None
        run.t_eos_line = line.line_time(eos.start())
        # the log line starts after the last newline before it (its "[N][" prefix included)
        gen_end = text.rfind("\n", ttft_end, eos.start()) + 1
        if gen_end <= ttft_end:
            gen_end = eos.start()
        # the binary prints "\n\n" after the last token: not a token ("\r\n\r\n" in a CRLF log)
        if text.endswith("\r\n\r\n", ttft_end + 1, gen_end):
            gen_end -= 4
        elif text.endswith("\n\n", ttft_end + 1, gen_end):
            gen_end -= 2
    # a coloured log line's reset code ("\x1b[0m") can arrive after its newline, with the first
    # token: colour codes are not answer text (a write that held only codes is dropped)
    run.writes = [(t, strip_ansi(piece)) for t, piece in line.writes(ttft_end + 1, gen_end)]
    run.writes = [(t, piece) for t, piece in run.writes if piece]
    run.text = "".join(piece for _, piece in run.writes)
    return run


def prefill_chunks(before: str) -> List[int]:
    """The prefill chunk sizes logged before the ttft line, in order: the new logger's
    ``prefill chunk p=N ... input_tokens=M`` lines, else the old ``input_num_token:M`` lines."""
    lines = _lines(strip_ansi(before))
    chunks = []
    for line in lines:
        if PREFILL_CHUNK_START_RE.search(line):
            m = PREFILL_CHUNK_TOKENS_RE.search(line)
            if m:
                chunks.append(int(m.group(1)))
    if chunks:
        return chunks
    return [int(m.group(1)) for m in (CHUNK_RE.search(line) or CHUNK_ALONE_RE.match(line) for line in lines) if m]


def implied_token_count(rate_tps: Optional[float], t_first_ns: Optional[int], t_end_ns: Optional[int]) -> Optional[int]:
    """How many tokens the engine's own rate implies.

    ax-llm prints ``token_ids.size() / t_decode`` where token_ids includes the first token and the
    timer runs from just after the first token to just before that line; our clock sees the same
    span between the ttft line and the eos line, so rate x span is the engine's token count (the
    rate has 3+ significant digits: exact to the token for a few hundred tokens)."""
    if rate_tps is None or t_first_ns is None or t_end_ns is None or t_end_ns <= t_first_ns:
        return None
    return int(round(rate_tps * (t_end_ns - t_first_ns) / 1e9))


_WORD_RE = re.compile(r"\S+")


def answer_text(run: ParsedRun, max_new_tokens: int, n_engine: Optional[int]) -> Tuple[str, str]:
    """The generated text of one query, cut to ``max_new_tokens``, and how it was cut.

    What is answer and what is log is decided by position, not by pattern: the answer is exactly
    what the binary streamed between its ``ttft`` line and its final ``hit eos`` line (see
    ``parse_run``); the encode / input-token / prefill lines all come before the ttft line. So a
    model that writes something looking like a log line keeps it in its answer.

    ax-llm's ``main`` has no per-query token limit (it generates until EOS or until its KV cache
    is full: max_token_len is fixed when the model is compiled), so the limit is applied here:
      - by token, when every streamed write is one token: the number of writes equals the count
        the engine's own rate implies (``implied_token_count``), as run() checks it;
      - otherwise by whitespace-separated words - the best approximation without the tokenizer
        (a word is one token or more, so this keeps at most ``max_new_tokens`` words, which may
        be more tokens than that).
    """
    pieces = [piece for _, piece in run.writes]
    if n_engine is not None and len(pieces) == n_engine:
        if len(pieces) <= max_new_tokens:
            return run.text.strip(), "complete (%d tokens)" % len(pieces)
        return "".join(pieces[:max_new_tokens]).strip(), "cut after %d of %d tokens" % (max_new_tokens, len(pieces))
    words = list(_WORD_RE.finditer(run.text))
    if len(words) <= max_new_tokens:
        return run.text.strip(), "complete (%d words; tokens not countable)" % len(words)
    cut = words[max_new_tokens - 1].end() if max_new_tokens > 0 else 0
    return run.text[:cut].strip(), "cut after %d of %d whitespace words (tokens not countable)" % (
        max_new_tokens, len(words))
