"""The SSE reader and the chat-chunk folding, on the formats real servers send.

Chunk shapes follow public samples: llama-server's stream with a top-level ``timings`` object on
every chunk and ``reasoning_content`` deltas (https://github.com/openai-php/client/issues/780), its
timings keys (https://github.com/ggml-org/llama.cpp/pull/15827), and `transformers serve`'s stream
(role chunk, content chunks, a final chunk with finish_reason and usage; read from its source in
transformers/cli/serving/chat_completion.py and seen live in tests/server/test_transformers_serve.py).
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from harness.runner.backends._sse import parse_lines
from harness.runner.backends.openai import collect_stream, token_counts


def chunk(delta=None, finish=None, **top) -> bytes:  # type: ignore[no-untyped-def]
    body = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
            "object": "chat.completion.chunk"}
    body.update(top)
    return b"data: " + json.dumps(body).encode() + b"\n"


def test_llama_server_stream_with_timings_and_reasoning() -> None:
    timings = {"cache_n": 7, "prompt_n": 10, "prompt_ms": 251.5, "predicted_n": 3, "predicted_ms": 40.2}
    lines = [chunk({"role": "assistant"}), b"\n",
             chunk({"reasoning_content": " it"}, timings=dict(timings, predicted_n=1)), b"\n",
             chunk({"content": " handles"}, timings=dict(timings, predicted_n=2)), b"\r\n",
             b": keep-alive comment\n", b"\n",
             chunk({"content": " a"}, timings=timings), b"\n",
             chunk({}, "length", timings=timings), b"\n",
             b"data: [DONE]\n", b"\n"]
    events = parse_lines(lines, stamps=range(100, 100 + len(lines)))
    result = collect_stream(events)
    assert [text for _, text in result.content] == [" it", " handles", " a"]
    # each content event is stamped when the blank line that ends it is read
    assert [t for t, _ in result.content] == [103, 105, 109]
    assert result.finish_reason == "length" and result.timings == timings
    assert token_counts(result) == (3, 10, "timings")


def test_transformers_serve_stream_with_usage_and_a_multi_token_event() -> None:
    lines = [chunk({"role": "assistant"}), b"\n", chunk({"content": "\n\n\n\n"}), b"\n",
             chunk({}, "length", usage={"completion_tokens": 8, "prompt_tokens": 93, "total_tokens": 101}), b"\n"]
    result = collect_stream(parse_lines(lines))
    assert len(result.content) == 1 and token_counts(result) == (8, 93, "usage")


def test_error_event_and_multiline_data() -> None:
    lines = [b'data: {"error": "boom"}\n', b"\n", b"data: {\"choices\": [{\"delta\":\n", b"data: {\"content\": \"x\"}}]}\n", b"\n"]
    result = collect_stream(parse_lines(lines))
    assert result.error == "boom"
    assert [text for _, text in result.content] == ["x"]  # data lines joined with LF, then parsed


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=40))
def test_any_bytes_never_crash(lines: list) -> None:
    collect_stream(parse_lines(lines))


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), max_size=20))
def test_content_round_trips(texts: list) -> None:
    lines = []
    for text in texts:
        lines += [chunk({"content": text}), b"\n"]
    result = collect_stream(parse_lines(lines + [b"data: [DONE]\n", b"\n"]))
    assert "".join(t for _, t in result.content) == "".join(texts)


@pytest.mark.fuzz
def test_long_line_is_linear() -> None:
    big = b"data: " + b"x" * 2_000_000 + b"\n"
    start = time.perf_counter()
    parse_lines([big, b"\n"] * 5)
    assert time.perf_counter() - start < 5.0
