"""Older llama.cpp multimodal CLIs (llava-cli, minicpmv-cli, qwen2vl-cli): their encode_image_with_clip lines
are read, and the backend says clearly that the build is too old to time (no ready line after loading).

Real output: ggml-org/llama.cpp examples/llava/MobileVLM.md ("llava-cli latest-version" output) and
examples/llava/README.md ("encode_image_with_clip: image embedding created: 576 tokens" / 2880 for llava-1.6).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.runner.backends import get_backend
from harness.runner.backends._axllm_parse import Chunk
from harness.runner.backends._llamacpp_parse import LEGACY_BUILD, parse_query
from harness.runner.backends.base import BackendError
from harness.runner.protocol import GenerationSpec, ModelSpec

from .fixtures.runner_spec import inputs

# stderr of llava-cli (MobileVLM.md, "llava-cli latest-version"), then its llama_print_timings
LLAVA_CLI_STDERR = (
    "encode_image_with_clip: image embedding created: 144 tokens\n"
    "\n"
    "encode_image_with_clip: image encoded in 288268.88 ms by CLIP ( 2001.87 ms per image patch)\n"
    "llama_print_timings:        load time =  818120.91 ms\n"
    "llama_print_timings:      sample time =       3.44 ms /    14 runs   (    0.25 ms per token,  4067.40 tokens per second)\n"
    "llama_print_timings: prompt eval time =  529274.69 ms /   191 tokens ( 2771.07 ms per token,     0.36 tokens per second)\n"
    "llama_print_timings:        eval time =   43894.02 ms /    13 runs   ( 3376.46 ms per token,     0.30 tokens per second)\n")
LLAVA_CLI_STDOUT = "\n It is a group of sheep standing together in a grass field.\n\n"


def test_llava_cli_lines_are_read() -> None:
    chunks = [Chunk(i, line, "err") for i, line in enumerate(LLAVA_CLI_STDERR.splitlines(keepends=True))]
    chunks.append(Chunk(100, LLAVA_CLI_STDOUT, "out"))
    query = parse_query(chunks)
    assert query.n_media_tokens == 144 and query.encode_ms == [288268.88]
    assert query.perf["prompt_eval_ms"] == 529274.69 and query.perf["prompt_eval_tokens"] == 191
    assert query.perf["eval_runs"] == 13 and query.perf["load_ms"] == 818120.91
    assert query.legacy_cli == LEGACY_BUILD and query.t_ready is None
    # llava-1.6's bigger embedding (examples/llava/README.md)
    q16 = parse_query([Chunk(0, "encode_image_with_clip: image embedding created: 2880 tokens\n", "err")])
    assert q16.n_media_tokens == 2880
    # the current CLI is not mistaken for an old one
    assert parse_query([Chunk(0, "image slice encoded in 10 ms\n", "err")]).legacy_cli is None


def test_backend_says_the_build_is_too_old(tmp_path: Path) -> None:
    script = tmp_path / "llava_cli.py"
    script.write_text("import sys\nsys.stderr.write(%r)\nsys.stderr.flush()\nsys.stdout.write(%r)\n"
                      % (LLAVA_CLI_STDERR, LLAVA_CLI_STDOUT))
    cli = tmp_path / "llava-cli"
    cli.write_text("#!/bin/sh\nexec '%s' '%s'\n" % (sys.executable, script))
    cli.chmod(0o755)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    (tmp_path / "mmproj-model.gguf").write_bytes(b"GGUF")
    backend = get_backend("llamacpp")({"cli": str(cli)}, ModelSpec("q4", str(model)))
    backend.load()
    try:
        with pytest.raises(BackendError) as caught:
            backend.run(inputs("image"), GenerationSpec(output_tokens=4))
    finally:
        backend.close()
    message = str(caught.value)
    assert "too old" in message and "encode_image_with_clip" in message and "llama-mtmd-cli" in message
