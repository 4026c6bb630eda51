"""Models without downloads: real architectures with random weights (`bench models make`).

``read_model_marker`` needs only the standard library. ``make_model`` and the rest need torch and
transformers and are imported on first use, so ``from harness.models import make_model`` raises
ImportError when they are missing (the CLI turns that into an install hint).
"""

from __future__ import annotations

from typing import Any

from .marker import MARKER_NAME, read_model_marker
from .presets import ARCHS, PRESETS

_LAZY = ("make_model", "MakeResult", "build_config", "build_processor", "model_class")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import make

        return getattr(make, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = ["ARCHS", "MARKER_NAME", "PRESETS", "read_model_marker", *_LAZY]
