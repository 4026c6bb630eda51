"""benchmarks/cpu_split.py, which farm_scale.py's CPU figures come from: CPU burnt by a worker
(a direct child) counts for the controller, CPU burnt by a process a board started detached (an
orphan, re-parented to the benchmark as subreaper) counts for the boards.

The truth is the burners' own budgets: each spins until its own process_time() reaches a known
amount; the books must find at least that, and not much more (an interpreter start). Without the
subreaper (the mutation) the orphan is re-parented to init and the boards' figure misses it.
Run in a subprocess: the subreaper flag would otherwise stay on the pytest process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from cpu_split import Books, become_subreaper
if sys.argv[2] == "subreaper":
    become_subreaper()
burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < %f: pass\n"
books = Books(board_daemons=[], database_daemons=[])
books.open()
worker = subprocess.Popen([sys.executable, "-S", "-c", burn % 0.3])
# a board's spawn script: starts its command in a new session and exits at once
spawner = subprocess.Popen([sys.executable, "-S", "-c",
    "import subprocess, sys; subprocess.Popen([sys.executable, '-S', '-c', %r], start_new_session=True)" % (burn % 0.5)])
reaper = books.watch([worker.pid])
reaper.wait_for_controller(timeout_s=60)
time.sleep(0.2)  # the spawner has exited; the orphan burns on
split = books.close(grace_s=30)
print(json.dumps({"controller": split.controller_s, "boards": split.boards_s, "host": split.host_s}))
"""


def books(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / "benchmarks"), mode], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")
def test_a_workers_cpu_is_the_controllers_and_an_orphans_the_boards() -> None:
    counted = books("subreaper")
    assert 0.3 <= counted["controller"] < 0.3 + 0.25, counted
    assert 0.5 <= counted["boards"] < 0.5 + 0.35, counted  # the orphan, and the spawner's start
    assert counted["host"] >= counted["controller"] + counted["boards"] - 0.05, counted
    missed = books("plain")  # mutation: no subreaper, the orphan goes to init
    assert 0.3 <= missed["controller"] < 0.3 + 0.25, missed
    assert missed["boards"] < 0.3, missed
