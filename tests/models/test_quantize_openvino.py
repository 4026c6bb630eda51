"""`bench models quantize` with the nncf methods on the canary's OpenVINO IR
(tests/fixtures/canary_openvino): the weights really change type, the files shrink, the marker
says what was done, and a directory of the wrong kind is refused with the family that fits."""

from __future__ import annotations

import filecmp
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Dict

import pytest

pytest.importorskip("openvino")
nncf = pytest.importorskip("nncf")

from harness.models.quantize import (  # noqa: E402
    NNCF_METHODS,
    TORCHAO_METHODS,
    check_method_input,
    quantize_variants,
)
from harness.models.quantize_openvino import (  # noqa: E402
    LANGUAGE_MODEL,
    QUANT_INFO,
    IRQuantizeResult,
    constant_types,
    weight_types,
)

from ..conftest import BENCH, REPO, bench_env  # noqa: E402

CANARY_IR = REPO / "tests" / "fixtures" / "canary_openvino"
CANARY = REPO / "tests" / "fixtures" / "canary"
WEIGHT_IRS = ["openvino_language_model.xml", "openvino_text_embeddings_model.xml",
              "openvino_vision_embeddings_merger_model.xml", "openvino_vision_embeddings_model.xml"]
LM_HEAD = "__module.lm_head/aten::linear/MatMul"


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, IRQuantizeResult]:
    out = tmp_path_factory.mktemp("nncf")
    results = quantize_variants(CANARY_IR, ["nncf-int8", "nncf-int4"], out)
    return {r.method: r for r in results}  # type: ignore[union-attr]


def _types(xml: Path, op: str) -> Counter:
    return Counter(weight_types(xml)[op].values())


def test_source_ir_is_fp32() -> None:
    lm = weight_types(CANARY_IR / LANGUAGE_MODEL)["MatMul"]
    assert len(lm) == 15 and set(lm.values()) == {"f32"}  # 2 layers x 7 projections + the LM head
    assert "u8" not in constant_types(CANARY_IR / LANGUAGE_MODEL)


def test_int8_compresses_every_weight_ir_to_u8(variants: Dict[str, IRQuantizeResult]) -> None:
    made = variants["nncf-int8"]
    assert made.seconds < 30, made.seconds  # ~2-5 s here
    assert made.compressed_files == WEIGHT_IRS
    assert _types(made.path / LANGUAGE_MODEL, "MatMul") == Counter({"u8": 15})
    assert _types(made.path / "openvino_vision_embeddings_merger_model.xml", "MatMul") == Counter({"u8": 12})
    assert _types(made.path / "openvino_vision_embeddings_model.xml", "Convolution") == Counter({"u8": 1})
    assert _types(made.path / "openvino_text_embeddings_model.xml", "Gather") == Counter({"u8": 1})
    # u8 weights and u8 zero points, one per compressed weight; f16 scales
    assert constant_types(made.path / LANGUAGE_MODEL)["u8"] == 30


def test_int4_groups_the_language_model_and_keeps_the_head_at_int8(variants: Dict[str, IRQuantizeResult]) -> None:
    made = variants["nncf-int4"]
    assert made.seconds < 30, made.seconds
    lm = weight_types(made.path / LANGUAGE_MODEL)["MatMul"]
    assert lm.pop(LM_HEAD) == "u8"  # NNCF's 8-bit backup for the last MatMul (all_layers=False)
    assert set(lm.values()) == {"u4"} and len(lm) == 14
    # the vision side and the embeddings stay INT8_ASYM
    assert _types(made.path / "openvino_vision_embeddings_merger_model.xml", "MatMul") == Counter({"u8": 12})
    assert _types(made.path / "openvino_text_embeddings_model.xml", "Gather") == Counter({"u8": 1})
    lm_bin = LANGUAGE_MODEL.replace(".xml", ".bin")
    assert (made.path / lm_bin).stat().st_size < (variants["nncf-int8"].path / lm_bin).stat().st_size


def test_files_get_smaller(variants: Dict[str, IRQuantizeResult]) -> None:
    for made in variants.values():
        for xml in WEIGHT_IRS:
            bin_name = xml.replace(".xml", ".bin")
            assert (made.path / bin_name).stat().st_size < 0.5 * (CANARY_IR / bin_name).stat().st_size, (made.method, xml)
        assert made.weights_bytes < 0.4 * made.source_bytes  # 4.4 MB -> 1.5 MB (int8), 1.3 MB (int4)
    assert variants["nncf-int4"].weights_bytes < variants["nncf-int8"].weights_bytes


def test_marker_and_unchanged_files(variants: Dict[str, IRQuantizeResult]) -> None:
    for method, made in variants.items():
        info = json.loads((made.path / QUANT_INFO).read_text())
        assert info["method"] == method and info["nncf"] == nncf.__version__
        assert info["compressed_files"] == WEIGHT_IRS
        lm = info["files"][LANGUAGE_MODEL]
        assert lm["constant_types_before"]["f32"] == 49 and "u8" not in lm["constant_types_before"]
        assert lm["constant_types_after"] == constant_types(made.path / LANGUAGE_MODEL)
        assert lm["bytes_after"] < lm["bytes_before"]
        expected_mode = "INT4_ASYM" if method == "nncf-int4" else "INT8_ASYM"
        assert lm["arguments"]["mode"] == expected_mode
        for name in ("openvino_tokenizer.xml", "openvino_tokenizer.bin", "openvino_detokenizer.xml",
                     "openvino_detokenizer.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
            assert name in info["copied_unchanged"]
            assert filecmp.cmp(CANARY_IR / name, made.path / name, shallow=False), name
    int4 = json.loads((variants["nncf-int4"].path / QUANT_INFO).read_text())["files"][LANGUAGE_MODEL]
    assert int4["arguments"]["group_size"] == 32
    assert int4["constant_types_after"]["u4"] == 28  # 14 weights + 14 zero points
    # the two variants differ where provenance looks
    assert int4["constant_types_after"] != json.loads((variants["nncf-int8"].path / QUANT_INFO).read_text())[
        "files"][LANGUAGE_MODEL]["constant_types_after"]


def test_wrong_input_kind_names_the_right_family() -> None:
    with pytest.raises(ValueError, match=r"nncf-int8 takes an OpenVINO IR directory .* use the torchao methods "
                                         r"\(int8-dynamic, int8-weight, int4-weight\)"):
        check_method_input(CANARY, "nncf-int8")
    with pytest.raises(ValueError, match=r"int8-weight takes a transformers model directory .* use the nncf "
                                         r"methods \(nncf-int8, nncf-int4\)"):
        check_method_input(CANARY_IR, "int8-weight")
    assert set(NNCF_METHODS) == {"nncf-int8", "nncf-int4"} and "int4-weight" in TORCHAO_METHODS


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + ["models", "quantize", *args], cwd=tmp_path, capture_output=True, text=True,
                          env=bench_env(), timeout=300)


def test_cli_makes_an_nncf_variant(tmp_path: Path) -> None:
    proc = _bench(tmp_path, "--model", str(CANARY_IR), "--method", "nncf-int8", "--out", "q")
    assert proc.returncode == 0, proc.stderr
    assert "nncf-int8:" in proc.stderr and "4 IR files compressed" in proc.stderr
    info = json.loads((tmp_path / "q" / "nncf-int8" / QUANT_INFO).read_text())
    assert info["method"] == "nncf-int8" and info["made_by"] == "bench models quantize"


def test_cli_refuses_the_wrong_kind(tmp_path: Path) -> None:
    proc = _bench(tmp_path, "--model", str(CANARY), "--method", "nncf-int4", "--out", "q")
    assert proc.returncode == 2
    assert "use the torchao methods" in " ".join(proc.stderr.split())
    proc = _bench(tmp_path, "--model", str(CANARY_IR), "--method", "nncf-int8", "--method", "int4-weight",
                  "--out", "q")
    assert proc.returncode == 2
    assert "use the nncf methods (nncf-int8, nncf-int4)" in " ".join(proc.stderr.split())
    assert not (tmp_path / "q").exists()  # refused before any variant was made


def test_the_backend_records_the_variants_quantization(variants: Dict[str, IRQuantizeResult]) -> None:
    from harness.runner.backends.openvino_genai import OpenVINOGenAIBackend
    from harness.runner.protocol import ModelSpec

    seen = {}
    for method, made in variants.items():
        backend = OpenVINOGenAIBackend({}, ModelSpec(path=str(made.path), variant=method))
        try:
            info = backend.load()
        finally:
            backend.close()
        seen[method] = info
        assert info.extra["quantization"]["method"] == method
    assert seen["nncf-int8"].dtype == "u8" and seen["nncf-int4"].dtype == "u4"
    assert seen["nncf-int8"].model_sha256 != seen["nncf-int4"].model_sha256
    source = OpenVINOGenAIBackend({}, ModelSpec(path=str(CANARY_IR), variant="fp32"))
    try:
        assert source.load().extra["quantization"] is None  # an unquantized export has no record
    finally:
        source.close()
