"""Journey tests run the installed `bench` console script (the one `pip install` put beside the
interpreter), never `python -m harness.cli`: what a user types is what is tested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench_script() -> Path:
    script = Path(sys.executable).parent / "bench"
    if not script.is_file():
        pytest.fail("the bench console script is not installed beside %s: run bash scripts/setup-venv.sh"
                    % sys.executable, pytrace=False)
    return script


class Bench:
    """bench(cwd, *args): the installed script in a subprocess, through pipes (no terminal)."""

    def __init__(self, env: dict | None = None) -> None:
        self.script = bench_script()
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("COLUMNS", None)  # a pipe has no width: the output must not depend on one
        self.env.pop("BENCH_STORE", None)
        self.env.pop("BENCH_DEVICES_FILE", None)

    def __call__(self, cwd: Path, *args: str, timeout: float = 300, input: str | None = None
                 ) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.script), *args], cwd=cwd, capture_output=True, text=True, env=self.env,
                              timeout=timeout, input=input if input is not None else "")
