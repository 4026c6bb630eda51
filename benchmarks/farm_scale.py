"""Team scale: N emulated boards drained from the PostgreSQL queue by 1 or W `bench worker`s.

    python benchmarks/farm_scale.py [--boards 1,8,16,32,64] [--workers 1,4] [--repetitions 10]
                                    [--time-scale 0.1]

Starts a throwaway PostgreSQL (tests/store/pg_server.py) and a loopback sshd farm (127.0.0.80+)
whose boards run the reference backend sleep-paced (busy: false), so the boards' own CPU is not
what is measured. For each worker count and board count: a fresh queue database, one job per board
(`bench submit`'s code path), then the workers (`bench worker --once --concurrency ceil(N/W)`) as
real processes; wall time is from starting the workers until the last one exits with every job
done. Prints, in one run:

- wall time and its ratio to one board with the same worker count (goal: 64 boards <= 1.3x);
- controller CPU-seconds per board: the worker processes' user+sys (getrusage of the waited
  children; sshd and the runners are not our children), and its ratio to the 8-board figure
  (goal: flat within 20% from 8 to 64).

Each worker start pays the interpreter and import cost once (seconds on a loaded machine); it is
in every figure, the 1-board baseline included.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.farm.sshd_farm import farm_down, farm_up  # noqa: E402

SUITE = """\
name: scale
prompt: What happens in this video?
workloads:
  - {name: video-8f, kind: video, source: media/grace_hopper.jpg, size: [308, 308], frames: 8}
generation: {output_tokens: 16, warmup: 1, repetitions: %d}
"""
LAB = "bench-lab"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def devices_file(farm_yaml: Path, out: Path, time_scale: float) -> List[str]:
    data = yaml.safe_load(farm_yaml.read_text())
    for device in data["devices"]:
        device["backend_options"].update({"time_scale": time_scale, "busy": False})
        device["idle_s"] = 0.1
        device["timeouts"] = {"connect_s": 10.0, "command_s": 60.0, "run_s": 900.0}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return [d["name"] for d in data["devices"]]


def one_round(server, project: Path, devices: Path, boards: List[str], workers: int) -> Tuple[float, float, int]:
    from harness.queue.db import ensure_schema
    from harness.queue.jobs import plan_submission, submit
    from harness.store import open_store

    url = server.create_database("scale_%d_%d_%d" % (len(boards), workers, time.monotonic_ns() % 10**9))
    open_store(url).close()
    ensure_schema(url)
    ids = submit(url, plan_submission(["scale"], boards, LAB, ["scale"]))
    bench = str(Path(sys.executable).parent / "bench")
    argv = [bench, "--devices-file", str(devices), "--store", url, "worker", "--lab", LAB, "--once",
            "--concurrency", str(max(1, math.ceil(len(boards) / workers))), "--poll", "0.2", "--board-poll", "0.5"]
    cpu_before = children_cpu_s()
    started = time.monotonic()
    procs = [subprocess.Popen(argv + ["--name", "w%d" % i], cwd=project, stdout=subprocess.DEVNULL,
                              stderr=open(project / ("w%d-%d.log" % (len(boards), i)), "w"),
                              env=dict(os.environ, PYTHONPATH=str(REPO))) for i in range(workers)]
    for proc in procs:
        proc.wait(timeout=1800)
    wall = time.monotonic() - started
    cpu = children_cpu_s() - cpu_before
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        done = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'succeeded'",
                            (ids,)).fetchone()[0]
    return wall, cpu, int(done)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="1,8,16,32,64")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--time-scale", type=float, default=0.1)
    args = parser.parse_args(argv)
    board_counts = sorted({int(b) for b in args.boards.split(",")})
    worker_counts = [int(w) for w in args.workers.split(",")]
    sys.path.insert(0, str(REPO / "tests" / "store"))
    from pg_server import start_server  # the tests' throwaway PostgreSQL, on 127.0.0.1

    work = Path(tempfile.mkdtemp(prefix="farm-scale-"))
    project = work / "project"
    (project / "suites").mkdir(parents=True)
    import shutil

    shutil.copytree(REPO / "suites" / "media", project / "suites" / "media")
    (project / "suites" / "scale.yaml").write_text(SUITE % args.repetitions)
    server = start_server()
    farm = farm_up(max(board_counts), work / "farm", base_ip="127.0.0.80")
    try:
        names = devices_file(Path(farm.devices_yaml), project / "devices.yaml", args.time_scale)
        print("%d CPU cores; reference backend sleep-paced (time_scale %.2f, %d repetitions + 1 warm-up)"
              % (os.cpu_count() or 0, args.time_scale, args.repetitions))
        print("%-8s %-7s %8s %9s %12s %10s %6s" % ("workers", "boards", "wall s", "vs 1", "ctl CPU-s/b", "vs 8", "done"))
        for workers in worker_counts:
            results: Dict[int, Tuple[float, float, int]] = {}
            for n in board_counts:
                results[n] = one_round(server, project, project / "devices.yaml", names[:n], workers)
                wall, cpu, done = results[n]
                base_wall = results[board_counts[0]][0]
                per_board = cpu / n
                ref = results.get(8)
                vs8 = "%.2f" % (per_board / (ref[1] / 8)) if ref and n >= 8 else "-"
                print("%-8d %-7d %8.1f %9.2f %12.2f %10s %6s" % (workers, n, wall, wall / base_wall, per_board, vs8,
                                                               "%d/%d" % (done, n)), flush=True)
    finally:
        farm_down(work / "farm")
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
