"""Real OpenAI-compatible servers on loopback for the openai backend's tests.

`transformers serve` (the [serving] extra) serves the tiny random-weight Qwen2.5-VL once per
session, started through the backend's own launcher (harness/runner/backends/_server_launch.py), so
a server that cannot start fails the tests with the launcher's message naming what is missing.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Iterator

import pytest

from harness.runner.backends._server_launch import ServerProcess, start_server
from harness.runner.backends.base import BackendError

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_or_fail(cmd: list, port: int, env: dict, ready_path: str = "/v1/models") -> ServerProcess:
    try:
        return start_server(cmd, "127.0.0.1", port, ready_path=ready_path, ready_timeout_s=300, env=env)
    except BackendError as exc:
        pytest.fail("the server for the server tests did not start: %s" % exc)


@pytest.fixture(scope="session")
def served_tiny_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Qwen2.5-VL (seed 0), as `bench models make --preset tiny` makes it:
    the llama.cpp tests' copy when their fixtures are loaded (one build per session), else our own."""
    try:
        return Path(request.getfixturevalue("tiny_hf_dir"))
    except pytest.FixtureLookupError:
        from harness.models import make_model

        return make_model("qwen2.5-vl", "tiny", tmp_path_factory.mktemp("served") / "tiny", seed=0).path


@pytest.fixture(scope="session")
def transformers_server(served_tiny_dir: Path) -> Iterator[str]:
    """The URL of `transformers serve` serving the tiny random-weight Qwen2.5-VL."""
    port = free_port()
    server = start_or_fail([str(BIN / "transformers"), "serve", "--host", "127.0.0.1", "--port", str(port),
                            "--device", "cpu", str(served_tiny_dir)], port,
                           {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        server.stop()
