"""Shared fixtures: a project directory with the real suites and a devices file of our choosing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with suites/ copied in; tests write their own devices.yaml."""
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def bench_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "250"  # rich wraps tables at 80 columns without a terminal
    return env


BENCH = [sys.executable, "-m", "harness.cli"]

# the real llama.cpp and GGUF variants of the tiny model and the canary (session-scoped, cached)
from tests.llamacpp_env import canary_gguf, llamacpp, tiny_gguf, tiny_hf_dir  # noqa: E402,F401
