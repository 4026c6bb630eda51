"""Build a real Qwen-VL architecture with random weights, an offline tokenizer and processor.

Everything is produced locally (no download): the directory loads with
``AutoProcessor.from_pretrained`` and the model class's ``from_pretrained`` under
``HF_HUB_OFFLINE=1``, exactly like a downloaded checkpoint, and carries a marker file so every
result measured on it is labelled random-weight.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Union

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from .marker import MARKER_NAME, write_model_marker
from .presets import ARCHS, PRESETS, VISION_GEOMETRY
from .tokenizer import BPE_VOCAB_SIZE, SPECIAL_TOKENS, build_tokenizer

# The published Qwen2.5-VL / Qwen2-VL processor limits: images and frames keep their size when
# between 56x56 and 3584x3584 (rounded to multiples of 28), so 448x448 -> 256 visual tokens and
# 8x308x308 -> 484, as on the real model.
_MIN_PIXELS = 56 * 56
_MAX_PIXELS = 28 * 28 * 16384


@dataclass
class MakeResult:
    path: Path
    arch: str
    preset: str
    n_parameters: int
    seconds: float
    files: List[str] = field(default_factory=list)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """transformers' progress bars off for the duration, restored after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _check(arch: str, preset: str) -> None:
    if arch not in ARCHS:
        raise ValueError("unknown arch %r; known: %s" % (arch, ", ".join(ARCHS)))
    if preset not in PRESETS:
        raise ValueError("unknown preset %r; known: %s" % (preset, ", ".join(PRESETS)))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def build_config(arch: str, preset: str, tokenizer_size: int = 0) -> Union[Qwen2_5_VLConfig, Qwen2VLConfig]:
    """The model config for ``arch``/``preset``; special-token ids are our tokenizer's.

    ``tokenizer_size`` (0: the tokenizer's actual size, computed without training it twice) sets
    the vocabulary of presets that do not fix one; it is rounded up to a multiple of 64.
    """
    _check(arch, preset)
    spec = copy.deepcopy(PRESETS[preset])
    n_tokens = tokenizer_size or (BPE_VOCAB_SIZE + len(SPECIAL_TOKENS))
    vocab_size = spec.get("vocab_size") or _round_up(n_tokens, 64)
    if vocab_size < n_tokens:
        raise ValueError("preset %r: vocab %d < tokenizer size %d" % (preset, vocab_size, n_tokens))
    ids = {token: (n_tokens - len(SPECIAL_TOKENS)) + i for i, token in enumerate(SPECIAL_TOKENS)}
    text = spec["text"]
    mrope = text.pop("mrope_section")
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(mrope) * 2 != head_dim:
        raise ValueError("preset %r: mrope_section %s must sum to head_dim/2 = %d" % (preset, mrope, head_dim // 2))
    tie = text.pop("tie_word_embeddings")
    text_config: Dict[str, Any] = dict(
        text,
        vocab_size=vocab_size,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": mrope},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        use_sliding_window=False,
    )
    vision = spec["vision"]
    token_ids = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie,
    )
    if arch == "qwen2.5-vl":
        vision_config = dict(
            VISION_GEOMETRY,
            depth=vision["depth"],
            hidden_size=vision["hidden_size"],
            intermediate_size=vision["intermediate_size"],
            num_heads=vision["num_heads"],
            out_hidden_size=text["hidden_size"],
            fullatt_block_indexes=list(vision["fullatt_block_indexes"]),
            hidden_act="silu",
        )
        config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, **token_ids)
    else:
        # Qwen2-VL's vision MLP is fc1/fc2 with an integer mlp_ratio (transformers rejects floats)
        vision_config = dict(
            depth=vision["depth"],
            embed_dim=vision["hidden_size"],
            hidden_size=text["hidden_size"],
            mlp_ratio=max(1, round(vision["intermediate_size"] / vision["hidden_size"])),
            num_heads=vision["num_heads"],
            patch_size=VISION_GEOMETRY["patch_size"],
            spatial_merge_size=VISION_GEOMETRY["spatial_merge_size"],
            temporal_patch_size=VISION_GEOMETRY["temporal_patch_size"],
            hidden_act="quick_gelu",
        )
        config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config, **token_ids)
    config.dtype = spec["dtype"]
    return config


def model_class(arch: str) -> type:
    _check(arch, "tiny")
    return Qwen2_5_VLForConditionalGeneration if arch == "qwen2.5-vl" else Qwen2VLForConditionalGeneration


def build_processor(arch: str, tokenizer: Any) -> Any:
    size = {"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}
    geometry = dict(
        patch_size=VISION_GEOMETRY["patch_size"],
        temporal_patch_size=VISION_GEOMETRY["temporal_patch_size"],
        merge_size=VISION_GEOMETRY["spatial_merge_size"],
    )
    image_processor = Qwen2VLImageProcessor(size=size, **geometry)
    # do_sample_frames off: a benchmark's frames are already the sampled frames and all are used;
    # cap_pixels_per_frame stated (as today's default) to pin behaviour across transformers releases
    video_processor = Qwen2VLVideoProcessor(
        size=size, do_sample_frames=False, cap_pixels_per_frame=False, **geometry
    )
    cls = Qwen2_5_VLProcessor if arch == "qwen2.5-vl" else Qwen2VLProcessor
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def make_model(arch: str, preset: str, out_dir: Path, seed: int = 0) -> MakeResult:
    """Build ``arch`` at ``preset`` with random weights (seeded) into ``out_dir``.

    The marker file is written last: a directory with a marker is complete.
    """
    _check(arch, preset)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = out / MARKER_NAME
    if stale.exists():
        stale.unlink()  # rebuilding: the directory is incomplete until the new marker lands
    tokenizer = build_tokenizer()
    config = build_config(arch, preset, tokenizer_size=len(tokenizer))
    dtype = getattr(torch, PRESETS[preset]["dtype"])
    # the initialiser draws from torch's global generator: seeding it makes builds reproducible;
    # fork_rng keeps the caller's random state untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # allocate in the target dtype: a 3b build needs ~8 GB, not 15
        try:
            model = model_class(arch)(config)
        finally:
            torch.set_default_dtype(previous)
    model.eval()
    n_parameters = sum(p.numel() for p in model.parameters())
    model.generation_config.do_sample = False
    with _quiet_progress():  # the CLI reports the build in one line of its own
        model.save_pretrained(out)
    build_processor(arch, tokenizer).save_pretrained(out)
    del model
    seconds = time.perf_counter() - started
    write_model_marker(
        out,
        {
            "weights": "random",
            "arch": arch,
            "preset": preset,
            "seed": seed,
            "n_parameters": n_parameters,
            "dtype": PRESETS[preset]["dtype"],
            "made_by": "bench models make",
            "build_seconds": round(seconds, 3),
        },
    )
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return MakeResult(path=out, arch=arch, preset=preset, n_parameters=n_parameters,
                      seconds=seconds, files=files)
