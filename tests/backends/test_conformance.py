"""Backend conformance: every backend this machine can run passes the same checks, through the runner.

One workload set (a 448x448 image and 8 frames of 308x308, fixed output length) goes through the
real runner process for each backend; the records must fill the same schema, count tokens
consistently, respect the output length, order their phases, and map a missing model to a clear
`model_not_found` error. What each backend cannot observe is declared here (``NOT_OBSERVED``) and
checked both ways: those metrics are empty, every other metric is filled.

Backends and what stands behind them here:
  reference       emulated phase times (always available)
  transformers    a tiny random-weight Qwen2.5-VL on the CPU
  axllm           a STAND-IN ax-llm `main` printing real-format lines with known values (no NPU here)
  openvino_genai  the committed tiny IR on the CPU (skipped when openvino-genai is not installed)
  llamacpp        a STAND-IN llama-mtmd-cli printing the real CLI's recorded format (llama.cpp is not
                  built in CI; test_llamacpp.py runs the real CLI when LLAMA_MTMD_CLI is set)
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from harness.runner.backends import known_backends
from harness.runner.protocol import ALL_METRICS, ModelSpec

from .fixtures.axllm_env import deployment, tokenizer_service
from .fixtures.axllm_env import options as standin_options
from .fixtures.runner_spec import FIXTURES, run_runner

N_TOKENS = 6
REPO = Path(__file__).resolve().parents[2]

# metrics a backend cannot observe (left None by design); every other metric must be filled
NOT_OBSERVED: Dict[str, set] = {
    "reference": {"peak_accel_mb"},
    "transformers": {"peak_accel_mb"},  # CPU: model memory is host memory
    # the encode start and preprocessing end are inside the binary; its encode time is in engine
    "axllm": {"preprocess_ms", "vision_encode_ms"},
    # everything before the first token happens inside generate(); the engine's figures are in engine
    "openvino_genai": {"preprocess_ms", "vision_encode_ms", "prefill_ms", "n_visual_tokens", "peak_accel_mb"},
    "llamacpp": {"peak_accel_mb"},  # llama-mtmd-cli reports no device memory
}
# workload kinds a backend refuses by design (with error_kind "unsupported")
REFUSED = {"llamacpp": {"video-8f"}}  # mtmd takes frames as separate images, not the video path
ENGINE_MODULES = ("numpy", "torch", "transformers", "openvino", "openvino_genai", "llama_cpp")


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _reference(tmp_path: Path, request: pytest.FixtureRequest) -> Tuple[Dict[str, Any], str]:
    return {"time_scale": 0.2}, "n/a"


def _transformers(tmp_path: Path, request: pytest.FixtureRequest) -> Tuple[Dict[str, Any], str]:
    if not _installed("torch", "transformers"):
        pytest.skip("torch/transformers not installed (pip install -e '.[local]')")
    dirs = request.getfixturevalue("tiny_model_dirs")
    return {"device": "cpu", "dtype": "float32"}, str(dirs["qwen2.5-vl"])


def _axllm(tmp_path: Path, request: pytest.FixtureRequest) -> Tuple[Dict[str, Any], str]:
    url = request.getfixturevalue("tokenizer_url")
    # gaps of 15+ ms: a reader delayed by a busy CPU must not merge two writes
    dep = deployment(tmp_path, tokens=N_TOKENS, token_gap_ms=15.0, encode_ms=20.0, ttft_ms=30.0)
    return standin_options(dep, url), str(dep["models"])


def _llamacpp(tmp_path: Path, request: pytest.FixtureRequest) -> Tuple[Dict[str, Any], str]:
    from .test_llamacpp import MODEL_DIR, standin_cli

    # spans of 15+ ms: a reader delayed by a busy CPU must not read two boundaries in one chunk
    return standin_cli(tmp_path, load_ms=5, preprocess_ms=15, encode_ms=15, decode_ms=5, prefill_ms=15,
                       token_gap_ms=15.0), str(MODEL_DIR)


def _openvino(tmp_path: Path, request: pytest.FixtureRequest) -> Tuple[Dict[str, Any], str]:
    if not _installed("openvino", "openvino_genai"):
        pytest.skip("openvino-genai not installed (pip install -e '.[openvino]')")
    return {"device": "CPU"}, str(FIXTURES / "openvino_tiny_qwen2_5_vl")


SETUPS: Dict[str, Callable[[Path, pytest.FixtureRequest], Tuple[Dict[str, Any], str]]] = {
    "reference": _reference,
    "transformers": _transformers,
    "axllm": _axllm,
    "openvino_genai": _openvino,
    "llamacpp": _llamacpp,
}


@pytest.fixture(scope="module")
def records_cache() -> Dict[str, List[Dict[str, Any]]]:
    return {}


@pytest.fixture(scope="module")
def tokenizer_url() -> Iterator[str]:
    with tokenizer_service() as url:
        yield url


def _records(backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
             cache: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One runner process per backend: the good model (image + video) and a missing one."""
    if backend not in cache:
        tmp = tmp_path_factory.mktemp("conformance-%s" % backend)
        options, path = SETUPS[backend](tmp, request)
        models = [ModelSpec("good", path), ModelSpec("missing", str(tmp / "no-such-model"))]
        code, records, stderr = run_runner(tmp, backend, options, path, kinds=("image", "video"),
                                           tokens=N_TOKENS, models=models)
        assert code in (0, 1), stderr
        cache[backend] = records
    return cache[backend]


@pytest.mark.parametrize("backend", sorted(SETUPS))
def test_backend_conforms(backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
                          records_cache: Dict[str, List[Dict[str, Any]]]) -> None:
    records = _records(backend, tmp_path_factory, request, records_cache)
    good = [r for r in records if r["variant"] == "good"]
    assert sorted(r["workload"] for r in good) == ["image", "video-8f"]
    refused = [r for r in good if r["workload"] in REFUSED.get(backend, ())]
    assert all(r["status"] == "error" and r["error_kind"] == "unsupported" for r in refused), backend
    for record in good:
        if record in refused:
            continue
        where = "%s/%s" % (backend, record["workload"])
        assert record["status"] == "ok", (where, record["error"])
        metrics = record["metrics"]
        # the same schema: every backend metric present; filled unless declared unobservable
        # (power and energy metrics come from telemetry, not from backends: not checked here)
        assert set(ALL_METRICS) <= set(metrics), where
        empty = {k for k in ALL_METRICS if metrics[k] is None}
        assert empty == NOT_OBSERVED[backend], (where, empty)
        # token counts consistent, output length respected
        assert metrics["n_output_tokens"] == N_TOKENS, where
        assert len(record["itl_ms"]) == N_TOKENS - 1, where
        assert metrics["n_input_tokens"] > (metrics["n_visual_tokens"] or 0) > -1, where
        # phases ordered, and the parts of the TTFT add up to no more than it
        parts = sum(metrics[k] or 0.0 for k in ("preprocess_ms", "vision_encode_ms", "prefill_ms"))
        assert 0 < parts <= metrics["ttft_ms"] + 1e-6 or parts == 0, where
        assert 0 < metrics["ttft_ms"] <= metrics["e2e_ms"], where
        assert metrics["decode_tps"] * metrics["tpot_ms"] == pytest.approx(1000.0), where
        assert metrics["itl_p50_ms"] <= metrics["itl_p90_ms"] <= metrics["itl_p99_ms"], where
        assert metrics["e2e_ms"] == pytest.approx(metrics["ttft_ms"] + sum(record["itl_ms"]), abs=1e-3), where
        assert not any("out of order" in w for w in record["warnings"]), where
        # sources named, engine figures kept, provenance complete
        assert {"peak_host_mb", "peak_accel_mb"} <= set(record["metric_sources"]), where
        assert record["engine"], where
        prov = record["provenance"]
        assert prov["engine"] and prov["engine_versions"] and prov["model_id"], where
        assert prov["weights"] in ("real", "random", "emulated"), where
    missing = [r for r in records if r["variant"] == "missing"]
    if backend == "reference":
        assert all(r["status"] == "ok" for r in missing)  # emulated: it has no model to miss
        return
    assert missing and all(r["status"] == "error" for r in missing), backend
    for record in missing:
        assert record["error_kind"] == "model_not_found", (backend, record["error"])
        assert "no-such-model" in record["error"] and "does not exist" in record["error"], record["error"]


def test_same_model_same_input_token_count(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
                                           records_cache: Dict[str, List[Dict[str, Any]]]) -> None:
    """transformers and OpenVINO GenAI run the same tiny Qwen2.5-VL (the IR was exported from the
    same seed-0 build): the engine-counted input tokens must match exactly."""
    counts = {}
    for backend in ("transformers", "openvino_genai"):
        records = _records(backend, tmp_path_factory, request, records_cache)
        counts[backend] = {r["workload"]: r["metrics"]["n_input_tokens"] for r in records if r["variant"] == "good"}
    assert counts["transformers"] == counts["openvino_genai"]


@pytest.mark.parametrize("backend", known_backends())
def test_backend_module_imports_with_the_standard_library_only(backend: str) -> None:
    """Backends ship in the runner to Python 3.8 boards: importing one must not pull in an engine."""
    code = (
        "import sys; from harness.runner.backends import get_backend; get_backend(%r); "
        "bad = set(%r) & set(sys.modules); assert not bad, bad" % (backend, ENGINE_MODULES)
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
