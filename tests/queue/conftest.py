"""The queue's tests: a real PostgreSQL (tests/store/pg_server.py), real `bench worker` processes
and the loopback sshd farm (tests/farm/conftest.py's sshd; a farm of our own on 127.0.0.40+)."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import yaml

from harness.farm.sshd_farm import FarmInfo, farm_down, farm_up

from ..conftest import REPO, bench_env
from ..farm.conftest import require_sshd
from ..store.pg_server import PgServer, _run, start_server

LAB = "lab-a"
BASE_IP = "127.0.0.40"  # away from tests/farm's 127.0.0.20 and a user's 127.0.0.2
N_BOARDS = 3  # ax650n, orin-nano, agx-orin

QUICK = """\
name: %s
prompt: What happens in this video?
workloads:
  - {name: video-8f, kind: video, source: media/grace_hopper.jpg, size: [308, 308], frames: 8}
generation: {output_tokens: 6, warmup: 1, repetitions: %d}
"""

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def queue_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmInfo]:
    require_sshd()
    state = tmp_path_factory.mktemp("queue-farm")
    info = farm_up(N_BOARDS, state, base_ip=BASE_IP)
    try:
        yield info
    finally:
        farm_down(state)


@dataclass
class Team:
    """One test's project directory, queue database and the workers it started."""

    root: Path
    url: str
    devices_file: Path
    farm: FarmInfo
    workers: List[subprocess.Popen] = field(default_factory=list)

    def bench(self, *args: str, timeout: float = 120, devices_file: Optional[Path] = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args, devices_file=devices_file), cwd=self.root, capture_output=True,
                              text=True, env=bench_env(), timeout=timeout)

    def argv(self, *args: str, devices_file: Optional[Path] = None) -> List[str]:
        # the installed `bench` script, as a user runs it
        return [str(Path(sys.executable).parent / "bench")] + ["--devices-file", str(devices_file or self.devices_file), "--store", self.url] + list(args)

    def submit(self, *args: str) -> List[Dict[str, Any]]:
        """`bench submit --json ARGS` (the CLI, as a user runs it)."""
        proc = self.bench("submit", "--lab", LAB, "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["jobs"]

    def submit_here(self, suites: List[str], boards: List[str], lab: str = LAB) -> List[Dict[str, Any]]:
        """What `bench submit` does, in this process (a CLI start costs seconds on a loaded machine)."""
        from harness.queue.jobs import plan_submission, submit

        jobs = plan_submission(suites, boards, lab, [])
        ids = submit(self.url, jobs)
        return [dict(job.as_args(), job_id=i) for job, i in zip(jobs, ids)]

    def start_worker(self, name: str, *args: str, devices_file: Optional[Path] = None) -> subprocess.Popen:
        log = open(self.root / ("%s.log" % name), "w")
        proc = subprocess.Popen(
            self.argv("worker", "--lab", LAB, "--name", name, "--stall-timeout", "4", "--poll", "0.3",
                      "--retry-wait", "1", "--board-poll", "0.2", *args, devices_file=devices_file),
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, text=True, env=bench_env(), start_new_session=True)
        self.workers.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.root / ("%s.log" % name)).read_text(errors="replace")

    def jobs(self) -> Dict[int, Dict[str, Any]]:
        """What `bench queue --json` prints, read in this process."""
        from harness.queue.jobs import list_jobs

        return {j.id: j.as_dict() for j in list_jobs(self.url)}

    def wait_jobs(self, ids: List[int], states: tuple = ("succeeded", "failed"), timeout: float = 90.0,
                  what: str = "") -> Dict[int, Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs()
            if all(jobs[i]["state"] in states for i in ids):
                return jobs
            if time.monotonic() > deadline:
                raise AssertionError("jobs %s not %s after %.0f s %s: %s\n%s" % (
                    ids, states, timeout, what, {i: jobs[i] for i in ids},
                    "\n".join("--- %s\n%s" % (p.name, p.read_text(errors="replace")[-3000:])
                              for p in self.root.glob("*.log"))))
            time.sleep(0.5)

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def sql(self, query: str, params: tuple = ()) -> List[tuple]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


def farm_devices(farm: FarmInfo, root: Path, time_scale: float = 0.02,
                 edit: Optional[Callable[[Dict], None]] = None, name: str = "devices.yaml") -> Path:
    data = yaml.safe_load(Path(farm.devices_yaml).read_text())
    for device in data["devices"]:
        device["backend_options"]["time_scale"] = time_scale
        device["backend_options"]["busy"] = False
        device["idle_s"] = 0.1
        device["timeouts"] = {"connect_s": 5.0, "command_s": 30.0, "run_s": 120.0}
    if edit is not None:
        edit(data)
    path = root / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def team(tmp_path: Path, pg_server: PgServer, queue_farm: FarmInfo) -> Iterator[Team]:
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    (tmp_path / "suites" / "quick.yaml").write_text(QUICK % ("quick", 2))
    (tmp_path / "suites" / "long.yaml").write_text(QUICK % ("long", 10))
    url = pg_server.create_database("bench_queue_%d" % next(_names))
    from harness.store import open_store

    from harness.queue.db import ensure_schema

    open_store(url).close()  # the results schema, so a test can read the store before a worker wrote
    ensure_schema(url)  # and the queue's
    team = Team(root=tmp_path, url=url, devices_file=farm_devices(queue_farm, tmp_path), farm=queue_farm)
    try:
        yield team
    finally:
        team.stop_workers()


def restart_postgres(server: PgServer, down_s: float = 2.0) -> None:
    """Restart the server as `systemctl restart postgresql` does (fast shutdown: every connection is
    dropped, committed work is kept), down for ``down_s``, back on the same port. Not "immediate":
    the test server runs with synchronous_commit=off, where a crash may drop acknowledged commits."""
    data = str(server.root / "data")
    _run(server, [str(server.bindir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"])
    time.sleep(down_s)
    options = "-h 127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off" % (
        server.port, server.root)
    _run(server, [str(server.bindir / "pg_ctl"), "-D", data, "-l", str(server.root / "server.log"), "-w", "-t", "30",
                  "-o", options, "start"])
