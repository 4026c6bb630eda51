"""Fuzz: llama.cpp multimodal CLI log parsing (runner/backends/_llamacpp_parse.py): stderr logs and stdout
tokens in arbitrary chunks, current llama-mtmd-cli and older llava-cli formats.

Property: no exception, figures finite, linear time (the issue: 10-15 s on one 20-40 kB line; "\\w+ slice"
and "\\w+ decoded" started inside words). Seeds: the recorded real stderr of llama-mtmd-cli
(tests/backends/fixtures/llamacpp_mtmd_cli_tiny.stderr.log) and llava-cli's output from llama.cpp's docs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.backends._axllm_parse import Chunk
from harness.runner.backends._llamacpp_parse import parse_query
from tests.backends.test_llamacpp_legacy_cli import LLAVA_CLI_STDERR

from .adversarial import FUZZ_SETTINGS, check_linear, mutated
from .conftest import timed

pytestmark = pytest.mark.fuzz

RECORDED = (Path(__file__).parents[1] / "backends" / "fixtures" / "llamacpp_mtmd_cli_tiny.stderr.log").read_text()


def _check(log: str, out: str = "\nhello world\n\n") -> None:
    query = parse_query([Chunk(0, log, "err"), Chunk(1, out, "out")])
    assert all(math.isfinite(v) for v in query.perf.values())
    assert all(math.isfinite(v) for v in query.encode_ms + query.media_decode_ms)
    assert query.n_media_tokens is None or query.n_media_tokens >= 0


@FUZZ_SETTINGS
@given(mutated([RECORDED, LLAVA_CLI_STDERR]), st.text(max_size=200))
def test_logs_never_raise(log: str, out: str) -> None:
    timed("llama.cpp CLI log", _check, log, out, what="%d chars of log" % len(log))


def test_linear_time() -> None:
    sample = next(line for line in RECORDED.splitlines() if "image" in line)
    check_linear(_check, sample, lambda text, name: timed("llama.cpp CLI log", _check, text, what=name)[1])


def test_issue_reproducers_long_lines() -> None:
    traps = ["a" * 40_000, "a" * 40_000 + " slice", "x" * 20_000 + " decoded (batch 1/1) in",
             "encoding " + "a" * 40_000, "prompt eval time =" + " " * 40_000, " E" + " " * 40_000 + "x",
             "error:" + "e" * 40_000, "encode_image_with_clip: image embedding created:" + " " * 40_000]
    for trap in traps:
        _, spent = timed("llama.cpp CLI log", _check, trap, what="issue trap %r..." % trap[:24])
        assert spent < 0.5, (trap[:40], spent)
