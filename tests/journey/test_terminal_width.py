"""`bench run` and `bench results list` on an 80-column terminal (a real pty) and through a pipe:
run ids and numbers are never split across lines, the live table ends before what follows, and the
regress table does not turn into slivers."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from .conftest import REPO, Bench, bench_script

pytestmark = pytest.mark.journey

DEVICES = """\
devices:
  - name: emu-with-a-long-name-local-3b
    type: local
    transport: local
    workdir: results/work
    idle_s: 0
    backend: reference
    backend_options: {profile: rtx}
    models:
      - variant: emulated-variant
        path: .
"""
# the live table redraws itself by moving the cursor up and erasing lines: each such move starts a
# new line of the captured screen; other control sequences are dropped
REDRAW = re.compile(r"(\x1b\[\d*A|\x1b\[2K|\r)+")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def run_in_pty(args: List[str], cwd: Path, columns: int = 80, timeout: float = 300) -> Tuple[int, str]:
    """Run the installed script with a pty of `columns` x 40 as its terminal; (exit code, screen text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([str(bench_script()), *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks: List[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the pty
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    text = b"".join(chunks).decode("utf-8", "replace")
    return code, ANSI.sub("", REDRAW.sub("\n", text))


def _lines_with(text: str, needle: str) -> List[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    (tmp_path / "devices.yaml").write_text(DEVICES)
    return tmp_path


def test_run_at_80_columns_and_through_a_pipe_never_splits_ids_or_numbers(project: Path) -> None:
    code, screen = run_in_pty(["run", "--suite", "image", "--devices", "all", "-r", "3", "-n", "6"], project)
    assert code == 0, screen[-3000:]
    run_ids = set(RUN_ID.findall(screen))
    assert len(run_ids) == 1, screen[-3000:]
    run_id = run_ids.pop()
    # every place the run is named shows its whole id on one line
    assert "bench report %s" % run_id in screen
    assert all(len(line) <= 80 for line in screen.splitlines()), max(screen.splitlines(), key=len)
    # the medians: each number whole, next to its label (records layout at 80 columns)
    ttft = [line for line in screen.splitlines() if line.strip().startswith("TTFT ms")]
    assert ttft and all(re.search(r"TTFT ms\s+\d+\.\d\d$", line.strip()) for line in ttft), screen[-2000:]
    # a pipe: one row per line, however wide
    piped = Bench()(project, "results", "list")
    assert piped.returncode == 0
    row = _lines_with(piped.stdout, run_id)
    assert len(row) == 1 and "emu-with-a-long-name-local-3b" in row[0] and "finished" in row[0]


def test_results_list_at_80_columns_keeps_each_run_id_whole(project: Path) -> None:
    first = Bench()(project, "run", "--suite", "image", "--devices", "all", "-r", "2", "-n", "4")
    assert first.returncode == 0, first.stderr[-2000:]
    code, screen = run_in_pty(["results", "list"], project)
    assert code == 0
    ids = RUN_ID.findall(screen)
    assert len(ids) == 1 and all(len(line) <= 80 for line in screen.splitlines())
    regress_code, regress_screen = run_in_pty(["regress", "--baseline", ids[0], "--all"], project)
    assert regress_code == 0, regress_screen[-2000:]
    # 12 columns cannot fit 80: each change is a block of `label  value` lines, not slivers
    metric_lines = [line for line in regress_screen.splitlines() if line.strip().startswith("metric")]
    assert metric_lines and all(len(line.split()) == 2 for line in metric_lines), regress_screen[-2000:]
