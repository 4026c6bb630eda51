"""Session fixtures for the real llama.cpp: the build, and GGUF variants of our two small models.

The build is scripts/build_llamacpp.sh's (scripts/test.sh runs it before pytest and exports
LLAMACPP_ROOT); the GGUF variants (F16, Q8_0, Q4_K_M) are made with that tree's own
convert_hf_to_gguf.py and llama-quantize by harness.models.gguf, cached by content hash, so only
the first session after a change pays for them.

Outside CI a missing build skips the real tests (a developer may not have built it yet); in CI
(CI=true) it fails them: CI must run llama.cpp for real.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import pytest

REPO = Path(__file__).resolve().parent.parent
CANARY = REPO / "tests" / "fixtures" / "canary"


def require_llamacpp():  # type: ignore[no-untyped-def]
    """The built tree, or skip (developer machine) / fail (CI) naming the build command."""
    from harness.models.gguf import default_tree

    tree = default_tree()
    if tree.complete():
        return tree
    message = ("llama.cpp is not built at %s (run: bash scripts/build_llamacpp.sh; scripts/test.sh does)"
               % tree.root)
    if os.environ.get("CI") == "true":
        pytest.fail(message + " - in CI the real llama.cpp tests must run")
    pytest.skip(message)


@pytest.fixture(scope="session")
def llamacpp():  # type: ignore[no-untyped-def]
    return require_llamacpp()


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Qwen2.5-VL (seed 0), as `bench models make --preset tiny` makes it."""
    from harness.models import make_model

    return make_model("qwen2.5-vl", "tiny", tmp_path_factory.mktemp("gguf-src") / "tiny", seed=0).path


@pytest.fixture(scope="session")
def tiny_gguf(llamacpp, tiny_hf_dir: Path) -> Dict[str, "object"]:  # type: ignore[no-untyped-def]
    from harness.models.gguf import gguf_variants

    return gguf_variants(tiny_hf_dir, llamacpp)


@pytest.fixture(scope="session")
def canary_gguf(llamacpp) -> Dict[str, "object"]:  # type: ignore[no-untyped-def]
    from harness.models.gguf import gguf_variants

    return gguf_variants(CANARY, llamacpp)
