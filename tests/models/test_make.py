"""`bench models make`: real Qwen-VL architectures with random weights, built offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.models import MARKER_NAME, build_config, make_model, model_class, read_model_marker  # noqa: E402
from harness.models.tokenizer import SPECIAL_TOKENS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARCHS = ("qwen2.5-vl", "qwen2-vl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny build per architecture, shared by this module's tests."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: make_model(arch, "tiny", root / arch, seed=0) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_build_loads_offline(tiny: dict, arch: str) -> None:
    from transformers import AutoProcessor

    made = tiny[arch]
    assert made.arch == arch and made.preset == "tiny"
    assert made.seconds < 10
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
                 "chat_template.jinja", MARKER_NAME):
        assert name in made.files
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by tests/conftest.py: no hub access
    processor = AutoProcessor.from_pretrained(made.path, local_files_only=True)
    model = model_class(arch).from_pretrained(made.path, local_files_only=True)
    assert sum(p.numel() for p in model.parameters()) == made.n_parameters
    assert processor.video_processor is not None and processor.image_processor is not None

    config, tokenizer = model.config, processor.tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert config.text_config.eos_token_id == ids["<|im_end|>"] == tokenizer.eos_token_id
    assert config.text_config.vocab_size >= len(tokenizer)

    for kind, pad in (("image", "<|image_pad|>"), ("video", "<|video_pad|>")):
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": "What is here?"}]}],
            tokenize=False, add_generation_prompt=True,
        )
        assert "<|vision_start|>%s<|vision_end|>What is here?" % pad in text
        assert text.endswith("<|im_start|>assistant\n")


def test_tokenizer_round_trips_text(tiny: dict) -> None:
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(tiny["qwen2.5-vl"].path).tokenizer
    text = "Describe the 8 frames: what moves, left to right? Ünïcödé 漢字"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert len(tokenizer(" the picture shows")["input_ids"]) < len(" the picture shows")  # merges learnt


def test_marker_labels_random_weights(tiny: dict, tmp_path: Path) -> None:
    made = tiny["qwen2.5-vl"]
    marker = read_model_marker(made.path)
    assert marker is not None
    assert marker["weights"] == "random"
    assert marker["made_by"] == "bench models make"
    assert (marker["arch"], marker["preset"], marker["seed"]) == ("qwen2.5-vl", "tiny", 0)
    assert marker["n_parameters"] == made.n_parameters
    assert read_model_marker(made.path / MARKER_NAME) == marker
    assert read_model_marker(tmp_path) is None
    (tmp_path / MARKER_NAME).write_text("{not json")
    assert read_model_marker(tmp_path)["weights"] == "random"  # unreadable never means real


def test_same_seed_same_weights(tiny: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    first = load_file(str(tiny["qwen2.5-vl"].path / "model.safetensors"))
    again = load_file(str(make_model("qwen2.5-vl", "tiny", tmp_path / "again", seed=0).path / "model.safetensors"))
    other = load_file(str(make_model("qwen2.5-vl", "tiny", tmp_path / "other", seed=1).path / "model.safetensors"))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_3b_has_the_published_dimensions() -> None:
    config = build_config("qwen2.5-vl", "3b")
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (2048, 11008, 36)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (16, 2, 151936)
    assert text.rope_parameters["rope_theta"] == 1e6
    assert list(text.rope_parameters["mrope_section"]) == [16, 24, 24]
    assert config.tie_word_embeddings is True
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (32, 1280, 3420, 16)
    assert (vision.out_hidden_size, vision.patch_size, vision.spatial_merge_size) == (2048, 14, 2)
    assert (vision.temporal_patch_size, vision.window_size) == (2, 112)
    assert list(vision.fullatt_block_indexes) == [7, 15, 23, 31]
    assert str(config.dtype).replace("torch.", "") == "bfloat16"
    with torch.device("meta"):  # shapes only: no 8 GB allocation
        model = model_class("qwen2.5-vl")(config)
    assert sum(p.numel() for p in model.parameters()) == 3_754_622_976  # Qwen2.5-VL-3B-Instruct


def test_qwen2_vl_mlp_ratio_is_an_int() -> None:
    for preset in ("tiny", "small", "3b"):
        assert isinstance(build_config("qwen2-vl", preset).vision_config.mlp_ratio, int)


def test_unknown_arch_or_preset() -> None:
    with pytest.raises(ValueError, match="unknown arch 'llava'; known: qwen2.5-vl, qwen2-vl"):
        build_config("llava", "tiny")
    with pytest.raises(ValueError, match="unknown preset '7b'; known: tiny, small, 3b"):
        make_model("qwen2.5-vl", "7b", Path("/nonexistent"))


def test_marker_reader_needs_no_torch() -> None:
    code = (
        "import sys; import harness.models as m; "
        "assert m.read_model_marker('.') is None; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'engine imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
