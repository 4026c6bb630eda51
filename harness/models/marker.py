"""The marker file that labels a model directory as random-weight (standard library only).

`bench models make` writes it last, so its presence also means the directory is complete. The
runner's `transformers` backend and the controller read it to label results ``weights: random``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

MARKER_NAME = "edge_vlm_bench_model.json"


def read_model_marker(path: Union[str, "os.PathLike[str]"]) -> Optional[Dict[str, Any]]:
    """The marker of the model directory ``path`` (or the marker file itself), None if absent.

    A marker that exists but is not a JSON object is reported as such rather than ignored: a
    result must never be labelled real-weight because its label could not be read.
    """
    target = Path(path)
    if target.is_dir():
        target = target / MARKER_NAME
    if not target.is_file():
        return None
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"weights": "random", "error": "unreadable marker %s: %s" % (target, exc)}
    if not isinstance(data, dict):
        return {"weights": "random", "error": "marker %s is not a JSON object" % target}
    return data


def write_model_marker(directory: Path, record: Dict[str, Any]) -> Path:
    """Write the marker atomically (temp file + rename): a crash never leaves half a marker."""
    target = directory / MARKER_NAME
    tmp = directory / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target
