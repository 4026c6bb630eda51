"""`bench models quantize`: quantized variants of a Hugging Face VLM directory, made by torchao.

Each variant is a complete model directory (weights, config with its ``quantization_config``,
processor and tokenizer) that ``AutoModelForImageTextToText.from_pretrained`` loads as it is, so
the runner's `transformers` backend measures and evaluates it unchanged - on a board too, given
torchao there. A ``quantization.json`` beside it records the tool, its version, the exact config,
which modules were quantized and the source model's weights sha256.

Methods (all CPU-capable with torch 2.14 / torchao 0.18; tried on the canary):
  int8-dynamic  W8A8: int8 weights, activations quantized per token at run time
                (torchao Int8DynamicActivationInt8WeightConfig - what torch.ao's
                quantize_dynamic does, in a form transformers can save and load)
  int8-weight   W8A16/32: int8 per-channel weights, float activations (Int8WeightOnlyConfig)
  int4-weight   int4 weights, symmetric, groups of 32 (IntxWeightOnlyConfig); stored unpacked
                in int8 containers (torchao's packed int4 layouts need CUDA or ARM kernels), so
                the file is not smaller than int8, but the weights hold only 16 levels
Every nn.Linear is quantized (vision tower, merger, language model); the embeddings and the tied
LM head stay float (torchao's default), as in the usual weight-only recipes.

The torchao methods take a transformers model directory (config.json + safetensors); the
``nncf-*`` methods (harness/models/quantize_openvino.py) take an OpenVINO IR directory.
``METHOD_INPUTS`` says which; ``quantize_variants`` refuses a directory of the wrong kind and
names the family that fits it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

# nncf-* methods for OpenVINO IR directories (quantize_openvino imports nncf only when it runs)
from .quantize_openvino import NNCF_METHODS, QUANT_INFO, IRQuantizeResult, is_openvino_ir, quantize_ir

TORCHAO_METHODS: Dict[str, str] = {
    "int8-dynamic": "torchao Int8DynamicActivationInt8WeightConfig (int8 weights, dynamic per-token int8 activations)",
    "int8-weight": "torchao Int8WeightOnlyConfig (int8 per-channel weights, float activations)",
    "int4-weight": "torchao IntxWeightOnlyConfig(weight_dtype=int4, granularity=PerGroup(32)), stored unpacked",
}
TRANSFORMERS_DIR = "a transformers model directory (config.json + safetensors)"
OPENVINO_IR_DIR = "an OpenVINO IR directory (openvino_language_model.xml)"
METHODS: Dict[str, str] = {**TORCHAO_METHODS, **NNCF_METHODS}
# which input each method accepts
METHOD_INPUTS: Dict[str, str] = {**{m: TRANSFORMERS_DIR for m in TORCHAO_METHODS},
                                 **{m: OPENVINO_IR_DIR for m in NNCF_METHODS}}
# Files a processor/tokenizer needs; copied from the source so the variant answers identically.
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt", "chat_template.jinja", "chat_template.json", "added_tokens.json",
                    "canary.json", "README.md")


@dataclass
class QuantizeResult:
    path: Path
    method: str
    quantized_modules: List[str]
    n_parameters: int
    weights_bytes: int
    source_bytes: int
    seconds: float
    info: Dict[str, Any] = field(default_factory=dict)


def _config(method: str) -> Any:
    import torch
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerGroup

    factories: Dict[str, Callable[[], Any]] = {
        "int8-dynamic": Int8DynamicActivationInt8WeightConfig,
        "int8-weight": Int8WeightOnlyConfig,
        "int4-weight": lambda: IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)),
    }
    return factories[method]()


def _weights_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


def source_kind(source: Path) -> Optional[str]:
    """TRANSFORMERS_DIR, OPENVINO_IR_DIR or None (neither). An IR directory has a config.json too
    (optimum copies it), so the IR is recognised first."""
    source = Path(source)
    if is_openvino_ir(source):
        return OPENVINO_IR_DIR
    if (source / "config.json").is_file() and (any(source.glob("*.safetensors"))
                                               or (source / "pytorch_model.bin").is_file()):
        return TRANSFORMERS_DIR
    return None


def check_method_input(source: Path, method: str) -> None:
    """ValueError when ``source`` is not the kind of directory ``method`` takes, naming the
    method family that fits it; FileNotFoundError when it is no model directory at all."""
    if method not in METHODS:
        raise ValueError("unknown quantization method %r; methods: %s" % (method, ", ".join(METHODS)))
    kind = source_kind(source)
    if kind is None:
        raise FileNotFoundError("%s is not a model directory: neither %s nor %s"
                                % (source, TRANSFORMERS_DIR, OPENVINO_IR_DIR))
    if kind != METHOD_INPUTS[method]:
        family = "nncf methods (%s)" % ", ".join(NNCF_METHODS) if kind == OPENVINO_IR_DIR \
            else "torchao methods (%s)" % ", ".join(TORCHAO_METHODS)
        raise ValueError("%s takes %s, but %s is %s: use the %s" % (method, METHOD_INPUTS[method], source, kind, family))


def quantize_model(source: Path, method: str, out_dir: Path) -> QuantizeResult:
    """Quantize the model directory ``source`` with ``method`` into ``out_dir`` (replaced)."""
    if method in NNCF_METHODS:
        check_method_input(source, method)
        return quantize_ir(source, method, out_dir)  # type: ignore[return-value]
    if method not in METHODS:
        raise ValueError("unknown quantization method %r; methods: %s" % (method, ", ".join(METHODS)))
    source = Path(source)
    if not (source / "config.json").is_file():
        raise FileNotFoundError("%s is not a Hugging Face model directory (no config.json)" % source)
    check_method_input(source, method)
    started = time.perf_counter()
    import torch
    import torchao
    import transformers
    from transformers import AutoModelForImageTextToText, TorchAoConfig

    from ..runner.backends.transformers_backend import weights_sha256

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = _config(method)
    # float32 first: the quantizer sees the weights as trained, not a bf16 rounding of them
    model = AutoModelForImageTextToText.from_pretrained(
        source, quantization_config=TorchAoConfig(quant_type=config), dtype=torch.float32, local_files_only=True)
    model.eval()
    quantized = sorted(name for name, module in model.named_modules()
                       if isinstance(module, torch.nn.Linear)
                       and type(module.weight).__module__.startswith("torchao"))
    if not quantized:
        raise RuntimeError("torchao quantized no module of %s with %s" % (source, method))
    model.save_pretrained(out)
    for name in _PROCESSOR_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    source_sha, _ = weights_sha256(str(source))
    info = {
        "method": method,
        "description": METHODS[method],
        "tool": "torchao %s via transformers %s TorchAoConfig" % (torchao.__version__, transformers.__version__),
        "torch": torch.__version__,
        "torchao_config": repr(config),
        "quantized_modules": quantized,
        "float_modules": "embeddings and the tied LM head",
        "source": str(source.resolve()),
        "source_weights_sha256": source_sha,
        "made_by": "bench models quantize",
    }
    (out / QUANT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return QuantizeResult(
        path=out, method=method, quantized_modules=quantized,
        n_parameters=sum(p.numel() for p in model.parameters()),
        weights_bytes=_weights_bytes(out), source_bytes=_weights_bytes(source),
        seconds=time.perf_counter() - started, info=info,
    )


def quantize_variants(source: Path, methods: Sequence[str], out_dir: Path) -> List[Union[QuantizeResult, IRQuantizeResult]]:
    """`bench models quantize --model SRC --method M [--method M2 ...] --out OUT`: one variant
    directory per method, ``OUT/<method>`` (devices.yaml then lists them as model variants)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError("unknown quantization method(s) %s; methods: %s" % (", ".join(unknown), ", ".join(METHODS)))
    for method in methods:  # every method fits the source before any variant is made
        check_method_input(Path(source), method)
    return [quantize_model(source, method, Path(out_dir) / method) for method in methods]
