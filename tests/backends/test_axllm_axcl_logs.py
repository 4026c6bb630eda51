"""ax-llm on AXCL hosts (AX650N / AX8850 cards): real logs from public docs, parsed by the format's rules.

Sources:
- radxa-docs/docs, i18n/en/docusaurus-plugin-content-docs/current/aicore/ax-m1/VLM/qwen2.5-vl-3b.md (Radxa AICore
  AX-M1 in a ROCK 5B+, Qwen2.5-VL-3B, main_axcl_aarch64): image and video runs. The init progress bar
  (rewritten with "\\r" on the terminal) shows "remain_cmm(3220 MB)545 MB))" - stale and garbled - while the
  table printed after init says 2286 MB (image) / 2464 MB (video).
- M5Stack LLM-8850 card docs (AX8850, Qwen2.5-VL-3B via AXCL): the table reads -1 (CMM not visible from the host).
- M5Stack LLM-8850 docs, Qwen3.5-4B with the newer `axllm run` logger (HH:MM:SS.mmm INF Func:line |): an image
  query prints no "image encode time" line at all.
"""

from __future__ import annotations

from typing import List

import pytest

from harness.runner.backends._axllm_parse import Chunk, parse_cmm_table, parse_init, parse_run, prefill_chunks

from .fixtures.axllm_env import tokenizer_service

RADXA_IMAGE_INIT = (
    "[I][                            Init][ 162]: LLM init start\n"
    "[I][                            Init][  34]: connect http://127.0.0.1:12345 ok\n"
    "bos_id: -1, eos_id: 151645\n"
    "img_start_token: 151652\n"
    "img_context_token: 151655\n"
    "  2% | \u2588                                 |   1 /  39 [0.00s<0.16s, 250.00 count/s] tokenizer init ok"
    "[I][                            Init][  45]: LLaMaEmbedSelector use mmap\n"
    "  5% | \u2588\u2588                                |   2 /  39 [0.00s<0.08s, 500.00 count/s] embed_selector init ok\n"
    "[I][                             run][  30]: AXCLWorker start with devid 0\n"
    " 12% |  \u2588\u2588\u2588\u2588\u2588                                   |   4 /  39 [11.15s<86.99s, 0.45 count/s] "
    "init 24 axmodel ok,devid(0) remain_cmm(-1 MB)     100% | \u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588 |  39 /  39 "
    "[54.60s<57.55s, 0.68 count/s] init post axmodel ok,remain_cmm(3220 MB)545 MB))\n"
    "input size: 1\n"
    "    name: hidden_states [unknown] [unknown]\n"
    "        1 x 1024 x 392 x 3 size:1204224\n"
    "\n"
    "[I][                            Init][ 340]: max_token_len : 1023\n"
    "[I][                            Init][ 359]: prefill_max_token_num : 512\n"
    "________________________\n"
    "|    ID| remain cmm(MB)|\n"
    "========================\n"
    "|     0|           2286|\n"
    "\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\n"
    "[E][                     load_config][ 278]: config file(post_config.json) open failed\n"
    "[W][                            Init][ 452]: load postprocess config(post_config.json) failed\n"
    "[I][                            Init][ 456]: LLM init ok\n"
    "Type \"q\" to exit, Ctrl+c to stop current running\n"
    "prompt >> ")
RADXA_IMAGE_QUERY = (
    "[I][                          Encode][ 539]: image encode time : 787.804993 ms, size : 524288\n"
    "[I][                             Run][ 625]: input token num : 280, prefill_split_num : 3\n"
    "[I][                             Run][ 659]: input_num_token:128\n"
    "[I][                             Run][ 659]: input_num_token:128\n"
    "[I][                             Run][ 659]: input_num_token:24\n"
    "[I][                             Run][ 796]: ttft: 1964.38 ms\n"
    "This image shows a busy city street.\n"
    "\n"
    "[N][                             Run][ 949]: hit eos,avg 4.95 token/s\n"
    "\n"
    "prompt >> ")
RADXA_VIDEO_INIT_TAIL = (
    " 92% | \u2588\u2588\u2588\u2588 \u2588 \u2588\u2588\u2588\u2588   |  35 /  39 [49.00s<54.60s, 0.71 count/s] init 4 axmodel ok,devid(0) "
    "remain100% | \u2588\u2588\u2588\u2588 |  39 /  39 [54.74s<56.18s, 0.69 count/s] init post axmodel ok,remain_cmm(3220 MB)3545 MB)\n"
    "________________________\n"
    "|    ID| remain cmm(MB)|\n"
    "========================\n"
    "|     0|           2464|\n"
    "\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\n"
    "[I][                            Init][ 456]: LLM init ok\n")
M5_MINUS_ONE = (
    "[I][                            Init][ 359]: prefill_max_token_num : 512\n"
    "________________________\n"
    "|    ID| remain cmm(MB)|\n"
    "========================\n"
    "|     0|             -1|\n"
    "\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\u00af\n"
    "[I][                            Init][ 456]: LLM init ok\n")
# newer `axllm run` (M5Stack LLM-8850 docs, Qwen3.5-4B): the image query has no encode line
AXLLM_RUN_IMAGE_QUERY = (
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
    "<think>\n\n</think>\n\n\u8fd9\u5f20\u56fe\u7247\u5c55\u793a\u4e86\u4e00\u4e2a\u57ce\u5e02\u8857\u9053\u7684\u573a\u666f\u3002\n"
    "\n"
    "09:47:59.246 NTC Run:1145 | hit eos,avg 5.75 token/s\n"
    "09:47:59.247 INF GetKVCache:721 | precompute_len:312, remaining:840\n"
    "prompt >> ")


def _chunks(text: str) -> List[Chunk]:
    return [Chunk(i * 1_000_000, line) for i, line in enumerate(text.splitlines(keepends=True))]


def test_axcl_table_is_authoritative_over_garbled_progress_lines() -> None:
    init = parse_init(RADXA_IMAGE_INIT)
    # the progress bar said 3220 (stale, then garbled into "3220 MB)545 MB))"); the table says 2286
    assert init["remain_cmm_mb_after_init"] == 2286
    assert init["remain_cmm_mb_by_device"] == {"0": 2286} and "table" in init["remain_cmm_source"]
    assert init["error_lines"] == ["[E][                     load_config][ 278]: config file(post_config.json) open failed"]
    assert parse_init(RADXA_VIDEO_INIT_TAIL)["remain_cmm_mb_after_init"] == 2464


def test_progress_lines_rewritten_with_cr_do_not_override_the_table() -> None:
    # as the terminal received it: each progress update rewrites the line with "\r"
    text = RADXA_IMAGE_INIT.replace("     100% |", "\r100% |").replace(" 12% |", "\r 12% |")
    assert parse_init(text)["remain_cmm_mb_after_init"] == 2286
    assert parse_init(text.replace("\n", "\r\n"))["remain_cmm_mb_after_init"] == 2286


def test_coloured_table_and_two_cards() -> None:
    # ax-llm prints the table between MACRO_PURPLE and MACRO_END (ANSI colours on a terminal)
    text = ("\x1b[1;35m________________________\n|    ID| remain cmm(MB)|\n========================\n"
            "|     0|           2286|\n|     1|           7001|\n\u00af\u00af\u00af\u00af\n\x1b[0m[I][ Init][ 456]: LLM init ok\n")
    assert parse_cmm_table(text) == {0: 2286, 1: 7001}
    init = parse_init(text)
    assert init["remain_cmm_mb_after_init"] == 2286 and init["remain_cmm_mb_by_device"] == {"0": 2286, "1": 7001}


def test_table_minus_one_is_not_a_measurement() -> None:
    init = parse_init(M5_MINUS_ONE)
    assert init["remain_cmm_mb_after_init"] is None and "not visible from the host" in init["remain_cmm_note"]
    assert parse_cmm_table(M5_MINUS_ONE) == {0: None}
    # a board build (no table): the last progress figure is used, -1 never
    assert parse_init("init post axmodel ok,remain_cmm(11442 MB)\n")["remain_cmm_mb_after_init"] == 11442
    assert parse_init("init post axmodel ok,remain_cmm(-1 MB)m(4112 MB)\n")["remain_cmm_mb_after_init"] is None


def test_radxa_axcl_image_query() -> None:
    run = parse_run(_chunks(RADXA_IMAGE_QUERY))
    assert (run.encode_ms, run.encode_size) == (787.804993, 524288)
    assert (run.n_input_tokens, run.prefill_split_num, run.prefill_chunks) == (280, 3, [128, 128, 24])
    assert (run.engine_ttft_ms, run.rate_tps) == (1964.38, 4.95)
    assert run.text == "This image shows a busy city street."


def test_crlf_log_keeps_prefill_chunks_and_answer() -> None:
    run = parse_run(_chunks(RADXA_IMAGE_QUERY.replace("\n", "\r\n")))
    assert run.prefill_chunks == [128, 128, 24] and run.n_input_tokens == 280
    assert (run.engine_ttft_ms, run.rate_tps) == (1964.38, 4.95)
    assert run.text.strip() == "This image shows a busy city street."


def test_newer_axllm_run_reports_no_encode_time() -> None:
    run = parse_run(_chunks(AXLLM_RUN_IMAGE_QUERY))
    assert run.encode_ms is None and run.t_encode_line is None  # not reported, never invented
    assert run.prefill_chunks == [128, 31] and (run.n_input_tokens, run.prefill_split_num) == (159, 2)
    assert (run.engine_ttft_ms, run.rate_tps) == (1953.40, 5.75)
    assert run.text.endswith("\u573a\u666f\u3002")
    # SetKVCache's input_num_token:159 is the prompt total, not a chunk
    assert prefill_chunks(AXLLM_RUN_IMAGE_QUERY.split("ttft")[0]) == [128, 31]


# -- through the backend (the stand-in binary prints the real format; see tests/backends/test_axllm.py) ------
@pytest.fixture(scope="module")
def tokenizer_url():  # type: ignore[no-untyped-def]
    with tokenizer_service() as url:
        yield url


def test_backend_reports_a_missing_encode_line_as_not_reported(tmp_path, tokenizer_url) -> None:  # type: ignore[no-untyped-def]
    from .test_axllm import _run_once

    _, raw = _run_once(tmp_path, tokenizer_url, no_encode_line=True)
    assert raw.engine["image_encode_ms"] is None and "not reported" in raw.engine["image_encode"]
    # the after-encode build's end-to-end TTFT needs the encode time: unknown, not ttft + 0
    assert raw.engine["ttft_ms"] is not None and raw.engine["ttft_end_to_end_ms"] is None
    (tmp_path / "b").mkdir()
    with_line = _run_once(tmp_path / "b", tokenizer_url)[1]
    assert with_line.engine["ttft_end_to_end_ms"] == pytest.approx(with_line.engine["ttft_ms"]
                                                                   + with_line.engine["image_encode_ms"])
