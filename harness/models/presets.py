"""Model dimensions per preset (plain data, standard library only).

``3b`` is the published Qwen2.5-VL-3B-Instruct configuration. ``tiny`` is sized for tests (builds
in well under a second); ``small`` for the CPU demo (one video-8f query of 32 tokens in ~1-3 s in
fp32 on a 2-core x86 machine). Qwen2-VL presets reuse the same text dimensions; its vision tower
has no windowed attention, no gated MLP and no separate ``out_hidden_size`` (the merger projects to
the text hidden size), so its vision entries are derived in ``make.py``.
"""

from __future__ import annotations

from typing import Any, Dict

ARCHS = ("qwen2.5-vl", "qwen2-vl")

PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": {
        "dtype": "float32",
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "mrope_section": [2, 3, 3],  # head_dim 16: must sum to head_dim / 2
            "tie_word_embeddings": True,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 4096,
        },
        "vision": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "fullatt_block_indexes": [1],
        },
    },
    "small": {
        "dtype": "float32",
        "text": {
            "hidden_size": 512,
            "intermediate_size": 1408,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "mrope_section": [8, 12, 12],  # head_dim 64
            "tie_word_embeddings": True,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 32768,
        },
        "vision": {
            "depth": 8,
            "hidden_size": 384,
            "intermediate_size": 1024,
            "num_heads": 6,
            "fullatt_block_indexes": [3, 7],
        },
    },
    "3b": {
        "dtype": "bfloat16",
        "vocab_size": 151936,
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "mrope_section": [16, 24, 24],  # head_dim 128
            "tie_word_embeddings": True,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 128000,
        },
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "fullatt_block_indexes": [7, 15, 23, 31],
        },
    },
}

# Shared by every preset: the published Qwen2.5-VL vision geometry, so visual token counts are
# the real model's (448x448 -> 256 tokens, 8x308x308 -> 484).
VISION_GEOMETRY: Dict[str, Any] = {
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "tokens_per_second": 2,
}
