"""The `transformers` backend on tiny random-weight Qwen-VL models: phases, counts, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from harness.runner.backends import get_backend
from harness.runner.backends.base import BackendError, BackendUnavailable, ModelNotFound, UnsupportedWorkload
from harness.runner.protocol import GenerationSpec, ModelSpec
from harness.runner.workloads import Frame, WorkloadInputs, input_digest

REPO = Path(__file__).resolve().parents[2]
N_TOKENS = 8


def _frame(width: int, height: int, index: int) -> Frame:
    """Deterministic pixels: a diagonal colour ramp shifted per frame (a slow pan)."""
    np = pytest.importorskip("numpy")
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x + 4 * index) % 256, (y * 2) % 256, (x + y + 16 * index) % 256], axis=-1)
    return Frame(width=width, height=height, rgb=rgb.astype(np.uint8).tobytes())


def _inputs(kind: str) -> WorkloadInputs:
    if kind == "image":
        frames = [_frame(448, 448, 0)]
    else:
        frames = [_frame(308, 308, i) for i in range(8)]
    prompt = "Describe what you see."
    return WorkloadInputs(name=kind, kind=kind, frames=frames, prompt=prompt, fps=2.0,
                          input_sha256=input_digest(frames, prompt))


def _backend(path: Path, **options: object):
    return get_backend("transformers")(dict(options), ModelSpec(variant="tiny", path=str(path)))


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs: Dict[str, Path]):
    backend = _backend(tiny_model_dirs["qwen2.5-vl"], device="cpu", dtype="float32")
    info = backend.load()
    yield backend, info
    backend.close()


def test_load_info_labels_random_weights(loaded, tiny_model_dirs: Dict[str, Path]) -> None:
    from harness.runner.backends.transformers_backend import weights_sha256

    _, info = loaded
    assert info.weights == "random"
    assert info.dtype == "float32" and info.accelerator == "cpu"
    assert {"transformers", "torch"} <= set(info.engine_versions)
    assert info.engine.startswith("transformers ")
    assert "qwen2.5-vl-tiny" in info.model_id
    assert info.model_sha256 == weights_sha256(str(tiny_model_dirs["qwen2.5-vl"]))[0]
    assert len(info.model_sha256) == 64
    assert info.extra["marker"]["made_by"] == "bench models make"


@pytest.mark.parametrize("kind, grid_key, grid, n_visual", [
    ("image", "image_grid_thw", [[1, 32, 32]], 256),  # (448/14)^2 / 2^2
    ("video", "video_grid_thw", [[4, 22, 22]], 484),  # 8/2 * (308/14)^2 / 2^2: one video, not 8 images
])
def test_run_times_every_phase(loaded, kind: str, grid_key: str, grid: List[List[int]], n_visual: int) -> None:
    backend, _ = loaded
    assert backend.supports(kind)
    phases: List[str] = []
    raw = backend.run(_inputs(kind), GenerationSpec(output_tokens=N_TOKENS), on_phase=phases.append)
    assert raw.n_output_tokens == N_TOKENS
    assert len(raw.token_times) == raw.n_output_tokens
    assert raw.t_start < raw.t_preprocess_end <= raw.t_vision_start < raw.t_vision_end < raw.token_times[0]
    assert raw.token_times == sorted(raw.token_times)
    assert raw.n_visual_tokens == n_visual
    assert raw.n_input_tokens > n_visual
    assert raw.engine[grid_key] == grid
    assert raw.engine["vision_calls"] == 1
    other = "image_grid_thw" if kind == "video" else "video_grid_thw"
    assert other not in raw.engine
    if kind == "video":
        assert raw.engine["second_per_grid_ts"] == [1.0]  # temporal patch of 2 frames at 2 fps
    assert phases == ["preprocess", "vision_encode", "prefill", "decode"]
    assert raw.peak_accel_mb is None and raw.peak_accel_source == "none (CPU: model memory is host memory)"
    assert isinstance(raw.output_text, str)
    assert raw.warnings == []


def test_output_length_is_fixed_and_greedy_is_repeatable(loaded) -> None:
    backend, _ = loaded
    first = backend.run(_inputs("image"), GenerationSpec(output_tokens=5))
    again = backend.run(_inputs("image"), GenerationSpec(output_tokens=5))
    assert first.n_output_tokens == again.n_output_tokens == 5
    assert first.output_text == again.output_text


def test_qwen2_vl_video_path(tiny_model_dirs: Dict[str, Path]) -> None:
    backend = _backend(tiny_model_dirs["qwen2-vl"], threads=1, attn_implementation="sdpa")
    info = backend.load()
    try:
        assert info.extra["model_class"] == "Qwen2VLForConditionalGeneration"
        assert info.extra["threads"] == 1
        raw = backend.run(_inputs("video"), GenerationSpec(output_tokens=3))
        assert raw.engine["video_grid_thw"] == [[4, 22, 22]] and raw.n_visual_tokens == 484
        assert raw.n_output_tokens == len(raw.token_times) == 3
    finally:
        backend.close()


def test_weights_without_marker_are_real(tiny_model_dirs: Dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "Some-VL-Model"
    shutil.copytree(tiny_model_dirs["qwen2.5-vl"], copy)
    (copy / "edge_vlm_bench_model.json").unlink()
    backend = _backend(copy, dtype="bfloat16")
    info = backend.load()
    backend.close()
    assert info.weights == "real"
    assert info.model_id == "Some-VL-Model"
    assert info.dtype == "bfloat16"


def test_checkpoint_sampling_settings_are_overridden(tiny_model_dirs: Dict[str, Path], tmp_path: Path) -> None:
    """A real Qwen2.5-VL-Instruct generation_config samples with a repetition penalty; we decode greedily."""
    copy = tmp_path / "instruct-like"
    shutil.copytree(tiny_model_dirs["qwen2.5-vl"], copy)
    (copy / "generation_config.json").write_text(
        '{"do_sample": true, "temperature": 0.1, "top_p": 0.001, "top_k": 1, "repetition_penalty": 1.05, '
        '"eos_token_id": [2050, 2048], "pad_token_id": 2048}'
    )
    backend = _backend(copy)
    backend.load()
    try:
        config = backend.generation_config(4)
        assert (config.do_sample, config.num_beams, config.repetition_penalty) == (False, 1, 1.0)
        assert (config.max_new_tokens, config.min_new_tokens) == (4, 4)
        # what generate() actually uses after merging in the checkpoint's defaults
        merged, _ = backend.hf_model._prepare_generation_config(config)
        assert (merged.do_sample, merged.repetition_penalty, merged.temperature, merged.top_p) == (False, 1.0, 1.0, 1.0)
        raw = backend.run(_inputs("image"), GenerationSpec(output_tokens=4))
        assert raw.n_output_tokens == 4 and raw.warnings == []
    finally:
        backend.close()


def test_marker_name_matches_the_model_maker() -> None:
    from harness.models.marker import MARKER_NAME
    from harness.runner.backends import transformers_backend

    assert transformers_backend.MARKER_NAME == MARKER_NAME  # the runner cannot import harness.models


def test_missing_model_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound) as caught:
        _backend(missing).load()
    message = str(caught.value)
    assert str(missing) in message and "does not exist" in message
    assert "bench models make --arch qwen2.5-vl --preset small --out DIR" in message


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="not a Hugging Face model directory \\(no config.json\\)"):
        _backend(tmp_path).load()


def test_unknown_option_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as caught:
        _backend(tmp_path, precision="fp16")
    assert str(caught.value) == (
        "backend 'transformers': unknown option(s) precision; "
        "known options: device, dtype, attn_implementation, threads"
    )


@pytest.mark.parametrize("options, message", [
    ({"device": "tpu"}, "device 'tpu' not understood; use one of cpu, cuda, auto or cuda:N"),
    ({"dtype": "int4"}, "dtype 'int4' not understood; use one of float32, bfloat16, float16, auto"),
    ({"attn_implementation": "fast"}, "attn_implementation 'fast' not understood"),
    ({"threads": 0}, "threads must be a positive integer, got 0"),
])
def test_bad_option_values(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(BackendError, match=message.replace("(", "\\(").replace(")", "\\)")):
        _backend(tmp_path, **options)


def test_cuda_requested_without_cuda(tiny_model_dirs: Dict[str, Path]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(BackendError, match="device 'cuda' requested but CUDA is not available"):
        _backend(tiny_model_dirs["qwen2.5-vl"], device="cuda").load()


def test_engine_not_installed_names_the_extra(tiny_model_dirs: Dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    with pytest.raises(BackendUnavailable) as caught:
        _backend(tiny_model_dirs["qwen2.5-vl"]).load()
    assert "transformers backend: transformers is not installed" in str(caught.value)
    assert "pip install -e '.[local]'" in str(caught.value)


def test_model_without_video_path(tmp_path: Path) -> None:
    """An image-only VLM (tiny LLaVA): images run through tower + projector hooks, video is refused."""
    torch = pytest.importorskip("torch")
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, Qwen2Config)

    from harness.models.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.chat_template = (
        "{% for m in messages %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=56, patch_size=14),
        text_config=Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(tmp_path)
    LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, image_token="<image>", chat_template=tokenizer.chat_template,
    ).save_pretrained(tmp_path)

    backend = _backend(tmp_path)
    info = backend.load()
    try:
        assert backend.supports("image") and not backend.supports("video")
        assert "no video" in info.extra["unsupported"]["video"]
        raw = backend.run(_inputs("image"), GenerationSpec(output_tokens=3))
        assert raw.n_visual_tokens == 16  # (56/14)^2 patches, CLS dropped
        assert raw.t_preprocess_end <= raw.t_vision_start < raw.t_vision_end < raw.token_times[0]
        with pytest.raises(UnsupportedWorkload) as caught:
            backend.run(_inputs("video"), GenerationSpec(output_tokens=3))
        assert str(caught.value) == (
            "transformers backend cannot run video workload 'video': "
            "model LlavaForConditionalGeneration has no video processor (no video path)"
        )
    finally:
        backend.close()


def test_module_imports_with_stdlib_only() -> None:
    """The runner ships to Python 3.8 boards: importing the backend must not pull in an engine."""
    code = (
        "import sys; import harness.runner.backends.transformers_backend; "
        "bad = {'torch', 'transformers', 'numpy'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_module_is_python_38_compatible() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (pip install -e '.[dev]')")
    path = REPO / "harness" / "runner" / "backends" / "transformers_backend.py"
    result = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(
    not _cuda_available(),
    reason="no CUDA device on this machine (CPU only): the CUDA path - synchronised timestamps, "
    "torch.cuda peak memory, float16/bfloat16 - runs on the RTX PC and Jetson boards, not in CI here",
)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_path_times_phases_and_reports_accelerator_memory(tiny_model_dirs: Dict[str, Path], dtype: str) -> None:
    backend = _backend(tiny_model_dirs["qwen2.5-vl"], device="cuda", dtype=dtype)
    info = backend.load()
    try:
        assert info.accelerator.startswith("cuda") and info.dtype == dtype
        raw = backend.run(_inputs("video"), GenerationSpec(output_tokens=8, warmup=0, repetitions=1))
        assert raw.n_output_tokens == 8 and len(raw.token_times) == 8
        assert raw.t_start < raw.t_preprocess_end <= raw.t_vision_start < raw.t_vision_end < raw.token_times[0]
        assert raw.peak_accel_mb is not None and raw.peak_accel_mb > 0
        assert "max_memory_allocated" in raw.peak_accel_source
    finally:
        backend.close()


def test_an_unreadable_marker_still_labels_the_weights_random(tmp_path: Path) -> None:
    from harness.runner.backends.base import MARKER_NAME, read_quantization_info
    from harness.runner.backends.transformers_backend import _read_marker

    assert _read_marker(str(tmp_path)) is None  # no marker: someone else's (real) weights
    (tmp_path / MARKER_NAME).write_text("{not json")
    marker = _read_marker(str(tmp_path))
    assert marker is not None and marker["weights"] == "random" and "unreadable" in marker["error"]
    (tmp_path / "quantization.json").write_text("[1, 2]")
    assert read_quantization_info(str(tmp_path)) == {"error": "not an object"}
