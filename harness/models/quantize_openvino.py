"""`bench models quantize` for OpenVINO IR directories: NNCF weight compression.

An OpenVINO GenAI VLM directory (what ``optimum-cli export openvino --task image-text-to-text``
writes: ``openvino_language_model.xml``, ``openvino_text_embeddings_model.xml``,
``openvino_vision_embeddings_model.xml``, ``openvino_vision_embeddings_merger_model.xml``, the
tokenizer and detokenizer IRs, configs) becomes a variant directory the ``openvino_genai`` backend
loads as it is. ``nncf.compress_weights`` (data-free, weight-only: activations stay float) rewrites
every IR that holds weights; the tokenizer/detokenizer IRs (string ops, no weights to compress)
and every other file are copied unchanged. ``quantization.json`` records the method, the NNCF
and OpenVINO versions, the exact arguments per file, which files were compressed and the
element types of the IR's constants after compression (counted in the XML), so provenance can
tell the variants apart.

Methods:
  nncf-int8  INT8_ASYM per output channel (NNCF's default mode) on every weight-holding IR:
             MatMul, Gather (embedding) and Convolution weights become u8 with a u8 zero point
  nncf-int4  the language model INT4_ASYM, groups of 32 input channels, ratio 1.0 (every MatMul
             but the last); NNCF keeps the last MatMul (the LM head) and embeddings at its 8-bit
             backup (INT8_ASYM) unless all_layers=True, as its documentation says. The vision
             encoder, merger and text embeddings get INT8_ASYM: NNCF documents 4-bit as an LLM
             recipe and compresses embeddings and convolutions to 8 bits anyway.
Group size 32 divides every input dimension of the canary IR (vision 96/192, merger 384,
language model 128/384); NNCF's usual 128 would not divide 96 or 192. A MatMul whose input
dimension 32 does not divide gets the largest power-of-two group >= 16 that does
(``GroupSizeFallbackMode.ADJUST``); failing that NNCF compresses it to the INT8_ASYM backup. The
marker lists the low-bit MatMul weights per file, so a layer that fell back is visible.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from harness.runner.backends.base import QUANT_INFO_NAME as QUANT_INFO  # the backends read it

NNCF_METHODS: Dict[str, str] = {
    "nncf-int8": "nncf.compress_weights INT8_ASYM (per-channel u8 weights, u8 zero points) on every weight IR",
    "nncf-int4": "nncf.compress_weights INT4_ASYM group 32 ratio 1.0 on the language model (LM head INT8_ASYM "
                 "backup), INT8_ASYM on the vision encoder, merger and text embeddings",
}
LANGUAGE_MODEL = "openvino_language_model.xml"
INT4_GROUP_SIZE = 32
# IRs without weights to compress: string ops over a vocabulary
_COPY_UNCHANGED = ("openvino_tokenizer", "openvino_detokenizer")
_CONST_RE = re.compile(r'type="Const"[^>]*>\s*<data\b([^>]*)>')
_ELEMENT_TYPE_RE = re.compile(r'element_type="(\w+)"')


@dataclass
class IRQuantizeResult:
    path: Path
    method: str
    compressed_files: List[str]
    weights_bytes: int
    source_bytes: int
    seconds: float
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def quantized_modules(self) -> List[str]:  # the CLI's summary line counts these
        return self.compressed_files


def is_openvino_ir(path: Path) -> bool:
    """An OpenVINO GenAI VLM directory: it has the language model IR."""
    return (Path(path) / LANGUAGE_MODEL).is_file()


def constant_types(xml_path: Path) -> Dict[str, int]:
    """How many Constant layers of each element type (f32, u8, u4, i4...) the IR's XML declares."""
    text = Path(xml_path).read_text(encoding="utf-8", errors="replace")
    counts: Counter = Counter()
    for match in _CONST_RE.finditer(text):
        kind = _ELEMENT_TYPE_RE.search(match.group(1))
        if kind:
            counts[kind.group(1)] += 1
    return dict(sorted(counts.items()))


def _weight_source(output: Any) -> Any:
    """The Constant a weight input comes from, through the decompression subgraph NNCF inserts
    (Convert -> Subtract zero point -> Multiply scale -> Reshape groups -> Convert)."""
    node = output.get_node()
    for _ in range(8):
        kind = node.get_type_name()
        if kind == "Constant":
            return node
        if kind not in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose"):
            return None
        node = node.input_value(0).get_node()
    return None


def weight_types(xml_path: Path) -> Dict[str, Dict[str, str]]:
    """The element type of each MatMul / Gather / Convolution weight in the IR, by layer name:
    what the layers really compute with (u4, u8, f32...), read through openvino."""
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    found: Dict[str, Dict[str, str]] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        port = {"MatMul": 1, "Convolution": 1, "Gather": 0}.get(kind)
        if port is None:
            continue
        const = _weight_source(op.input_value(port))
        if const is None or len(const.get_shape()) < 2:  # a Gather's index, a runtime operand
            continue
        found.setdefault(kind, {})[op.get_friendly_name()] = const.get_element_type().get_type_name()
    return found


def _ir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.suffix in (".xml", ".bin"))


def _arguments(method: str, xml_name: str) -> Dict[str, Any]:
    """compress_weights arguments for one IR file, as JSON-able values."""
    if method == "nncf-int4" and xml_name == LANGUAGE_MODEL:
        return {"mode": "INT4_ASYM", "group_size": INT4_GROUP_SIZE, "ratio": 1.0,
                "group_size_fallback_mode": "ADJUST"}
    return {"mode": "INT8_ASYM"}


def _compress(model: Any, arguments: Dict[str, Any]) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    kwargs: Dict[str, Any] = {"mode": getattr(nncf.CompressWeightsMode, arguments["mode"])}
    if "group_size" in arguments:
        kwargs.update(group_size=arguments["group_size"], ratio=arguments["ratio"],
                      advanced_parameters=AdvancedCompressionParameters(
                          group_size_fallback_mode=getattr(GroupSizeFallbackMode,
                                                           arguments["group_size_fallback_mode"])))
    return nncf.compress_weights(model, **kwargs)


def quantize_ir(source: Path, method: str, out_dir: Path) -> IRQuantizeResult:
    """Compress the weights of the OpenVINO IR directory ``source`` with ``method`` into
    ``out_dir`` (replaced)."""
    if method not in NNCF_METHODS:
        raise ValueError("unknown NNCF method %r; methods: %s" % (method, ", ".join(NNCF_METHODS)))
    source = Path(source)
    if not is_openvino_ir(source):
        raise FileNotFoundError("%s is not an OpenVINO IR directory (no %s)" % (source, LANGUAGE_MODEL))
    started = time.perf_counter()
    import nncf
    import openvino as ov

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    core = ov.Core()
    files: Dict[str, Any] = {}
    compressed: List[str] = []
    weight_irs = sorted(p.name for p in source.glob("*.xml") if p.with_suffix(".bin").is_file()
                        and not p.stem.startswith(_COPY_UNCHANGED))
    for item in sorted(source.iterdir()):
        if item.is_dir():
            shutil.copytree(item, out / item.name)
            continue
        if item.name in weight_irs or (item.suffix == ".bin" and item.with_suffix(".xml").name in weight_irs):
            continue  # written by save_model below
        shutil.copyfile(item, out / item.name)
    for name in weight_irs:
        arguments = _arguments(method, name)
        before = constant_types(source / name)
        model = _compress(core.read_model(str(source / name)), arguments)
        # compress_to_fp16=False: the weights NNCF leaves float stay as exported (f32 here)
        ov.save_model(model, str(out / name), compress_to_fp16=False)
        del model
        compressed.append(name)
        files[name] = {
            "arguments": arguments,
            "constant_types_before": before,
            "constant_types_after": constant_types(out / name),
            "weight_types_after": weight_types(out / name),
            "bytes_before": (source / name).stat().st_size + (source / name).with_suffix(".bin").stat().st_size,
            "bytes_after": (out / name).stat().st_size + (out / name).with_suffix(".bin").stat().st_size,
        }
    info = {
        "method": method,
        "description": NNCF_METHODS[method],
        "tool": "nncf %s compress_weights (data-free), OpenVINO %s" % (nncf.__version__, ov.get_version()),
        "nncf": nncf.__version__,
        "openvino": ov.get_version(),
        "compressed_files": compressed,
        "copied_unchanged": sorted(p.name for p in source.iterdir() if p.name not in files
                                   and p.with_suffix(".xml").name not in files),
        "files": files,
        "source": str(source.resolve()),
        "made_by": "bench models quantize",
    }
    (out / QUANT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return IRQuantizeResult(path=out, method=method, compressed_files=compressed, weights_bytes=_ir_bytes(out),
                            source_bytes=_ir_bytes(source), seconds=time.perf_counter() - started, info=info)
