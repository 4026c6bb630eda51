"""The openai backend against a real `transformers serve` with the tiny random-weight Qwen2.5-VL.

Truths from outside the code under test: the number of visual tokens follows Qwen2.5-VL's patch
arithmetic (14-pixel patches merged 2x2: (side / 28)^2 tokens, plus the <|vision_start|> and
<|vision_end|> delimiters); the output length is the one asked for and the server's usage says so;
the query's wall time around the call bounds every duration.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.runner.backends import get_backend
from harness.runner.backends.base import Announcer, BackendError
from harness.runner.clock import now_ns
from harness.runner.metrics import compute_metrics
from harness.runner.protocol import GenerationSpec, ModelSpec
from harness.runner.workloads import Frame, WorkloadInputs

pytestmark = pytest.mark.server


def image(side: int, prompt: str = "Describe this image.") -> WorkloadInputs:
    rgb = bytes((x * 7 + y * 3) % 256 for y in range(side) for x in range(side * 3))
    return WorkloadInputs("img", "image", [Frame(side, side, rgb)], prompt, 2.0, "")


@pytest.fixture(scope="module")
def backend(transformers_server: str, served_tiny_dir: Path):  # type: ignore[no-untyped-def]
    b = get_backend("openai")({"url": transformers_server, "temperature": 1.0, "seed": 0},
                              ModelSpec(variant="tiny", path=str(served_tiny_dir)))
    info = b.load()
    assert info.weights == "random" and info.model_id == str(served_tiny_dir)
    yield b
    b.close()


def test_fixed_length_found_by_refusal(backend) -> None:  # type: ignore[no-untyped-def]
    # transformers serve refuses unknown fields with 422 and takes min_new_tokens in generation_config
    assert backend.form == "generation_config"
    assert any("ignore_eos" in r and "422" in r for r in backend.refused_forms)


@pytest.mark.parametrize("side", [224, 448])
def test_counts_phase_order_and_visual_tokens(backend, side: int) -> None:  # type: ignore[no-untyped-def]
    announce = Announcer()
    t0 = now_ns()
    raw = backend.run(image(side), GenerationSpec(output_tokens=6), announce=announce)
    wall_ms = (now_ns() - t0) / 1e6
    metrics, itl, warnings = compute_metrics(announce.stamped(raw))
    assert raw.n_output_tokens == 6 and raw.engine["usage"]["completion_tokens"] == 6
    assert raw.engine["finish_reason"] == "length" and raw.engine["fixed_length"]["reached"]
    assert raw.n_visual_tokens == (side // 28) ** 2 + 2
    assert raw.n_input_tokens == raw.engine["usage"]["prompt_tokens"] > raw.n_visual_tokens
    chunks = raw.engine["chunks"]
    assert announce.t_start is not None and announce.t_first_token is not None or announce.token_times
    assert 0 < metrics["ttft_ms"] <= metrics["e2e_ms"] <= wall_ms
    assert chunks["arrival_ms"] == sorted(chunks["arrival_ms"]) and chunks["arrival_ms"][0] == pytest.approx(metrics["ttft_ms"], abs=1e-3)
    if chunks["multi_token_events"]:  # several tokens in one event: reported, no per-token times
        assert chunks["n_content_events"] < 6 and not raw.token_times and not itl
        assert any("content events" in w for w in raw.warnings)
    else:
        assert len(raw.token_times) == 6 and len(itl) == 5


def test_greedy_random_weights_arrive_in_one_event(transformers_server: str, served_tiny_dir: Path) -> None:
    """Greedy decoding of random weights repeats one whitespace token, which the server holds back
    and sends as one event: the backend must say so, not invent per-token times."""
    b = get_backend("openai")({"url": transformers_server}, ModelSpec(variant="tiny", path=str(served_tiny_dir)))
    b.load()
    raw = b.run(image(112), GenerationSpec(output_tokens=8))
    assert raw.n_output_tokens == 8 and raw.engine["chunks"]["n_content_events"] < 8
    assert raw.engine["chunks"]["multi_token_events"] and raw.token_times == []
    metrics, itl, _ = compute_metrics(raw)
    assert itl == [] and metrics["itl_p50_ms"] is None


def test_missing_api_key_variable_is_named(transformers_server: str, served_tiny_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("BENCH_TEST_NO_SUCH_KEY", raising=False)
    b = get_backend("openai")({"url": transformers_server, "api_key_env": "BENCH_TEST_NO_SUCH_KEY"},
                              ModelSpec(variant="tiny", path=str(served_tiny_dir)))
    with pytest.raises(BackendError, match="BENCH_TEST_NO_SUCH_KEY"):
        b.load()


def test_nothing_listening_is_a_clear_error(served_tiny_dir: Path) -> None:
    from tests.server.conftest import free_port

    b = get_backend("openai")({"url": "http://127.0.0.1:%d" % free_port()}, ModelSpec(variant="t", path="x"))
    with pytest.raises(BackendError, match="no OpenAI-compatible server answers at http://127.0.0.1"):
        b.load()
