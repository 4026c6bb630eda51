"""Running the installed `bench` script in a project directory, and hostile config texts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH_SCRIPT = str(Path(sys.executable).parent / "bench")

# A local device whose fields the tests vary; workdir stays inside the project.
DEVICE = """\
devices:
  - name: {name}
    type: local
    transport: local
    workdir: {workdir}
    idle_s: 0.2
    backend: reference
    backend_options: {options}
    models:
      - variant: emulated
        path: .
"""

# The billion-laughs shape: 9 names per level, 9 levels; ~340 bytes that expand to 9^9 values.
ALIAS_BOMB = "".join(
    ["a: &a [%s]\n" % ",".join(['"lol"'] * 9)]
    + ["%s: &%s [%s]\n" % (name, name, ",".join(["*" + prev] * 9))
       for prev, name in zip("abcdefgh", "bcdefghi")]
)


def bench(project: Path, *args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The installed `bench` script; no stdin unless ``stdin`` is given (as in CI)."""
    env = dict(os.environ, COLUMNS="250")
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run([BENCH_SCRIPT, *args], cwd=project, capture_output=True, text=True, env=env,
                          timeout=timeout, **feed)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error line of a refused command; asserts there is no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # a prompt without a newline (no terminal) may precede it on the same line
    errors = [line[line.index("error: "):] for line in lines if "error: " in line]
    assert errors, proc.stderr
    return errors[0]
