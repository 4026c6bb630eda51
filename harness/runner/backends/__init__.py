"""Backend registry: a name -> a Backend class, its module imported only when asked for.

Adding an engine is one new module plus one line in ``_MODULES`` (the module registers its class
with ``@register_backend``). Importing this package never imports an engine.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Type

from .base import Backend, BackendError, BackendUnavailable

# Which module defines each backend, and which pip extra installs its engine.
_MODULES: Dict[str, str] = {
    "reference": "harness.runner.backends.reference",
    "transformers": "harness.runner.backends.transformers_backend",
    "axllm": "harness.runner.backends.axllm",
    "openvino_genai": "harness.runner.backends.openvino_genai",
    "llamacpp": "harness.runner.backends.llamacpp",
    "openai": "harness.runner.backends.openai",
}
_EXTRAS: Dict[str, str] = {
    "reference": "",
    "transformers": "local",
    "axllm": "",  # the ax-llm binary ships with AXERA's model, not from PyPI
    "openvino_genai": "openvino",
    "llamacpp": "",  # llama.cpp's llama-mtmd-cli binary, built for the board (see the backend's docstring)
    "openai": "",  # a client only (standard library); the server is whatever the board runs
}

_REGISTRY: Dict[str, Type[Backend]] = {}


def register_backend(name: str) -> Callable[[Type[Backend]], Type[Backend]]:
    def decorate(cls: Type[Backend]) -> Type[Backend]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def known_backends() -> List[str]:
    return sorted(_MODULES)


def install_hint(name: str) -> str:
    extra = _EXTRAS.get(name)
    if not extra:
        return ""
    return ("install it (from a checkout of edge-VLM bench: pip install -e '.[%s]', "
            "or the engine's own packages on a board)" % extra)


def get_backend(name: str) -> Type[Backend]:
    """The class registered under ``name``; its module is imported now (engines are not)."""
    if name not in _MODULES:
        raise BackendError(
            "unknown backend %r; known backends: %s" % (name, ", ".join(known_backends()))
        )
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]


__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "get_backend",
    "install_hint",
    "known_backends",
    "register_backend",
]
