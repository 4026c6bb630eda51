"""Interrupted and dead controllers, as a user meets them through the installed `bench` script.

Ctrl-C (SIGINT) on `bench run` over the emulated sshd farm must exit 130, print the resume command
and store the run as interrupted; the board keeps its runner and its lease, a second run is told
which run holds the board and how to continue it, and `bench run --resume` takes the lease back and
completes the run with nothing stored twice. A SIGKILLed controller leaves a run that reads as
abandoned; history leaves both out unless asked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from harness.analysis.history import load_history
from harness.farm.run_guard import RunGuard
from harness.farm.sshd_farm import FarmInfo
from harness.runner.protocol import Measurement
from harness.store import RunRecord, Store
from harness.store.liveness import controller_identity

from ..conftest import REPO, bench_env
from .test_farm_run import farm_devices, keys, project, run_dirs, wait_for  # noqa: F401  (fixture)

BENCH_SCRIPT = str(Path(sys.executable).parent / "bench")
LONG = 8  # repetitions of the "long" suite (+1 warm-up): long enough to be interrupted mid-way


def bench(project: Path, devices_file: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([BENCH_SCRIPT, "--devices-file", str(devices_file)] + list(args), cwd=project,
                          capture_output=True, text=True, env=bench_env(), timeout=timeout)


def start(project: Path, devices_file: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([BENCH_SCRIPT, "--devices-file", str(devices_file)] + list(args), cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=bench_env())


def run_status(project: Path, devices_file: Path, run_id: str) -> str:
    shown = bench(project, devices_file, "results", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["run"]["status"]


def started_run(farm: FarmInfo, before: List[Path], board: str = "ax650n") -> str:
    """The run id of the run whose runner just started on the board (its run directory appeared
    and holds at least one measured record: the runner is mid-run)."""
    found: List[Path] = []

    def measuring() -> bool:
        found[:] = [d for d in run_dirs(farm, board) if d not in before and (d / "results.jsonl").exists()
                    and (d / "results.jsonl").read_text().count("\n") >= 2]
        return bool(found)

    wait_for(measuring, 90, "the runner on %s to store its first records" % board)
    return found[0].parent.name


def slow_devices(farm: FarmInfo, project: Path) -> Path:
    # ax650n's video profile at x0.2: ~1.2 s per query, ~11 s for the suite
    return farm_devices(farm, project, time_scale=0.2)


def long_suite(project: Path) -> None:
    text = (project / "suites" / "quick.yaml").read_text()
    (project / "suites" / "long.yaml").write_text(
        text.replace("name: quick", "name: long").replace("repetitions: 3", "repetitions: %d" % LONG))


@pytest.mark.journey
def test_ctrl_c_marks_interrupted_names_the_run_and_resume_completes(farm: FarmInfo, project: Path) -> None:
    devices_file = slow_devices(farm, project)
    long_suite(project)
    before = run_dirs(farm, "ax650n")
    proc = start(project, devices_file, "run", "--suite", "long", "--devices", "ax650n")
    run_id = started_run(farm, before)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "bench run --resume %s" % run_id in err
    assert "interrupted" in err
    assert run_status(project, devices_file, run_id) == "interrupted"

    # the runner keeps going on the board and keeps its lease: a new run is told whose it is
    other = bench(project, devices_file, "run", "--suite", "quick", "--devices", "ax650n", "--json")
    assert other.returncode == 1
    error = {d["device"]: d for d in json.loads(other.stdout)["devices"]}["ax650n"]["error"]
    assert "leased by run %s" % run_id in error
    assert "`bench run --resume %s` continues it" % run_id in error
    assert "unlock ax650n --force` frees it" in error
    assert "(this store has run %s as interrupted)" % run_id in error

    resumed = bench(project, devices_file, "run", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    records = json.loads(resumed.stdout)["measurements"]
    assert len(records) == 1 + LONG and len(set(keys(records))) == len(records)
    assert all(r["status"] == "ok" for r in records)
    assert run_status(project, devices_file, run_id) == "finished"
    # the lease was taken back, and released at the end: the board is free
    assert not (Path(farm.board("ax650n").workdir) / "lease.json").exists()


@pytest.mark.journey
def test_sigkilled_controller_reads_abandoned_and_can_be_resumed(farm: FarmInfo, project: Path) -> None:
    devices_file = slow_devices(farm, project)
    long_suite(project)
    before = run_dirs(farm, "agx-orin")
    # agx-orin's profile is fast: slow it down so the run is still going when we kill it
    data = yaml.safe_load(devices_file.read_text())
    for device in data["devices"]:
        if device["name"] == "agx-orin":
            device["backend_options"]["time_scale"] = 1.5  # ~1.9 s per query
    devices_file.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = start(project, devices_file, "run", "--suite", "long", "--devices", "agx-orin")
    run_id = started_run(farm, before, "agx-orin")
    store = Store(project / "results" / "bench.sqlite")
    try:  # read directly: a `bench` subprocess takes seconds to start on a loaded machine
        assert store.get_run(run_id).status == "running"  # its controller is alive
    finally:
        store.close()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert run_status(project, devices_file, run_id) == "abandoned"
    listed = bench(project, devices_file, "results", "list")
    assert listed.returncode == 0 and "abandoned" in listed.stdout

    resumed = bench(project, devices_file, "run", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    records = json.loads(resumed.stdout)["measurements"]
    assert len(records) == 1 + LONG and len(set(keys(records))) == len(records)
    assert run_status(project, devices_file, run_id) == "finished"


@pytest.mark.journey
def test_lease_message_names_the_device_not_its_transport(tmp_path: Path) -> None:
    """A local device named local-3b: the busy message names local-3b (it used to say `local`)."""
    devices_file = tmp_path / "devices.yaml"
    devices_file.write_text(yaml.safe_dump({"devices": [{
        "name": "local-3b", "type": "local", "transport": "local", "workdir": str(tmp_path / "work"),
        "idle_s": 0, "backend": "reference", "backend_options": {"time_scale": 0.01},
        "models": [{"variant": "emulated", "path": "emulated"}]}]}))
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    locked = bench(tmp_path, devices_file, "devices", "lock", "local-3b", "--ttl", "120")
    assert locked.returncode == 0, locked.stderr
    busy = bench(tmp_path, devices_file, "run", "--suite", "image", "--devices", "local-3b", "--json")
    error = {d["device"]: d for d in json.loads(busy.stdout)["devices"]}["local-3b"]["error"]
    assert error.startswith("local-3b is locked by hand"), error
    assert "`bench devices unlock local-3b`" in error


def _record(run_id: str, value: float) -> Measurement:
    return Measurement(run_id=run_id, device="d", suite="s", backend="reference", workload="w", variant="v",
                       repetition=0, warmup=False, status="ok", started_at="2026-01-01T00:00:00Z",
                       metrics={"ttft_ms": value})


def test_history_leaves_out_interrupted_and_abandoned_runs_unless_asked(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.sqlite")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = {"done": ("finished", {}), "stopped": ("interrupted", {}), "killed": ("running", controller_identity(dead.pid)),
            "alive": ("running", controller_identity())}
    for index, (run_id, (status, controller)) in enumerate(runs.items()):
        store.create_run(RunRecord(run_id, "2026-01-0%dT00:00:00Z" % (index + 1), "s", ["d"], status,
                                   controller=controller))
        store.add_measurements([_record(run_id, 10.0 + index)])
    assert store.get_run("killed").status == "abandoned"  # its controller process is gone
    assert store.get_run("alive").status == "running"  # this test's own process, heartbeat fresh
    assert list(load_history(store).runs["run_id"]) == ["done", "alive"]
    assert list(load_history(store, include_incomplete=True).runs["run_id"]) == ["done", "stopped", "killed", "alive"]
    assert list(load_history(store, include_runs=["stopped"]).runs["run_id"]) == ["done", "stopped", "alive"]
    store.close()


def test_a_run_that_ends_early_is_failed_and_ctrl_c_is_interrupted(tmp_path: Path) -> None:
    """RunGuard.close settles a run the command did not finish (a preflight error after the run
    was created: exit 3) as failed, and one stopped by a signal as interrupted."""
    store = Store(tmp_path / "bench.sqlite")
    for run_id in ("early", "signalled", "done"):
        store.create_run(RunRecord(run_id, "", "s", ["d"], "running"))
    guard = RunGuard(store, "early", interval_s=0.05)
    guard.start()
    time.sleep(0.2)
    assert store.get_run("early").heartbeat_at is not None
    guard.close()
    assert store.get_run("early").status == "failed"

    guard = RunGuard(store, "signalled")
    guard.start()
    guard.interrupted = signal.SIGINT
    guard.close()
    assert store.get_run("signalled").status == "interrupted"

    guard = RunGuard(store, "done")
    guard.start()
    store.finish_run("done", "finished")
    guard.close()
    assert store.get_run("done").status == "finished"
    # resuming a run whose controller is alive is refused: two controllers would follow one board
    store.claim_run("done", controller_identity())
    with pytest.raises(Exception, match="still being followed by its controller"):
        RunGuard(store, "done").start(resuming=True)
    store.close()
