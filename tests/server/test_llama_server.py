"""The openai backend against llama.cpp's real `llama-server` (scripts/build_llamacpp.sh's build)
serving the tiny random-weight Qwen2.5-VL as GGUF (F16 + mmproj, tests/llamacpp_env.py).

What llama-server adds over transformers serve: it takes `ignore_eos` (so the fixed length is asked
the vLLM/llama.cpp way), streams one event per token, sends its own `timings` (stored in engine,
beside our stamps), checks an API key, and serves parallel slots (-np) for concurrent streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

# the llama.cpp build and the tiny model's GGUF variants come from tests/llamacpp_env.py (the
# llama.cpp tests' session fixtures); without that module there is nothing to serve
llamacpp_env = pytest.importorskip("tests.llamacpp_env", reason="tests/llamacpp_env.py (llama.cpp fixtures) is missing")
llamacpp, tiny_gguf, tiny_hf_dir = llamacpp_env.llamacpp, llamacpp_env.tiny_gguf, llamacpp_env.tiny_hf_dir

from harness.runner.backends import get_backend
from harness.runner.backends.base import Announcer, BackendError
from harness.runner.concurrent import round_figures, run_round
from harness.runner.metrics import compute_metrics
from harness.runner.protocol import GenerationSpec, ModelSpec
from tests.server.conftest import free_port, start_or_fail
from tests.server.test_transformers_serve import image

pytestmark = pytest.mark.server

KEY_ENV = "BENCH_TEST_LLAMA_KEY"
KEY = "test-key-not-a-secret"


def server_cmd(llamacpp, gguf, port: int) -> list:  # type: ignore[no-untyped-def]
    tool = llamacpp.tool("llama-server")
    if not tool.is_file():
        pytest.fail("llama-server is not in the llama.cpp build at %s (bash scripts/build_llamacpp.sh builds it)"
                    % llamacpp.bin)
    return [str(tool), "-m", str(gguf.model), "--mmproj", str(gguf.mmproj), "--host", "127.0.0.1", "--port",
            str(port), "-np", "4", "-c", "4096", "-t", "2", "--no-webui"]


@pytest.fixture(scope="module")
def llama_server(llamacpp, tiny_gguf) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    server = start_or_fail(server_cmd(llamacpp, tiny_gguf["F16"], port), port, {"LLAMA_API_KEY": KEY},
                           ready_path="/health")
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        server.stop()


def _backend(url: str, **options):  # type: ignore[no-untyped-def]
    opts = {"url": url, "api_key_env": KEY_ENV, "extra_body": {"cache_prompt": False}}
    opts.update(options)
    return get_backend("openai")(opts, ModelSpec(variant="f16", path="gguf"))


def test_api_key_from_the_named_variable(llama_server: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(BackendError, match="refused the API key"):
        _backend(llama_server).load()


def test_fixed_length_per_token_events_and_server_timings(llama_server: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = _backend(llama_server)
    backend.load()
    assert backend.form == "ignore_eos" and backend.refused_forms == []
    announce = Announcer()
    raw = announce.stamped(backend.run(image(224), GenerationSpec(output_tokens=8), announce=announce))
    metrics, itl, _ = compute_metrics(raw)
    timings = raw.engine["server_timings"]
    assert raw.n_output_tokens == 8 and timings["predicted_n"] == 8  # greedy random weights, EOS ignored
    assert raw.engine["finish_reason"] == "length"
    chunks = raw.engine["chunks"]
    if chunks["multi_token_events"]:  # a token that is not whole UTF-8 is held back and merged
        assert chunks["n_content_events"] < 8 and not raw.token_times
        assert any("content events" in w for w in raw.warnings)
    else:  # one event per token: every token has its own arrival
        assert len(raw.token_times) == 8 and len(itl) == 7
    assert raw.n_visual_tokens is not None and raw.n_visual_tokens >= (224 // 28) ** 2
    assert metrics["e2e_ms"] > metrics["ttft_ms"] > 0
    # cache_prompt false: the server evaluated the whole prompt, and its count is the usage count
    assert timings["prompt_n"] == raw.n_input_tokens == raw.engine["usage"]["prompt_tokens"]


def test_parallel_slots_take_concurrent_streams(llama_server: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = _backend(llama_server)
    backend.load()
    outcomes = run_round(backend, image(112), GenerationSpec(output_tokens=6), 4)
    assert [o.error for o in outcomes] == [None] * 4
    figures = round_figures(outcomes)
    assert figures["round_output_tokens"] == 24 and figures["round_ok_streams"] == 4
    assert figures["round_throughput_tps"] == pytest.approx(24 * 1000.0 / figures["round_wall_ms"])


def test_backend_launches_and_stops_the_server(llamacpp, tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    cmd = server_cmd(llamacpp, tiny_gguf["F16"], port)
    backend = get_backend("openai")({"url": "http://127.0.0.1:%d" % port, "launch": {"cmd": cmd, "ready_timeout_s": 120}},
                                    ModelSpec(variant="f16", path=str(tiny_gguf["F16"].model)))
    info = backend.load()
    server = backend.server
    try:
        assert info.extra["launched"][0].endswith("llama-server")
        raw = backend.run(image(112), GenerationSpec(output_tokens=4))
        assert raw.n_output_tokens == 4
    finally:
        backend.close()
    assert server is not None and server.process.poll() is not None
