"""Session fixtures for the transformers backend: tiny random-weight Qwen-VL models, built once."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from harness.models import make_model

    root = tmp_path_factory.mktemp("backend-models")
    return {arch: make_model(arch, "tiny", root / arch, seed=0).path for arch in ("qwen2.5-vl", "qwen2-vl")}
