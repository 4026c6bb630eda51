"""`bench run --model DIR`: an ad-hoc run of one model directory on this machine, no devices.yaml.

The backend is chosen by what the directory holds: an OpenVINO IR (openvino_genai), GGUF files
(llamacpp: a model and an mmproj file), or a transformers checkpoint (config.json).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from .devices import DeviceConfig, Inventory
from .yaml_lines import ConfigError

ADHOC_DEVICE = "local"


def detect_backend(model_dir: Path) -> str:
    if not model_dir.is_dir():
        raise ConfigError("--model %s: not a directory" % model_dir)
    if any(model_dir.glob("openvino_*model*.xml")):
        return "openvino_genai"
    if any(model_dir.glob("*.gguf")):
        return "llamacpp"
    if (model_dir / "config.json").is_file():
        return "transformers"
    raise ConfigError("--model %s: no model found (expected config.json for transformers, openvino_*.xml for "
                      "OpenVINO GenAI or *.gguf for llama.cpp)" % model_dir)


def _variant_name(model_dir: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_dir.resolve().name).strip("-.") or "model"
    return name[:60]


def adhoc_inventory(model_dir: Path, backend: Optional[str] = None, workdir: str = "results/work") -> Inventory:
    """An inventory of one local device running ``model_dir`` (CPU, the backend's defaults)."""
    chosen = backend or detect_backend(model_dir)
    options = {"device": "cpu"} if chosen == "transformers" else {}
    device = DeviceConfig.model_validate({
        "name": ADHOC_DEVICE, "type": "local", "transport": "local", "workdir": workdir, "backend": chosen,
        "backend_options": options, "description": "ad-hoc run of %s" % model_dir,
        "models": [{"variant": _variant_name(model_dir), "path": str(model_dir.resolve())}],
    })
    return Inventory(Path("--model %s" % model_dir), [device], {ADHOC_DEVICE: 1})
