"""The server launcher's errors name what is missing (no real server needed)."""

from __future__ import annotations

import sys

import pytest

from harness.runner.backends import get_backend
from harness.runner.backends._server_launch import start_server
from harness.runner.backends.base import BackendUnavailable
from harness.runner.protocol import ModelSpec
from tests.server.conftest import free_port


def test_missing_executable_is_named() -> None:
    with pytest.raises(BackendUnavailable, match="'no-such-llama-server-xyz' not found"):
        start_server(["no-such-llama-server-xyz", "-m", "x.gguf"], "127.0.0.1", free_port())


def test_a_server_that_exits_shows_its_last_words() -> None:
    cmd = [sys.executable, "-c", "import sys; print('Error: FastAPI is not installed'); sys.exit(3)"]
    with pytest.raises(BackendUnavailable) as info:
        start_server(cmd, "127.0.0.1", free_port(), ready_timeout_s=30)
    assert "exited with code 3" in str(info.value) and "FastAPI is not installed" in str(info.value)


def test_backend_launch_failure_is_reported_at_load() -> None:
    backend = get_backend("openai")({"url": "http://127.0.0.1:%d" % free_port(),
                                     "launch": {"cmd": ["no-such-transformers-xyz", "serve", "{model}"]}},
                                    ModelSpec(variant="v", path="/models/m"))
    with pytest.raises(BackendUnavailable, match="no-such-transformers-xyz"):
        backend.load()
