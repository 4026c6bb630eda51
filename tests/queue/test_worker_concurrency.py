"""`bench worker --concurrency N` runs N boards at once, whatever the CPU count.

procrastinate runs a sync task in the event loop's default thread pool, which Python sizes
min(32, cores + 4): on the 2-core lab PC `--concurrency 16` ran 6 jobs and fetched 10 more that
waited for a thread. The truth here is the kernel's process table: the runner processes alive on
the (loopback sshd) boards at once, sampled from /proc while the jobs run.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Dict, Set

import pytest

from .conftest import LAB, Team, farm_devices

pytestmark = [pytest.mark.queue, pytest.mark.journey]


def runner_pids(marker: str) -> Set[int]:
    """Runner processes (python ... runner-<hash>.pyz run --run-dir <dir>) whose run directory
    contains ``marker``. A runner's child caught between fork and exec (starting its engine) still
    shows the runner's argv: it is told apart by its parent, another runner."""
    found: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = handle.read().split(b"\0")
            with open("/proc/%s/stat" % entry, "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the runner itself, not the shell that started it (whose argv carries the same words)
        if len(argv) > 4 and b"runner-" in argv[1] and argv[1].endswith(b".pyz") and argv[2:4] == [b"run", b"--run-dir"] \
                and marker.encode() in argv[4]:
            found[int(entry)] = int(stat[stat.rfind(b")") + 2:].split()[1])  # its parent's pid
    return {pid for pid, parent in found.items() if parent not in found}


class PeakSampler:
    def __init__(self, marker: str) -> None:
        self.marker, self.peak, self.seen = marker, 0, set()  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            alive = runner_pids(self.marker)
            self.seen |= alive
            self.peak = max(self.peak, len(alive))

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_worker_runs_as_many_boards_at_once_as_its_concurrency(team: Team) -> None:
    default_pool = min(32, (os.cpu_count() or 1) + 4)
    boards = default_pool + 2
    if boards > 12:
        pytest.skip("Python's default pool here (%d threads) is not below the %d boards this test can run"
                    % (default_pool, 12))
    marker = "-conc%d" % os.getpid()

    def copies(data: Dict) -> None:
        # one sshd board under several names, each with its own workdir (so its own lease)
        template = next(d for d in data["devices"] if d["name"] == "ax650n")
        for i in range(boards):
            device = copy.deepcopy(template)
            device["name"] = "conc-%d" % i
            device["workdir"] = template["workdir"] + "%s-%d" % (marker, i)
            data["devices"].append(device)

    devices = farm_devices(team.farm, team.root, time_scale=0.1, edit=copies, name="devices-conc.yaml")
    names = ["conc-%d" % i for i in range(boards)]
    ids = [j["job_id"] for j in team.submit_here(["long"], names)]
    with PeakSampler(marker) as sampler:
        started = time.monotonic()
        worker = team.start_worker("wconc", "--concurrency", str(boards), "--once", devices_file=devices)
        worker.wait(timeout=300)
        wall = time.monotonic() - started
    listed = team.wait_jobs(ids, timeout=10, what="(the worker exited)")
    assert [listed[i]["state"] for i in ids] == ["succeeded"] * boards, team.log("wconc")
    assert len(sampler.seen) == boards  # one runner per board, each seen running
    assert sampler.peak == boards, "at most %d of %d runners ran at once in %.0f s (default pool %d)\n%s" % (
        sampler.peak, boards, wall, default_pool, team.log("wconc")[-3000:])
