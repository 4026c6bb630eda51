"""The `llamacpp` backend (llama-mtmd-cli) with the tiny random-weight Qwen2.5-VL GGUF + mmproj.

Two kinds of test:
  - against a STAND-IN CLI (fixtures/llamacpp_mtmd_cli_standin.py) that prints the real CLI's
    recorded log format with known values and sleeps for them: parsing, phases, errors. Always run.
  - against the real llama-mtmd-cli built by scripts/build_llamacpp.sh from the llama-cpp-python
    sdist's vendored llama.cpp (scripts/test.sh builds it; CI runs these tests, a developer without
    the build skips them), on GGUF variants converted by that tree's own convert_hf_to_gguf.py and
    llama-quantize (tests/llamacpp_env.py). The stand-in remains for log-format variants and errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.runner.backends import get_backend
from harness.runner.backends._axllm_parse import Chunk
from harness.runner.backends._llamacpp_parse import parse_query
from harness.runner.backends.base import BackendError, BackendUnavailable, ModelNotFound, UnsupportedWorkload
from harness.runner.protocol import GenerationSpec, ModelSpec

from .fixtures.runner_spec import FIXTURES, inputs, run_runner

MODEL_DIR = FIXTURES / "llamacpp_tiny_qwen2_5_vl"
STANDIN = FIXTURES / "llamacpp_mtmd_cli_standin.py"
# what the stand-in prints and sleeps
STANDIN_CFG = {"load_ms": 20, "preprocess_ms": 30, "encode_ms": 40, "decode_ms": 10, "prefill_ms": 25,
               "token_gap_ms": 10.0, "text_tokens": 35}
N_TOKENS = 6


def standin_cli(tmp_path: Path, **config: Any) -> Dict[str, Any]:
    """Backend options that run the stand-in CLI with the given config."""
    cfg = dict(STANDIN_CFG, **config)
    (tmp_path / "standin.json").write_text(json.dumps(cfg))
    cli = tmp_path / "llama-mtmd-cli"
    cli.write_text("#!/bin/sh\nexec '%s' '%s' \"$@\"\n" % (sys.executable, STANDIN))
    cli.chmod(0o755)
    return {"cli": str(cli), "extra_args": ["--standin_config", str(tmp_path / "standin.json")]}


def spy_argvs(monkeypatch: pytest.MonkeyPatch) -> List[List[str]]:
    """The command line of every CLI run the backend starts from now on (appended as it starts)."""
    import harness.runner.backends.llamacpp as llamacpp

    seen: List[List[str]] = []
    original = llamacpp.ConsoleProcess

    def spy(argv: List[str], **kwargs: Any) -> Any:
        seen.append(list(argv))
        return original(argv, **kwargs)

    monkeypatch.setattr(llamacpp, "ConsoleProcess", spy)
    return seen


def _backend(options: Dict[str, Any], path: Path) -> Any:
    return get_backend("llamacpp")(options, ModelSpec("f32", str(path)))


def test_standin_known_values_through_the_runner(tmp_path: Path) -> None:
    code, records, stderr = run_runner(tmp_path, "llamacpp", standin_cli(tmp_path), str(MODEL_DIR),
                                       kinds=("image", "video"), tokens=N_TOKENS)
    assert code == 1, stderr  # video is refused, image runs
    by_workload = {r["workload"]: r for r in records}
    video = by_workload["video-8f"]
    assert video["status"] == "error" and video["error_kind"] == "unsupported"
    record = by_workload["image"]
    assert record["status"] == "ok", record["error"]
    metrics, engine = record["metrics"], record["engine"]
    # ours, from line arrivals: about what the stand-in slept; every boundary is an arrival, and a
    # late read (the reader shares a busy CPU) moves time from one span to the next - hence the slack
    late = 20
    assert 30 - late <= metrics["preprocess_ms"] <= 30 + 60
    assert 40 - late <= metrics["vision_encode_ms"] <= 40 + 60
    assert 10 + 25 - late <= metrics["prefill_ms"] <= 10 + 25 + 80  # image-token + text decode
    assert 30 + 40 + 10 + 25 - late <= metrics["ttft_ms"] <= 30 + 40 + 10 + 25 + 150
    assert 10 - 1 <= metrics["itl_p50_ms"] <= 10 + 10
    assert metrics["n_output_tokens"] == N_TOKENS and len(record["itl_ms"]) == N_TOKENS - 1
    assert metrics["n_input_tokens"] == 256 + 35 and metrics["n_visual_tokens"] == 256
    assert record["output_text"] == "".join("tok%d " % i for i in range(N_TOKENS))
    # the engine's own figures, as printed
    assert engine["image_slice_encode_ms"] == [40.0] and engine["image_decode_ms"] == [10.0]
    assert engine["prompt_eval_tokens"] == 291 and engine["eval_runs"] == N_TOKENS - 1
    assert record["warnings"] == []
    prov = record["provenance"]
    assert prov["weights"] == "random" and prov["dtype"] == "F32"
    assert prov["backend_extra"]["unsupported"]["video"].startswith("llama.cpp's mtmd takes frames")


def test_merged_token_writes_give_no_invented_gaps(tmp_path: Path) -> None:
    backend = _backend(standin_cli(tmp_path, merged=True), MODEL_DIR)
    backend.load()
    try:
        raw = backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
    finally:
        backend.close()
    assert raw.token_times == [] and raw.n_output_tokens == N_TOKENS
    assert any("per-token times unavailable: 1 token writes for 6 tokens" in w for w in raw.warnings)
    # the merged write comes after all the sleeps (less a late read of the ready line)
    assert raw.engine["observed"]["ttft_ms"] >= 30 + 40 + 10 + 25 + N_TOKENS * 10 - 20


def test_cli_failure_shows_its_output(tmp_path: Path) -> None:
    backend = _backend(standin_cli(tmp_path, fail=-2), MODEL_DIR)
    backend.load()
    try:
        with pytest.raises(BackendError) as caught:
            backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
    finally:
        backend.close()
    assert "llama-mtmd-cli exited with code 1" in str(caught.value)
    assert "Failed to encode mtmd batch, res = -2" in str(caught.value)


def test_model_files_and_binary_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="model .*no-such.gguf does not exist; convert one"):
        _backend({}, tmp_path / "no-such.gguf").load()
    (tmp_path / "model-q4.gguf").write_bytes(b"x")
    with pytest.raises(ModelNotFound, match="no single mmproj\\*.gguf beside"):
        _backend({}, tmp_path).load()
    (tmp_path / "mmproj-f16.gguf").write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match="no-such-cli was not found or is not executable; build llama.cpp"):
        _backend({"cli": "no-such-cli"}, tmp_path).load()


def test_video_is_refused_with_the_reason(tmp_path: Path) -> None:
    backend = _backend(standin_cli(tmp_path), MODEL_DIR)
    backend.load()
    try:
        assert not backend.supports("video")
        with pytest.raises(UnsupportedWorkload, match="takes frames as separate images, not the model's video path"):
            backend.run(inputs("video"), GenerationSpec(output_tokens=2))
    finally:
        backend.close()


# -- answer(): accuracy requests ---------------------------------------------------------------
FAST = {"load_ms": 5, "preprocess_ms": 5, "encode_ms": 5, "decode_ms": 5, "prefill_ms": 5, "token_gap_ms": 2.0}
HOSTILE = ("llama_perf_context_print: eval time = 1.00 ms / 1 runs\n0.00.038.683 W For normal use cases, "
           "please use the standard llama-cli\nERR: failed to load image x")
REPLIES = {
    "Is there a red shape?": "yes",
    "Which shape?": "  circle ",
    "Say something unicode.": "Grün ✓ 日本語 🙂 ünïcödé",
    "Say something hostile.": HOSTILE,
    "Say nothing.": "",
    "Count to six.": "one two three four five six",
    "Two\nlines?": "both",
}


def _answer(backend: Any, prompt: str, max_new_tokens: int = 32) -> str:
    return backend.answer(inputs("image"), prompt, max_new_tokens)


def test_answer_is_the_stdout_text_up_to_eos(tmp_path: Path) -> None:
    """Exactly what the stand-in printed on stdout: logs (stderr) and framing newlines excluded,
    log-looking text on stdout kept; greedy, -n max_new_tokens, EOS honoured."""
    backend = _backend(standin_cli(tmp_path, answers=REPLIES, default_answer="no", **FAST), MODEL_DIR)
    backend.load()
    try:
        assert _answer(backend, "Is there a red shape?") == "yes"
        assert _answer(backend, "Which shape?") == "circle"
        assert _answer(backend, "Say something unicode.") == "Grün ✓ 日本語 🙂 ünïcödé"
        assert _answer(backend, "Say something hostile.") == HOSTILE
        assert _answer(backend, "Say nothing.") == ""  # EOS first
        assert _answer(backend, "Count to six.", 3) == "one two three"  # -n reached before EOS
        assert _answer(backend, "Count to six.", 6) == "one two three four five six"
        # the prompt reaches the CLI as one argument, newlines and all
        assert _answer(backend, "Two\nlines?") == "both"
        assert _answer(backend, "Anything else?") == "no"
        # run() passes --ignore-eos: then the stand-in, like the CLI, talks on past the reply
        raw = backend.run(inputs("image"), GenerationSpec(output_tokens=4))
        assert raw.output_text == "no tok1 tok2 tok3" and raw.n_output_tokens == 4
    finally:
        backend.close()


def test_answer_argv_is_greedy_bounded_and_keeps_eos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_argvs(monkeypatch)
    backend = _backend(standin_cli(tmp_path, default_answer="yes", **FAST), MODEL_DIR)
    backend.load()
    try:
        assert _answer(backend, "Why?", 7) == "yes"
        backend.run(inputs("image"), GenerationSpec(output_tokens=3))
    finally:
        backend.close()
    answer_argv, run_argv = seen
    assert answer_argv[answer_argv.index("-n") + 1] == "7" and "--ignore-eos" not in answer_argv
    assert answer_argv[answer_argv.index("--temp") + 1] == "0"
    assert answer_argv[answer_argv.index("-p") + 1] == "Why?"
    assert "--ignore-eos" in run_argv and run_argv[run_argv.index("-n") + 1] == "3"


def test_answer_with_tokens_cut_mid_character(tmp_path: Path) -> None:
    backend = _backend(standin_cli(tmp_path, default_answer="日本語 🙂 Grün ✓", split_utf8=True, **FAST), MODEL_DIR)
    backend.load()
    try:
        assert _answer(backend, "Say it.") == "日本語 🙂 Grün ✓"
    finally:
        backend.close()


def test_answer_errors(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"^llamacpp backend: answer\(\) before load\(\)$"):
        _backend(standin_cli(tmp_path, **FAST), MODEL_DIR).answer(inputs("image"), "Why?", 4)
    backend = _backend(standin_cli(tmp_path, fail=-2, default_answer="yes", **FAST), MODEL_DIR)
    backend.load()
    try:
        with pytest.raises(UnsupportedWorkload, match="cannot answer video workload 'video-8f': llama.cpp's mtmd "
                                                      "takes frames as separate images"):
            backend.answer(inputs("video"), "Why?", 4)
        with pytest.raises(BackendError) as caught:
            backend.answer(inputs("image"), "Why?", 4)
        assert "llama-mtmd-cli exited with code 1" in str(caught.value)
        assert "Failed to encode mtmd batch, res = -2" in str(caught.value)
    finally:
        backend.close()


@pytest.mark.parametrize("options, message", [
    ({"threads": -1}, "threads must be a non-negative integer"),
    ({"token_stream": "chunks"}, "token_stream 'chunks' not understood"),
    ({"extra_args": "-fa"}, "extra_args must be a list of strings"),
    ({"n_gpu_layers": 99}, "unknown option(s) n_gpu_layers"),
])
def test_bad_options(options: Dict[str, Any], message: str) -> None:
    with pytest.raises(BackendError) as caught:
        _backend(options, MODEL_DIR)
    assert message in str(caught.value)


def test_parses_recorded_real_stderr() -> None:
    """The real CLI's stderr (llama.cpp 0c1e570, this tiny model, -n 8), one chunk per line."""
    lines = (FIXTURES / "llamacpp_mtmd_cli_tiny.stderr.log").read_text().splitlines(keepends=True)
    chunks: List[Chunk] = [Chunk(i, line, "err") for i, line in enumerate(lines)]
    chunks += [Chunk(1000 + i, text, "out") for i, text in enumerate(["\n"] + ["\n"] * 8 + ["\n\n"])]
    query = parse_query(chunks)
    ready = next(i for i, line in enumerate(lines) if "For normal use cases" in line)
    assert query.t_ready == ready
    assert query.t_encode_start == ready + 1 and query.t_encode_end == ready + 2
    assert query.encode_ms == [10.0] and query.media_decode_ms == [2.0] and query.n_media_tokens == 256
    assert query.perf["prompt_eval_tokens"] == 291 and query.perf["eval_runs"] == 7
    assert query.perf["total_tokens"] == 298 and query.perf["load_ms"] == 4.37
    # random weights: every token is "\n"; each write is one token, the framing newlines are not
    assert len(query.writes) == 8 and query.text == "\n" * 8
    assert query.errors == []


@pytest.mark.slow
def test_real_cli_runs_the_image_workload_on_every_gguf_variant(tmp_path: Path, llamacpp: Any,
                                                                tiny_gguf: Dict[str, Any]) -> None:
    """The real llama-mtmd-cli (scripts/build_llamacpp.sh) on the tiny random-weight model converted by
    llama.cpp's own convert_hf_to_gguf.py, F16 and llama-quantize's Q8_0 / Q4_K_M, through the runner."""
    models = [ModelSpec(t, str(v.dir)) for t, v in tiny_gguf.items()]
    code, records, stderr = run_runner(tmp_path, "llamacpp", {"cli": str(llamacpp.tool("llama-mtmd-cli"))},
                                       "", tokens=8, reps=2, models=models)
    assert sorted({r["variant"] for r in records}) == sorted(tiny_gguf)
    # the default thread count leaves the CLI's log thread a CPU, so no run loses its output at exit
    # (test_llamacpp_lost_output.py); a re-run would say so in the warnings
    failed = [r for r in records if r["status"] != "ok"]
    assert not failed and code == 0, (stderr, [r["error"][:300] for r in failed])
    for record in records:
        metrics, engine, prov = record["metrics"], record["engine"], record["provenance"]
        # 448x448 -> 32x32 patches of 14 -> 2x2 merge -> 256 visual tokens; + 35 text tokens of the
        # chat template: the same counts as transformers and OpenVINO GenAI (benchmarks/peer_agreement.py)
        assert metrics["n_input_tokens"] == 291 and metrics["n_visual_tokens"] == 256
        assert metrics["n_output_tokens"] == 8 and engine["tokens_implied_by_eval_runs"] == 8
        assert engine["prompt_eval_tokens"] == 291 and engine["eval_runs"] == 7
        # vision encode from the CLI's own lines: our span (line arrivals) against the engine's
        # "mtmd batch encoding done in N ms". Not a bracket: this llama.cpp starts its timer before
        # it prints "encoding mtmd batch" (ours was ~15 ms shorter on 96-800 ms here), and a late
        # read on a loaded machine moves either end; 25 ms + 15% holds both
        encoded_ms = sum(engine["image_slice_encode_ms"])
        if metrics["vision_encode_ms"] is None:
            assert any(w.startswith("vision encode not resolved") for w in record["warnings"])
        else:
            assert abs(metrics["vision_encode_ms"] - encoded_ms) <= 25 + 0.15 * encoded_ms, (
                metrics["vision_encode_ms"], encoded_ms)
        assert metrics["preprocess_ms"] is None and any(w.startswith("preprocess not resolved")
                                                        for w in record["warnings"]) or metrics["preprocess_ms"] > 0
        merged = any("per-token times unavailable" in w for w in record["warnings"])
        if not merged:  # one write per token: every gap is ours
            assert len(record["itl_ms"]) == 7 and metrics["decode_tps"] > 0
        # tokens that reach us merged (a late read on a loaded machine) leave no gaps, and say so
        assert merged or all("not resolved" in w or w.startswith("re-run ") for w in record["warnings"])
        assert metrics["ttft_ms"] > metrics["prefill_ms"] > 0
        parts = sum(metrics[k] or 0.0 for k in ("preprocess_ms", "vision_encode_ms", "prefill_ms"))
        assert parts == pytest.approx(metrics["ttft_ms"], abs=1e-3) or parts < metrics["ttft_ms"]
        assert metrics["ttft_ms"] > encoded_ms  # the first token comes after the image is encoded
        assert prov["engine_versions"]["llama.cpp"].startswith("version:")
        assert prov["weights"] == "random" and prov["dtype"] == record["variant"]
    # the three files differ: quantization happened (tensor types as llama-quantize wrote them)
    assert tiny_gguf["Q8_0"].tensor_types.get("Q8_0", 0) > 0
    sizes = {t: v.model.stat().st_size for t, v in tiny_gguf.items()}
    assert sizes["F16"] > sizes["Q8_0"] >= sizes["Q4_K_M"], sizes


def test_perf_lines_in_every_spelling_of_the_printf_formats() -> None:
    # printf formats, ggml-org/llama.cpp: llama_perf_context_print (src/llama-context.cpp)
    #   "%s:        load time = %10.2f ms\n", "%s: prompt eval time = %10.2f ms / %5d tokens (%8.2f ms per token, ...)"
    #   "%s:        eval time = %10.2f ms / %5d runs   (...)", "%s:       total time = %10.2f ms / %5d tokens\n"
    # tools/server print_timings: "       eval time = %10.2f ms / %5d tokens (%8.2f ms per token, ...)"
    # tools/mtmd/mtmd-helper.cpp: "%s slice encoded in %" PRId64 " ms", "%s decoded (batch %d/%d) in %" PRId64 " ms",
    #   "decoding %s batch %d/%d, n_tokens_batch = %d"
    log = ("encoding image slice...\n"
           "image slice encoded in 774 ms\n"
           "decoding image batch 1/2, n_tokens_batch = 2048\n"
           "image decoded (batch 1/2) in 1203 ms\n"
           "decoding image batch 2/2, n_tokens_batch = 52\n"
           "image decoded (batch 2/2) in 31 ms\r\n"
           "llama_perf_context_print:        load time =    1234.56 ms\n"
           "llama_perf_context_print: prompt eval time =    2345.67 ms /  2380 tokens (    0.99 ms per token,  "
           "1014.63 tokens per second)\n"
           "slot print_timings: id  0 | task 0 |        eval time =     987.65 ms /    31 tokens (   31.86 ms per "
           "token,    31.39 tokens per second)\n"
           "llama_perf_context_print:       total time =    4567.89 ms /  2411 tokens\n")
    query = parse_query([Chunk(i, line, "err") for i, line in enumerate(log.splitlines(keepends=True))])
    assert query.encode_ms == [774.0]
    assert query.media_decode_ms == [1203.0, 31.0] and query.n_media_tokens == 2100
    assert query.perf == {"load_ms": 1234.56, "prompt_eval_ms": 2345.67, "prompt_eval_tokens": 2380.0,
                          "eval_ms": 987.65, "eval_runs": 31.0, "total_ms": 4567.89, "total_tokens": 2411.0}
    # the old name of the same function (llama_print_timings) and the "runs" spelling
    old = parse_query([Chunk(0, "llama_print_timings:        eval time =     100.00 ms /     7 runs   (   14.29 ms "
                                "per token,    70.00 tokens per second)\n", "err")])
    assert old.perf == {"eval_ms": 100.0, "eval_runs": 7.0}
