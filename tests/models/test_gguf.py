"""harness.models.gguf: reading what llama-quantize wrote, and the variant cache.

The per-tensor line format is llama-quantize's own (ggml-org/llama.cpp src/llama-quant.cpp, as
vendored in llama-cpp-python 0.3.36: ``"[%4d/%4d] %-36s - [%s], type = %6s, "`` followed by
``"converting to %s .. "`` or a ``size = ...`` for a tensor kept as it is); the sample below is
from its run on the canary (Q4_K_M, with the k-quant fallback lines for 128-wide rows).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.models.gguf import tensor_types

SAMPLE = """\
llama_model_quantize_impl: model size  =     3.79 MiB
[   1/  30]                    token_embd.weight - [  128,   448,     1,     1], type =    f16, converting to q8_0 .. size =     0.11 MiB ->     0.06 MiB
[   2/  30]               blk.0.attn_norm.weight - [  128,     1,     1,     1], type =    f32, size =    0.000 MiB
llama_tensor_get_type: tensor cols 128 x 384 are not divisible by 256, required for q4_K - using fallback quantization q5_0
[   3/  30]                blk.0.ffn_down.weight - [  384,   128,     1,     1], type =    f16, converting to q5_0 .. size =     0.09 MiB ->     0.03 MiB
[   4/  30]                  blk.0.attn_q.weight - [  128,   128,     1,     1], type =    f16, converting to q5_0 .. size =     0.03 MiB ->     0.01 MiB
"""


def test_counts_each_tensor_once_by_the_type_written() -> None:
    assert tensor_types(SAMPLE) == {"Q8_0": 1, "F32": 1, "Q5_0": 2}
    assert tensor_types("") == {}
    # a tensor line cut before its type is not counted; CRLF line ends are
    assert tensor_types("[   1/  30]   x.weight - [  1,   1], type =") == {}
    assert tensor_types(SAMPLE.replace("\n", "\r\n")) == {"Q8_0": 1, "F32": 1, "Q5_0": 2}


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_any_text_gives_counts_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    counts = tensor_types(text * 20)
    assert all(isinstance(k, str) and v > 0 for k, v in counts.items())
    assert time.perf_counter() - started < 2.0


@pytest.mark.fuzz
@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(SAMPLE.splitlines(keepends=True)), max_size=50))
def test_counts_are_the_sum_of_the_lines(lines: Any) -> None:
    expected: Dict[str, int] = {}
    for line in lines:
        for kind, n in tensor_types(line).items():
            expected[kind] = expected.get(kind, 0) + n
    assert tensor_types("".join(lines)) == expected


@pytest.mark.slow
def test_variants_are_made_once_and_cached(tiny_gguf: Dict[str, Any], tiny_hf_dir: Path, llamacpp: Any) -> None:
    from harness.models.gguf import gguf_variants

    assert set(tiny_gguf) == {"F16", "Q8_0", "Q4_K_M"}
    for gguf_type, variant in tiny_gguf.items():
        assert variant.model.read_bytes()[:4] == b"GGUF" and variant.mmproj.read_bytes()[:4] == b"GGUF"
        assert sorted(p.name for p in variant.dir.iterdir()) == sorted(
            [variant.model.name, "mmproj-f16.gguf", "edge_vlm_bench_model.json"])
    # the tiny model's rows (64 wide) are too narrow for Q4_K: llama-quantize falls back, and says so
    assert "Q4_K" not in tiny_gguf["Q4_K_M"].tensor_types and tiny_gguf["Q4_K_M"].tensor_types
    started = time.monotonic()
    again = gguf_variants(tiny_hf_dir, llamacpp)
    assert time.monotonic() - started < 5.0  # a cache hit: no conversion
    assert {t: v.model for t, v in again.items()} == {t: v.model for t, v in tiny_gguf.items()}
