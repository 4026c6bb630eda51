"""Team scale: N emulated boards drained from the PostgreSQL queue by 1 or W `bench worker`s.

    python benchmarks/farm_scale.py [--boards 1,8,16,32,64] [--workers 1,4] [--repetitions 5]
                                    [--time-scale 1.0]

Starts a throwaway PostgreSQL (tests/store/pg_server.py) and a loopback sshd farm (127.0.0.80+)
whose boards run the reference backend sleep-paced (busy: false), so their engines do not burn the
cores while they "compute"; the boards' runners, engines and sshd sessions still start and run on
this host's cores beside the controller, and the CPU split below says how much. The job is a
nightly's video-8f (32 tokens, 1 warm-up + --repetitions) at the board profiles' own pace. For each worker count and board count: a fresh queue database, one job per board
(`bench submit`'s code path), then the workers (`bench worker --once --concurrency ceil(N/W)`) as
real processes; wall time is from starting the workers until the last one exits with every job
done. Prints, in one run:

- wall time and its ratio to one board with the same worker count (goal: 64 boards <= 1.3x);
- controller CPU-seconds per board: the worker processes' own user+sys time, its ratio to the
  8-board figure, and per board added since the previous row (goal: flat within 20% from 8 to
  64; the per-board average also falls as the workers' fixed start-up is shared by more boards);
- where the host's CPU went (benchmarks/cpu_split.py, read from the kernel's books): the
  emulated boards' CPU-seconds per board (their sshd sessions, runners and engines, which real
  boards spend on their own cores), PostgreSQL's, and how busy the host's cores were.

The boards' sshd sessions skip this user's ~/.bashrc (farm_up(login_rc=False)): a real board's
login does not run this machine's rc files (here: pyenv init, 0.13 s of CPU and a global lock
per login). Each worker start pays the interpreter and import cost once (seconds on a loaded
machine); it is in every figure, the 1-board baseline included.
"""

from __future__ import annotations

import argparse
import math
import os
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

sys.path.insert(0, str(REPO / "benchmarks"))
from cpu_split import Books, Split, become_subreaper  # noqa: E402

SUITE = """\
name: scale
prompt: What happens in this video?
workloads:
  - {name: video-8f, kind: video, source: media/grace_hopper.jpg, size: [308, 308], frames: 8}
generation: {output_tokens: 32, warmup: 1, repetitions: %d}
"""
LAB = "bench-lab"


def devices_file(farm_yaml: Path, out: Path, time_scale: float) -> List[str]:
    data = yaml.safe_load(farm_yaml.read_text())
    for device in data["devices"]:
        device["backend_options"].update({"time_scale": time_scale, "busy": False})
        device["idle_s"] = 0.1
        device["timeouts"] = {"connect_s": 10.0, "command_s": 60.0, "run_s": 900.0}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return [d["name"] for d in data["devices"]]


def one_round(server, project: Path, devices: Path, boards: List[str], workers: int,
              books: Books) -> Tuple[Split, int]:
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
    books.open()
    procs = [subprocess.Popen(argv + ["--name", "w%d" % i], cwd=project, stdout=subprocess.DEVNULL,
                              stderr=open(project / ("w%d-%d.log" % (len(boards), i)), "w"),
                              env=dict(os.environ, PYTHONPATH=str(REPO))) for i in range(workers)]
    codes = books.watch([p.pid for p in procs]).wait_for_controller(timeout_s=1800)
    split = books.close()
    for proc in procs:
        proc.returncode = codes[proc.pid]  # reaped by the books, not by Popen
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        done = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'succeeded'",
                            (ids,)).fetchone()[0]
    return split, int(done)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="1,8,16,32,64")
    parser.add_argument("--workers", default="1,4")
    # the defaults are a nightly's video-8f job (32 tokens, 1 warm-up + 5 repetitions) at the board
    # profiles' own pace: the boards' start-up is a fixed cost, so the ratio depends on job length
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--time-scale", type=float, default=1.0)
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
    become_subreaper()  # the boards' detached runners are re-parented here, so their CPU is counted
    server = start_server()
    farm = farm_up(max(board_counts), work / "farm", base_ip="127.0.0.80", login_rc=False)
    postmaster = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    books = Books(board_daemons=[b.pid() for b in farm.boards if b.pid()], database_daemons=[postmaster])
    cores = os.cpu_count() or 1
    try:
        names = devices_file(Path(farm.devices_yaml), project / "devices.yaml", args.time_scale)
        print("%d CPU cores; reference backend sleep-paced (time_scale %.2f, %d repetitions + 1 warm-up)"
              % (cores, args.time_scale, args.repetitions))
        print("%-7s %-6s %7s %6s %10s %6s %10s %12s %8s %9s %6s" % (
            "workers", "boards", "wall s", "vs 1", "ctl CPU/b", "vs 8", "per added", "boards CPU/b", "db CPU",
            "host busy", "done"))
        for workers in worker_counts:
            results: Dict[int, Split] = {}
            for n in board_counts:
                split, done = one_round(server, project, project / "devices.yaml", names[:n], workers, books)
                results[n] = split
                base_wall = results[board_counts[0]].wall_s
                per_board = split.controller_s / n
                ref = results.get(8)
                vs8 = "%.2f" % (per_board / (ref.controller_s / 8)) if ref and n >= 8 else "-"
                previous = max((m for m in results if m < n), default=None)
                added = ("%.2f" % ((split.controller_s - results[previous].controller_s) / (n - previous))
                         if previous is not None else "-")
                print("%-7d %-6d %7.1f %6.2f %10.2f %6s %10s %12.2f %8.1f %8.0f%% %6s" % (
                    workers, n, split.wall_s, split.wall_s / base_wall, per_board, vs8, added, split.boards_s / n,
                    split.database_s, 100.0 * split.host_s / (cores * split.wall_s), "%d/%d" % (done, n)), flush=True)
        print("CPU-seconds: ctl = the bench worker processes (per added = per board added since the row above); boards = the emulated boards' sshd sessions, "
              "runners and engines; db = PostgreSQL; host busy = all cores' busy time over the round's wall time.")
    finally:
        farm_down(work / "farm")
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
