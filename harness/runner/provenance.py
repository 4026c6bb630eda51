"""What machine, OS and runner produced a measurement (stdlib only, best effort, never fatal)."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from typing import Any, Dict, Optional

from . import RUNNER_VERSION


def _read(path: str, limit: int = 4096) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _os_release(root: str) -> str:
    text = _read(os.path.join(root, "etc/os-release")) or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def _cpu_model(root: str) -> str:
    text = _read(os.path.join(root, "proc/cpuinfo"), 65536) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return platform.processor() or platform.machine()


def runner_hash() -> str:
    """sha256 of the zipapp this runner was started from; 'source' when run from a checkout."""
    path = sys.argv[0] if sys.argv else ""
    if path.endswith(".pyz") and os.path.isfile(path):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    return "source"


def machine_provenance(root: str = "/") -> Dict[str, Any]:
    board = (
        _read(os.path.join(root, "proc/device-tree/model"))
        or _read(os.path.join(root, "sys/class/dmi/id/product_name"))
        or "unknown"
    )
    info: Dict[str, Any] = {
        "board": board,
        "cpu_model": _cpu_model(root),
        "arch": platform.machine(),
        "os": _os_release(root),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "runner_version": RUNNER_VERSION,
    }
    l4t = _read(os.path.join(root, "etc/nv_tegra_release"))
    if l4t:
        info["l4t_release"] = l4t.splitlines()[0]
    governor = _read(os.path.join(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
    if governor:
        info["cpu_governor"] = governor
    return info
