"""The `axllm` backend against a STAND-IN ax-llm `main` (tests/backends/fixtures/axllm_main_standin.py).

The stand-in is not an engine: it prints AXERA's real log format with values fixed here and sleeps
for the durations it prints. So these tests prove the parsing, the TTFT correction, the token
timing, the CMM reading and the error messages - not any AX650N performance.
"""

from __future__ import annotations

import os
import socket
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from harness.runner.backends import get_backend
from harness.runner.backends._axllm_io import png_bytes
from harness.runner.backends._axllm_parse import (Chunk, answer_text, implied_token_count, parse_cmm_info, parse_init,
                                                  parse_run)
from harness.runner.backends.base import BackendError, BackendUnavailable, ModelNotFound, UnsupportedWorkload
from harness.runner.protocol import GenerationSpec, ModelSpec

from .fixtures.axllm_env import (CMM_LINE, ENCODE_MS, GAP_MS, N_TOKENS, REMAIN_CMM_MB, TEXT_TOKENS, TTFT_MS,
                                 deployment, tokenizer_service)
from .fixtures.axllm_env import options as standin_options
from .fixtures.runner_spec import FIXTURES, find_python38, inputs, run_runner


@pytest.fixture(scope="module")
def tokenizer_url() -> Iterator[str]:
    with tokenizer_service() as url:
        yield url


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _backend(options: Dict[str, Any], path: Path) -> Any:
    return get_backend("axllm")(options, ModelSpec(variant="w8a16", path=str(path)))


# -- through the runner ------------------------------------------------------------------------
def test_standin_known_values_are_parsed_through_the_runner(tmp_path: Path, tokenizer_url: str) -> None:
    dep = deployment(tmp_path)
    code, records, stderr = run_runner(tmp_path, "axllm", standin_options(dep, tokenizer_url), str(dep["models"]),
                                       kinds=("image", "video"), tokens=N_TOKENS)
    assert code == 0, (stderr, records)
    by_workload = {r["workload"]: r for r in records}
    assert set(by_workload) == {"image", "video-8f"}
    for name, n_visual, size, chunks in (("image", 256, 524288, [128, 128, 24]),
                                         ("video-8f", 484, 991232, [128, 128, 128, 124])):
        record = by_workload[name]
        assert record["status"] == "ok", record["error"]
        metrics, engine = record["metrics"], record["engine"]
        # the engine's own figures, exactly as printed
        assert engine["image_encode_ms"] == pytest.approx(ENCODE_MS)
        assert engine["image_encode_size"] == size
        assert engine["ttft_ms"] == pytest.approx(TTFT_MS)
        assert engine["ttft_definition"] == "after_encode"
        assert engine["ttft_end_to_end_ms"] == pytest.approx(ENCODE_MS + TTFT_MS)
        assert engine["input_tokens"] == n_visual + TEXT_TOKENS
        assert engine["prefill_chunks"] == chunks and engine["prefill_split_num"] == len(chunks)
        assert engine["tokens_implied_by_rate"] == N_TOKENS
        assert engine["avg_token_per_s_counts_first_token"] is True
        # counts: from the engine's lines and the streamed writes
        assert metrics["n_input_tokens"] == n_visual + TEXT_TOKENS
        assert metrics["n_visual_tokens"] == n_visual  # size / --tokens_embed_size
        assert metrics["n_output_tokens"] == N_TOKENS and len(record["itl_ms"]) == N_TOKENS - 1
        assert record["output_text"] == " ".join("tok%d" % i for i in range(N_TOKENS))
        # our clock: the stand-in slept what it printed, so ours can only be longer (process and
        # pipe overheads on a shared CPU), never shorter
        assert ENCODE_MS + TTFT_MS <= metrics["ttft_ms"] <= ENCODE_MS + TTFT_MS + 400
        # encode line -> first token: a late read of the encode line shortens it by the lateness
        assert TTFT_MS - 20 <= metrics["prefill_ms"] <= TTFT_MS + 300
        assert metrics["vision_encode_ms"] is None and metrics["preprocess_ms"] is None  # not visible
        # a late read of the first token shortens the decode span (by up to a few ms over 7 gaps)
        assert GAP_MS - 1 <= metrics["tpot_ms"] <= GAP_MS + 15
        # single gaps jitter with the reader's scheduling on a shared CPU; their median does not
        assert GAP_MS - 1 <= metrics["itl_p50_ms"] <= GAP_MS + 10
        # ax-llm's token/s counts the first token; the corrected figure agrees with ours
        assert metrics["decode_tps"] == pytest.approx(engine["decode_tps_excluding_first_token"], rel=0.1)
        assert engine["avg_token_per_s"] > metrics["decode_tps"]
        # CMM from the (fake) proc file, named as the source
        assert metrics["peak_accel_mb"] == pytest.approx(18876 / 1024.0)
        assert "mem_cmm_info" in record["metric_sources"]["peak_accel_mb"]
        assert engine["cmm_used_mb_before"] == engine["cmm_used_mb_after"] == pytest.approx(18876 / 1024.0, abs=1e-3)
        prov = record["provenance"]
        assert prov["weights"] == "emulated"  # the stand-in's marker: never labelled real
        assert prov["backend_extra"]["remain_cmm_mb_after_init"] == REMAIN_CMM_MB
        assert prov["backend_extra"]["tokens_embed_size"] == 2048 and prov["backend_extra"]["init_ok_seen"]
        assert prov["engine_versions"]["ax-llm main sha256"] != "unreadable"
        assert record["warnings"] == []


def test_runner_on_python38_drives_the_standin(tmp_path: Path, tokenizer_url: str) -> None:
    """The backend ships to boards with Python 3.8: run it there, standard library only."""
    python38 = find_python38()
    if python38 is None:
        pytest.skip("no Python 3.8 interpreter here (set BENCH_PYTHON38)")
    dep = deployment(tmp_path)
    code, records, stderr = run_runner(tmp_path, "axllm", standin_options(dep, tokenizer_url), str(dep["models"]),
                                       python=python38)
    assert code == 0, stderr
    (record,) = records
    assert record["provenance"]["python"].startswith("3.8")
    assert record["metrics"]["n_output_tokens"] == N_TOKENS and record["metrics"]["n_visual_tokens"] == 256
    assert record["warnings"] == []


def test_errors_through_the_runner(tmp_path: Path, tokenizer_url: str) -> None:
    """Missing axmodel directory, missing binary, tokenizer service down: one clear record each."""
    dep = deployment(tmp_path)
    port = _closed_port()
    models = [
        ModelSpec("no-model", str(tmp_path / "missing-axmodels")),
        ModelSpec("no-binary", str(dep["models"]), options={"main": str(tmp_path / "no-such-main")}),
        ModelSpec("no-tokenizer", str(dep["models"]), options={"tokenizer_url": "http://127.0.0.1:%d" % port}),
    ]
    code, records, stderr = run_runner(tmp_path, "axllm", standin_options(dep, tokenizer_url), "", models=models)
    assert code == 1, stderr
    by_variant = {r["variant"]: r for r in records}
    missing = by_variant["no-model"]
    assert missing["status"] == "error" and missing["error_kind"] == "model_not_found"
    assert "axmodel directory %s does not exist" % (tmp_path / "missing-axmodels") in missing["error"]
    binary = by_variant["no-binary"]
    assert binary["error_kind"] == "unavailable"
    assert "the ax-llm binary %s was not found" % (tmp_path / "no-such-main") in binary["error"]
    down = by_variant["no-tokenizer"]
    assert down["error_kind"] == "config"
    assert "tokenizer service at http://127.0.0.1:%d is not up (connection refused)" % port in down["error"]
    assert "qwen2_tokenizer_images.py --host 127.0.0.1 --port %d" % port in down["error"]


# -- direct calls: variants of the binary's behaviour ------------------------------------------
def _run_once(tmp_path: Path, url: str, kind: str = "image", tokens: int = N_TOKENS, options: Any = None,
              **config: Any) -> Any:
    dep = deployment(tmp_path, **config)
    backend = _backend(standin_options(dep, url, **(options or {})), dep["models"])
    info = backend.load()
    try:
        return info, backend.run(inputs(kind), GenerationSpec(output_tokens=tokens))
    finally:
        backend.close()


def test_end_to_end_ttft_builds_are_not_corrected(tmp_path: Path, tokenizer_url: str) -> None:
    _, raw = _run_once(tmp_path, tokenizer_url, options={"ttft_definition": "end_to_end"},
                       ttft_definition="end_to_end", ttft_ms=150.0)
    assert raw.engine["ttft_definition"] == "end_to_end"
    assert raw.engine["ttft_ms"] == raw.engine["ttft_end_to_end_ms"] == pytest.approx(150.0)
    ours_ms = (raw.token_times[0] - raw.t_start) / 1e6
    assert 150.0 <= ours_ms <= 150.0 + 300


def test_plain_pipe_instead_of_a_terminal(tmp_path: Path, tokenizer_url: str) -> None:
    """pty: false works for builds that flush every line themselves (the stand-in does)."""
    info, raw = _run_once(tmp_path, tokenizer_url, options={"pty": False})
    assert info.extra["pty"] is False
    assert raw.n_output_tokens == len(raw.token_times) == N_TOKENS and raw.warnings == []


def test_builds_writing_three_tokens_at_a_time_give_no_invented_gaps(tmp_path: Path, tokenizer_url: str) -> None:
    """Older builds print every third token: the writes cannot be tokens, so no per-token times."""
    _, raw = _run_once(tmp_path, tokenizer_url, streaming="every_3")
    assert raw.engine["stream_writes"] == 3 and raw.engine["tokens_implied_by_rate"] == N_TOKENS
    assert raw.token_times == []  # nothing spread over the span
    assert raw.n_output_tokens == N_TOKENS
    assert any("per-token times unavailable: 3 streamed writes" in w for w in raw.warnings)
    observed = raw.engine["observed"]
    assert ENCODE_MS + TTFT_MS <= observed["ttft_ms"] <= ENCODE_MS + TTFT_MS + 300
    assert observed["e2e_ms"] >= observed["ttft_ms"] + (N_TOKENS - 1) * GAP_MS
    assert raw.output_text == " ".join("tok%d" % i for i in range(N_TOKENS))


def test_output_length_mismatch_is_reported(tmp_path: Path, tokenizer_url: str) -> None:
    _, raw = _run_once(tmp_path, tokenizer_url, tokens=12)
    assert raw.n_output_tokens == N_TOKENS == len(raw.token_times)
    assert any("asked for 12 output tokens, the engine produced 8" in w for w in raw.warnings)


def test_engine_dying_at_init_shows_its_output(tmp_path: Path, tokenizer_url: str) -> None:
    dep = deployment(tmp_path, fail_init="qwen2_5_vl_p128_l3_together.axmodel")
    backend = _backend(standin_options(dep, tokenizer_url), dep["models"])
    with pytest.raises(BackendError) as caught:
        backend.load()
    message = str(caught.value)
    assert "stopped while loading the model (it exited with code 1)" in message
    assert "init axmodel(qwen2_5_vl_p128_l3_together.axmodel) failed" in message


def test_unreadable_image_is_an_engine_error(tmp_path: Path, tokenizer_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.runner.backends.axllm as axllm

    monkeypatch.setattr(axllm, "png_bytes", lambda w, h, rgb: b"not a png")
    dep = deployment(tmp_path)
    backend = _backend(standin_options(dep, tokenizer_url), dep["models"])
    backend.load()
    try:
        with pytest.raises(BackendError) as caught:
            backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
        assert "image read failed: not a PNG" in str(caught.value)
        assert "no 'ttft: N ms' line" in str(caught.value)
    finally:
        backend.close()


def test_a_stuck_engine_times_out_and_is_stopped(tmp_path: Path, tokenizer_url: str) -> None:
    dep = deployment(tmp_path, hang=True)
    backend = _backend(standin_options(dep, tokenizer_url), dep["models"])
    backend.load()
    try:
        with pytest.raises(BackendError, match="no end of generation within 1 s \\(timeout_s\\); the binary was stopped"):
            backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS, timeout_s=1))
        with pytest.raises(BackendError, match="is no longer running"):
            backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
    finally:
        backend.close()


def test_run_script_mode(tmp_path: Path, tokenizer_url: str) -> None:
    """AXERA's run_*.sh started as-is; tokens_embed_size is read from the script."""
    dep = deployment(tmp_path)
    script = tmp_path / "run_qwen2_5_vl_image.sh"
    script.write_text("exec '%s' --filename_tokenizer_model '%s' --tokens_embed_size 2048 \"$@\"\n"
                      % (dep["main"], tokenizer_url))
    backend = get_backend("axllm")(
        {"run_script": str(script), "extra_args": ["--standin_config", str(dep["config"])],
         "tokenizer_url": tokenizer_url, "cmm_root": str(tmp_path / "nowhere")},
        ModelSpec("w8a16", str(dep["models"])))
    info = backend.load()
    try:
        assert "run script sha256" in info.engine_versions
        assert info.extra["tokens_embed_size"] == 2048
        assert info.extra["cwd"] == str(tmp_path)
        raw = backend.run(inputs("image"), GenerationSpec(output_tokens=N_TOKENS))
        assert raw.n_visual_tokens == 256
        assert raw.peak_accel_mb is None and raw.peak_accel_source.startswith("none: ")
        assert "mem_cmm_info unreadable" in raw.peak_accel_source
    finally:
        backend.close()


@pytest.mark.parametrize("options, message", [
    ({}, "set exactly one of main (the ax-llm binary) or run_script"),
    ({"main": "m", "run_script": "r"}, "set exactly one of main"),
    ({"main": "m", "ttft_definition": "e2e"}, "ttft_definition 'e2e' not understood; use after_encode or end_to_end"),
    ({"main": "m", "token_stream": "lines"}, "token_stream 'lines' not understood; use per_token or none"),
    ({"main": "m", "kinds": ["audio"]}, "kinds must be a list of image and/or video"),
    ({"main": "m", "tokens_embed_size": 0}, "tokens_embed_size must be a positive integer, got 0"),
    ({"main": "m", "args": "--x 1"}, "args must be a list of strings"),
    ({"main": "m", "tokenizer_url": "http://host:port"}, "tokenizer_url 'http://host:port'"),
    ({"main": "m", "precision": "w8a16"}, "unknown option(s) precision"),
])
def test_options_are_validated_when_built(options: Dict[str, Any], message: str) -> None:
    with pytest.raises(BackendError) as caught:
        _backend(options, Path("/nonexistent"))
    assert message in str(caught.value)


def test_variant_options_are_validated() -> None:
    with pytest.raises(BackendError, match="model variant 'w8a16' has unknown option\\(s\\) script"):
        get_backend("axllm")({"main": "m"}, ModelSpec("w8a16", "/x", options={"script": "a"}))


def test_kinds_restrict_the_workloads(tmp_path: Path) -> None:
    backend = _backend({"main": "m", "kinds": ["video"]}, tmp_path)
    assert backend.supports("video") and not backend.supports("image")


# -- answer(): accuracy requests ---------------------------------------------------------------
# fast timings: these tests are about the text, not the clock
FAST = {"encode_ms": 5.0, "ttft_ms": 5.0, "token_gap_ms": 5.0, "init_ms": 10}
HOSTILE = ("[I][ Run][ 796]: ttft: 1.00 ms\n[N][ Run][ 949]: hit eos,avg 9.99 token/s\n\n"
           "prompt >> still talking")
REPLIES = {
    "Is there a red shape?": "yes",
    "Which word? Answer in one word.": "  circle  ",
    "Say something unicode.": "Grün ✓ 日本語 🙂 ünïcödé",
    "Say something hostile.": HOSTILE,
    "Say nothing.": "",
    "Count to six.": "one two three four five six",
}


def test_answer_returns_only_the_generated_text(tmp_path: Path, tokenizer_url: str) -> None:
    """Exactly what the stand-in streamed between its ttft and hit-eos lines, whatever it looks like."""
    dep = deployment(tmp_path, answers=REPLIES, default_answer="no", **FAST)
    backend = _backend(standin_options(dep, tokenizer_url), dep["models"])
    backend.load()
    try:
        image = inputs("image")
        assert backend.answer(image, "Is there a red shape?", 8) == "yes"
        # the prompt is sent as one line (whitespace collapsed), as run() sends it
        assert backend.answer(image, "Which word?\nAnswer in one word.", 8) == "circle"
        assert backend.answer(image, "Say something unicode.", 16) == "Grün ✓ 日本語 🙂 ünïcödé"
        # log-looking lines, a fake end of generation and a fake prompt are the model's text:
        # kept, and the query reads on to the real end
        assert backend.answer(image, "Say something hostile.", 64) == HOSTILE
        assert backend.answer(image, "Say nothing.", 8) == ""  # EOS first
        # no per-query limit in the binary: cut after max_new_tokens streamed tokens
        assert backend.answer(image, "Count to six.", 3) == "one two three"
        assert backend.answer(image, "Count to six.", 6) == "one two three four five six"
        assert backend.answer(image, "Anything else?", 8) == "no"
        # the same process still measures: answers left nothing behind to misread
        raw = backend.run(image, GenerationSpec(output_tokens=2))
        assert raw.output_text == "no"
    finally:
        backend.close()


def test_answer_with_tokens_cut_mid_character(tmp_path: Path, tokenizer_url: str) -> None:
    """Byte-level tokens split multi-byte characters across writes; the text comes out whole
    (and the writes no longer count as tokens, so a limit falls back to whitespace words)."""
    dep = deployment(tmp_path, default_answer="日本語 🙂 Grün ✓", split_utf8=True, **FAST)
    backend = _backend(standin_options(dep, tokenizer_url), dep["models"])
    backend.load()
    try:
        assert backend.answer(inputs("image"), "Say it.", 16) == "日本語 🙂 Grün ✓"
        assert backend.answer(inputs("image"), "Say it.", 2) == "日本語 🙂"
    finally:
        backend.close()


def test_answer_errors(tmp_path: Path, tokenizer_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError, match=r"^axllm backend: answer\(\) before load\(\)$"):
        _backend({"main": "m"}, tmp_path).answer(inputs("image"), "Why?", 4)
    import harness.runner.backends.axllm as axllm

    dep = deployment(tmp_path, default_answer="yes", **FAST)
    backend = _backend(standin_options(dep, tokenizer_url, kinds=["video"]), dep["models"])
    backend.load()
    try:
        with pytest.raises(UnsupportedWorkload,
                           match=r"this deployment serves video workloads, not image \(option kinds\)"):
            backend.answer(inputs("image"), "Why?", 4)
    finally:
        backend.close()
    monkeypatch.setattr(axllm, "png_bytes", lambda w, h, rgb: b"not a png")
    backend = _backend(standin_options(dep, tokenizer_url), dep["models"])
    backend.load()
    try:
        with pytest.raises(BackendError) as caught:
            backend.answer(inputs("image"), "Why?", 4)
        message = str(caught.value)
        assert "no 'ttft: N ms' line" in message and "image read failed: not a PNG" in message
    finally:
        backend.close()


def test_answer_text_cuts_by_token_when_writes_are_tokens() -> None:
    chunks = [Chunk(0, "[I][ Run][ 796]: ttft: 1.00 ms\n"), Chunk(10, "Hel"), Chunk(20, "lo"), Chunk(30, " wor"),
              Chunk(40, "ld"), Chunk(50, "\n\n[N][ Run][ 949]: hit eos,avg 2.00 token/s\n\nprompt >> ")]
    run = parse_run(chunks)
    assert run.text == "Hello world"
    # four writes and the engine's rate implies four tokens: the writes are the tokens
    assert answer_text(run, 3, 4) == ("Hello wor", "cut after 3 of 4 tokens")
    assert answer_text(run, 4, 4) == ("Hello world", "complete (4 tokens)")
    # not countable (the rate implies another count, or there is none): whitespace words
    assert answer_text(run, 1, 7) == ("Hello", "cut after 1 of 2 whitespace words (tokens not countable)")
    assert answer_text(run, 3, None) == ("Hello world", "complete (2 words; tokens not countable)")


# -- parsing recorded output ---------------------------------------------------------------------
def _chunks(text: str) -> List[Chunk]:
    """One chunk per line, 1 ms apart (recorded output has no arrival times)."""
    return [Chunk(i * 1_000_000, line) for i, line in enumerate(text.splitlines(keepends=True))]


def test_parses_recorded_llm8850_video_output() -> None:
    text = (FIXTURES / "axllm_llm8850_video.log").read_text()
    init = parse_init(text)
    assert init["remain_cmm_mb_after_init"] == 3220
    run = parse_run(_chunks(text[text.index("prompt >> Describe"):]))
    assert run.encode_ms == pytest.approx(1480.802002) and run.encode_size == 991232
    assert run.n_input_tokens == 511 and run.prefill_split_num == 4
    assert run.prefill_chunks == [128, 128, 128, 127]
    assert run.engine_ttft_ms == pytest.approx(3032.74)
    assert run.rate_tps == pytest.approx(4.86)
    assert run.text.startswith("The video depicts two ground squirrels") and run.text.endswith("path.")
    assert len(run.writes) == 1  # the recorded text is one line: one chunk here
    assert run.error_lines == []


@pytest.mark.parametrize("line, field, value", [
    ("[I][ Encode][416]: image encode time : 794.763000 ms, size : 524288", "encode_ms", 794.763),
    ("[I][Encode][ 1]:image encode time:794.76ms,size:524288", "encode_size", 524288),
    ("[I][ Encode][...]: image encode time : 794.763000 ms", "encode_size", None),
    ("[I][ Run][...]: ttft: 2076.95 ms", "engine_ttft_ms", 2076.95),
    ("[I][Run][796]:ttft:558.68ms", "engine_ttft_ms", 558.68),
    ("[I][ Run][ 625]: input token num : 280, prefill_split_num : 3", "n_input_tokens", 280),
    ("I Run: input token num: 23", "n_input_tokens", 23),
])
def test_log_lines_parse_whatever_the_spacing(line: str, field: str, value: Any) -> None:
    text = line + "\n[I][ Run][ 796]: ttft: 1.00 ms\nx\n\n[N][ Run][ 949]: hit eos,avg 4.83 token/s\n"
    if "ttft" in line:
        text = line + "\nx\n\n[N][ Run][ 949]: hit eos,avg 4.83 token/s\n"
    run = parse_run(_chunks(text))
    assert getattr(run, field) == (pytest.approx(value) if isinstance(value, float) else value)
    assert run.rate_tps == pytest.approx(4.83)


def test_token_writes_and_their_arrival_times() -> None:
    """Token text written piecewise; the final "\\n\\n" and a coalesced log line are not tokens."""
    chunks = [Chunk(0, "[I][ Run][ 796]: ttft: 100.00 ms\n"), Chunk(5, "Hello"), Chunk(9, ","),
              Chunk(14, " world"), Chunk(20, "\n\n[N][ Run][ 949]: hit eos,avg 2.50 token/s\n")]
    run = parse_run(chunks)
    assert run.writes == [(5, "Hello"), (9, ","), (14, " world")]
    assert run.text == "Hello, world"
    assert run.t_ttft_line == 0 and run.t_eos_line == 20
    # a "\n\n" token before the final "\n\n" stays a token
    chunks = [Chunk(0, "ttft: 1.00 ms\n"), Chunk(5, "a"), Chunk(9, "\n\n"), Chunk(12, "\n\n"),
              Chunk(13, "[N][ Run][ 949]: hit eos,avg 2.00 token/s\n")]
    assert [t for t, _ in parse_run(chunks).writes] == [5, 9]


def test_implied_token_count_uses_the_engines_definition() -> None:
    # 4.83 token/s counting the first token, over 6.418 s after it: 31 tokens
    assert implied_token_count(4.83, 0, int(6.418e9)) == 31
    assert implied_token_count(None, 0, 10) is None and implied_token_count(4.0, 10, 10) is None


def test_cmm_and_init_lines() -> None:
    usage = parse_cmm_info("junk\n" + CMM_LINE)
    assert usage is not None
    assert usage.total_mb == 3072.0 and usage.used_mb == pytest.approx(18876 / 1024.0)
    assert parse_cmm_info("no summary here") is None
    init = parse_init("100% | ### | 40 / 40 init vpm axmodel ok,remain_cmm(2559 MB)\n"
                      "init post axmodel ok,remain_cmm(11442 MB)\n[E][ load_config][ 278]: config file open failed\n")
    assert init["remain_cmm_mb_after_init"] == 11442 and init["remain_cmm_mb_reported"] == [2559, 11442]
    assert init["error_lines"] == ["[E][ load_config][ 278]: config file open failed"]
    # AXCL (PCIe card) builds cannot see the card's CMM and print -1
    assert parse_init("init post axmodel ok,remain_cmm(-1 MB)")["remain_cmm_mb_after_init"] is None


def test_png_writer_round_trips() -> None:
    rgb = bytes((i * 7) & 255 for i in range(5 * 3 * 3))
    data = png_bytes(5, 3, rgb)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    assert b"".join(raw[y * 16 + 1:(y + 1) * 16] for y in range(3)) == rgb
    try:
        from PIL import Image
    except ImportError:
        return
    import io

    image = Image.open(io.BytesIO(data))
    assert image.size == (5, 3) and image.mode == "RGB" and image.tobytes() == rgb
    with pytest.raises(ValueError):
        png_bytes(5, 3, rgb[:-1])


def test_missing_model_directory_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="axmodel directory .* does not exist"):
        _backend({"main": "m"}, tmp_path / "nope").load()


def test_missing_binary_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="the ax-llm binary no-such-main-binary was not found"):
        _backend({"main": "no-such-main-binary"}, tmp_path).load()
    assert not [p for p in os.listdir(tmp_path)]  # nothing left behind


# `axllm run` with ax-llm's newer logger (src/runner/utils/logger.cpp: "HH:MM:SS.mmm TAG func:line | msg",
# tags INF/NTC/WRN/ERR/...): an image query as posted in M5Stack's LLM-8850 docs (Qwen3.5-4B, "axllm run"
# terminal chat mode), model text shortened.
AXLLM_NEW_LOGGER = (
    "prompt >> 描述图片内容\n"
    "image >> bus.jpg\n"
    "09:47:13.316 INF EncodeForContent:1121 | Qwen-VL pixel_values[0] bytes=884736 min=0 max=255 "
    "(w=384 h=384 tp=2 ps=16 sm=2)\n"
    "09:47:13.474 INF EncodeForContent:1144 | vision cache store: bus.jpg\n"
    "09:47:13.476 INF SetKVCache:749 | prefill_grpid:3 kv_cache_num:256 precompute_len:33 input_num_token:159\n"
    "09:47:13.476 INF SetKVCache:757 | current prefill_max_token_num:1024\n"
    "09:47:13.476 INF Run:818 | input token num : 159, prefill_split_num : 2\n"
    "09:47:13.476 INF Run:858 | prefill chunk p=0 history_len=33 grpid=2 kv_cache_num=128 input_tokens=128\n"
    "09:47:13.476 INF Run:881 | prefill indices shape: p=0 idx_elems=128 idx_rows=1 pos_rows=3\n"
    "09:47:14.393 INF Run:858 | prefill chunk p=1 history_len=161 grpid=3 kv_cache_num=256 input_tokens=31\n"
    "09:47:14.393 INF Run:881 | prefill indices shape: p=1 idx_elems=128 idx_rows=1 pos_rows=3\n"
    "09:47:15.430 INF Run:1023 | ttft: 1953.40 ms\n"
    "<think>\n\n</think>\n\n这张图片展示了一个城市街道的场景。\n\n"
    "09:47:59.246 NTC Run:1145 | hit eos,avg 5.75 token/s\n"
    "09:47:59.247 INF GetKVCache:721 | precompute_len:312, remaining:840\n"
)


def test_parses_the_new_axllm_logger_format() -> None:
    run = parse_run(_chunks(AXLLM_NEW_LOGGER))
    assert run.encode_ms is None  # this build logs no encode time
    assert run.n_input_tokens == 159 and run.prefill_split_num == 2
    # the chunks, not SetKVCache's prompt total
    assert run.prefill_chunks == [128, 31]
    assert run.engine_ttft_ms == pytest.approx(1953.40)
    assert run.rate_tps == pytest.approx(5.75)
    assert run.text == "<think>\n\n</think>\n\n这张图片展示了一个城市街道的场景。"
    assert run.error_lines == []


def test_setkvcache_line_is_not_a_prefill_chunk_in_the_old_format() -> None:
    # older builds log the same SetKVCache line (LLM.hpp: "prefill_grpid:%d kv_cache_num:%d precompute_len:%d
    # input_num_token:%d") before their "input_num_token:%d" chunk lines
    text = ("[I][                      SetKVCache][ 627]: prefill_grpid:2 kv_cache_num:128 precompute_len:0 "
            "input_num_token:20\n"
            "[I][                             Run][ 659]: input_num_token:20\n"
            "[I][                             Run][ 796]: ttft: 129.16 ms\nHi\n\n"
            "[N][                             Run][ 949]: hit eos,avg 27.22 token/s\n")
    run = parse_run(_chunks(text))
    assert run.prefill_chunks == [20] and run.text == "Hi"


def test_coloured_terminal_output() -> None:
    # sample_log.h wraps each line in ANSI colours ("\033[1;30;31m[E][%32s][%4d]: " fmt "\033[0m\n"); the new
    # logger writes colour + line + "\n" and then "\x1b[0m", which can arrive with the first token
    chunks = [Chunk(0, "\x1b[32m09:45:45.569 INF Run:1023 | ttft: 860.29 ms\n"), Chunk(3, "\x1b[0mHello"),
              Chunk(5, "!"), Chunk(7, "\x1b[0m"), Chunk(9, "\n\n\x1b[35m09:45:47.825 NTC Run:1145 | hit eos,avg 5.76 "
                                                    "token/s\n\x1b[0m")]
    run = parse_run(chunks)
    assert run.engine_ttft_ms == pytest.approx(860.29) and run.rate_tps == pytest.approx(5.76)
    assert run.writes == [(3, "Hello"), (5, "!")] and run.text == "Hello!"
    init = parse_init("\x1b[1;30;31m[E][                     load_config][ 278]: config file open failed\x1b[0m\n"
                      "09:45:01.287 ERR Init:99 | axmodel load failed\n"
                      "\x1b[31m09:45:01.288 CRT Init:100 | out of CMM\n\x1b[0m"
                      "09:45:06.702 WRN load_config:306 | Both top_p and top_k enabled\n"
                      "user text mentioning [E] or ERR is not an error line\n")
    assert init["error_lines"] == ["[E][                     load_config][ 278]: config file open failed",
                                   "09:45:01.287 ERR Init:99 | axmodel load failed",
                                   "09:45:01.288 CRT Init:100 | out of CMM"]


def test_cmm_summary_is_the_line_that_starts_with_total_size() -> None:
    # /proc/ax_proc/mem_cmm_info: partition and block lines, then "---CMM_USE_INFO:" and the summary with a
    # leading space (line quoted in a public ax-llm-based FastAPI service: total size=10485760KB(10240MB),...)
    text = ('+---PARTITION: Phys(0x140000000, 0x3FFFFFFFF), Size=10485760KB(10240MB),    NAME="anonymous"\n'
            '   |-Block: phys(0x140000000, 0x140003FFF), cache =non-cacheable, length=16KB(0MB),    '
            'name="total size=1KB,used=1KB,remain=1KB"\r\n'
            "---CMM_USE_INFO:\r\n"
            " total size=10485760KB(10240MB),used=283228KB(276MB + 604KB),remain=10202532KB(9963MB + 420KB),"
            "partition_number=1,block_number=41\r\n")
    usage = parse_cmm_info(text)
    assert usage is not None
    assert (usage.total_mb, usage.used_mb, usage.remain_mb) == (10240.0, 283228 / 1024.0, 10202532 / 1024.0)
