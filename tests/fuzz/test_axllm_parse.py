"""Fuzz: ax-llm console parsing (runner/backends/_axllm_parse.py) and the console reader's decoding
(runner/backends/_axllm_io.py): init text (CMM table and progress lines, error lines), one query's output split
into arbitrary chunks, the answer cut, and bytes read from the engine in arbitrary pieces.

Property: no exception, figures finite or None, the answer text is a piece of the output, linear time (the
issue: 10-15 s on one 20-40 kB line). Seeds: the real AXCL logs of tests/backends/test_axllm_axcl_logs.py and
the recorded LLM-8850 video log."""

from __future__ import annotations

import codecs
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.backends._axllm_io import ConsoleProcess
from harness.runner.backends._axllm_parse import Chunk, answer_text, implied_token_count, parse_init, parse_run
from tests.backends.test_axllm_axcl_logs import (AXLLM_RUN_IMAGE_QUERY, M5_MINUS_ONE, RADXA_IMAGE_INIT,
                                                 RADXA_IMAGE_QUERY, RADXA_VIDEO_INIT_TAIL)

from .adversarial import FUZZ_SETTINGS, check_linear, mutated
from .conftest import timed

pytestmark = pytest.mark.fuzz

QUERIES = [RADXA_IMAGE_QUERY, AXLLM_RUN_IMAGE_QUERY, RADXA_IMAGE_QUERY.replace("\n", "\r\n")]
INITS = [RADXA_IMAGE_INIT, RADXA_VIDEO_INIT_TAIL, M5_MINUS_ONE]


def _check_init(text: str) -> None:
    info = parse_init(text)
    remain = info.get("remain_cmm_mb_after_init")
    assert remain is None or (isinstance(remain, int) and remain >= 0)


def _split(text: str, cuts: list) -> list:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(text)]:
        if p > last:
            pieces.append(text[last:p])
            last = p
    return [Chunk(i * 1000, piece) for i, piece in enumerate(pieces)]


def _check_run(chunks: list) -> None:
    run = parse_run(chunks)
    for v in (run.encode_ms, run.engine_ttft_ms, run.rate_tps):
        assert v is None or math.isfinite(v)
    whole = "".join(c.text for c in chunks)
    assert all(piece in whole or "\x1b" in whole for _, piece in run.writes)
    n = implied_token_count(run.rate_tps, run.t_ttft_line, run.t_eos_line)
    text, how = answer_text(run, 4, n)
    assert isinstance(text, str) and how


@FUZZ_SETTINGS
@given(mutated(INITS))
def test_init_never_raises(text: str) -> None:
    timed("ax-llm init (CMM table, errors)", _check_init, text)


@FUZZ_SETTINGS
@given(mutated(QUERIES), st.lists(st.integers(0, 5000), max_size=8))
def test_query_output_never_raises(text: str, cuts: list) -> None:
    timed("ax-llm query output", _check_run, _split(text, cuts), what="%d chars in chunks" % len(text))


@pytest.mark.parametrize("reader,sample", [("ax-llm init (CMM table, errors)", RADXA_IMAGE_INIT.splitlines()[-8]),
                                           ("ax-llm query output", RADXA_IMAGE_QUERY.splitlines()[0])])
def test_linear_time(reader: str, sample: str) -> None:
    fn = _check_init if "init" in reader else (lambda text: _check_run([Chunk(0, text)]))
    check_linear(fn, sample, lambda text, name: timed(reader, fn, text, what=name)[1])


def test_issue_reproducers_long_lines() -> None:
    # 10-15 s on one 20-40 kB line: the shapes that made the old patterns backtrack
    traps = [
        "image encode time" + " " * 40_000 + "x",
        "ttft" + " " * 40_000 + ":",
        "hit eos" + " " * 40_000 + ", avg",
        "input token num" + " " * 40_000,
        "prefill chunk p=0 " * 2_200,
        "\n" * 40_000 + "x",
        " total size=1KB" + ",used=1KB" * 4_000,
        "[I][ Run][ 659]:" + " " * 40_000 + "input_num_token",
        "12:00:00.000 ERR " + "a:1" * 13_000,
    ]
    for trap in traps:
        for fn, reader in ((_check_init, "ax-llm init (CMM table, errors)"),
                           (lambda t: _check_run([Chunk(0, "ttft: 1 ms\n" + t), Chunk(1, t)]), "ax-llm query output")):
            _, spent = timed(reader, fn, trap, what="issue trap %r..." % trap[:24])
            assert spent < 0.5, (trap[:40], spent)


@FUZZ_SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(1, 64), min_size=1, max_size=10))
def test_console_decoding_of_any_bytes(data: bytes, sizes: list) -> None:
    # ConsoleProcess decodes each read with an incremental UTF-8 decoder (errors replaced): pieces cut
    # anywhere, even inside a character, decode to the same text as the whole
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out, pos = [], 0
    for size in sizes * (len(data) // max(1, sum(sizes)) + 1):
        if pos >= len(data):
            break
        out.append(decoder.decode(data[pos:pos + size]))
        pos += size
    out.append(decoder.decode(data[pos:], final=True))
    assert "".join(out) == data.decode("utf-8", "replace")


def test_console_process_reads_invalid_utf8_from_a_real_process() -> None:
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe \\xe6\\x97'); sys.stdout.flush()"
    proc = ConsoleProcess([sys.executable, "-c", code], cwd=None, use_pty=False)
    text = ""
    try:
        while True:
            chunk = proc.read_chunk(5.0)
            if chunk is None:
                break
            text += chunk.text
    except Exception as exc:  # ProcessExited once the output ends
        assert type(exc).__name__ == "ProcessExited"
    finally:
        proc.close(quit_line=None)
    assert text.startswith("ok ") and "\ufffd" in text
