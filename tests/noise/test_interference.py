"""Interference as data: what else used the machine during each repetition (harness/runner/interference.py).

The /proc formats are the kernel's (proc(5): /proc/[pid]/stat fields 4 ppid, 14 utime, 15 stime,
22 starttime; /proc/stat's aggregate ``cpu`` line with steal as the 8th value); the sample lines
below were read from this machine's /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runner.interference import (
    DISTURBED_OTHER_CPU_SHARE,
    interference,
    parse_pid_stat,
    parse_schedstat,
    parse_stat_cpu,
    steal_share,
    take_snapshot,
)

from harness.runner.protocol import BackendSpec, GenerationSpec, ModelSpec, RunSpec, WorkloadSpec
from harness.runner.workloads import Frame, encode_ppm, input_digest

from ..conftest import bench_env

REAL_PID_STAT = ("16124 (cat) R 16118 16118 5553 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 73330 3133440 360 "
                 "18446744073709551615 94036013850624 94036013870505 140731675233792 0 0 0 0 0 0 0 0 0 17 0 "
                 "0 0 0 0 0 94036013886512 94036013888128 94036038766592 140731675241177 140731675241197 "
                 "140731675241197 140731675242475 0")
# /proc/self/schedstat read on this machine: ns on a CPU, ns waiting on a run queue, timeslices
REAL_SCHEDSTAT = "484058 0 2\n"
REAL_STAT_CPU = "cpu  73660 105 13672 54777 2288 0 359 1465 0 0\ncpu0 36000 50 6800 27000 1100 0 200 700 0 0\n"


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, start: int) -> str:
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 6 + [str(start)] + ["0"] * 20
    return "%d (%s) %s" % (pid, comm, " ".join(fields))


def _write_proc(root: Path, procs: dict, cpu: tuple, load: str = "0.50 0.40 0.30 1/200 999",
                run_ns: dict = None) -> None:
    for pid, (comm, ppid, utime, stime, start) in procs.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "stat").write_text(_stat_line(pid, comm, ppid, utime, stime, start))
        if run_ns and pid in run_ns:
            (root / str(pid) / "schedstat").write_text("%s 1000 7\n" % run_ns[pid])
    (root / "stat").write_text("cpu  %s\n" % " ".join(str(v) for v in cpu))
    (root / "loadavg").write_text(load)


def test_real_stat_lines_parse() -> None:
    assert parse_pid_stat(REAL_PID_STAT) == (16118, 0, 0, 73330)
    assert parse_stat_cpu(REAL_STAT_CPU) == (73660, 105, 13672, 54777, 2288, 0, 359, 1465, 0, 0)
    # a command name with spaces and a ')' of its own: fields are split after the LAST ')'
    assert parse_pid_stat(_stat_line(7, "a) b (c", 1, 30, 12, 5)) == (1, 30, 12, 5)


def test_other_processes_cpu_excludes_the_runner_and_its_children(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    # 100: the runner, 101: its engine child, 200: another program, 300: the runner's parent (sshd)
    before = {100: ("python", 300, 500, 100, 1), 101: ("engine", 100, 0, 0, 2), 200: ("make", 1, 10, 0, 3),
              300: ("sshd", 1, 5, 5, 0)}
    _write_proc(root, before, (1000, 0, 200, 5000, 0, 0, 0, 0))
    snap_a = take_snapshot(str(root), self_pid=100)
    # one second later on 2 cores (200 ticks at 100 Hz): the runner and its child burned 150 ticks
    # between them (not interference), `make` 60 ticks, and a new process 20 ticks
    after = {100: ("python", 300, 600, 120, 1), 101: ("engine", 100, 30, 0, 2), 200: ("make", 1, 60, 10, 3),
             300: ("sshd", 1, 5, 5, 0), 400: ("cc1", 200, 15, 5, 9)}
    _write_proc(root, after, (1230, 0, 250, 5110, 0, 0, 0, 10))
    snap_b = take_snapshot(str(root), self_pid=100)
    snap_b.t_ns = snap_a.t_ns + 1_000_000_000
    out = interference(snap_a, snap_b, cpu_count=2, clock_ticks=100)
    assert out["available"] is True
    assert out["other_cpu_s"] == pytest.approx(0.80)  # (60 + 20) ticks / 100 Hz
    assert out["other_cpu_share"] == pytest.approx(0.40)  # 0.8 s of 2 cores x 1 s
    assert out["busiest_other"] == [{"pid": 200, "name": "make", "cpu_s": 0.6}, {"pid": 400, "name": "cc1", "cpu_s": 0.2}]
    assert out["load_avg_1m"] == 0.5
    assert out["steal_share"] == pytest.approx(10 / 400)  # steal 10 of (230 + 50 + 110 + 10) ticks
    assert out["disturbed"] is True and "40%" in out["reasons"][0]


def test_a_quiet_window_is_not_disturbed_and_thresholds_are_the_documented_ones(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    procs = {100: ("python", 1, 0, 0, 1), 200: ("cron", 1, 10, 0, 3)}
    _write_proc(root, procs, (1000, 0, 200, 5000, 0, 0, 0, 0))
    snap_a = take_snapshot(str(root), self_pid=100)
    procs[100] = ("python", 1, 190, 0, 1)  # the runner itself is busy: not interference
    procs[200] = ("cron", 1, 11, 0, 3)  # housekeeping: 1 tick in a second
    _write_proc(root, procs, (1191, 0, 200, 5200, 0, 0, 0, 0))
    snap_b = take_snapshot(str(root), self_pid=100)
    snap_b.t_ns = snap_a.t_ns + 1_000_000_000
    out = interference(snap_a, snap_b, cpu_count=2, clock_ticks=100)
    assert out["other_cpu_share"] == pytest.approx(0.005) and out["disturbed"] is False
    assert out["thresholds"]["other_cpu_share"] == DISTURBED_OTHER_CPU_SHARE == 0.10
    # a pid reused by a new process (different starttime) counts from zero, not as a negative delta
    procs[200] = ("other", 1, 3, 0, 77)
    _write_proc(root, procs, (1200, 0, 200, 5300, 0, 0, 0, 0))
    snap_c = take_snapshot(str(root), self_pid=100)
    snap_c.t_ns = snap_b.t_ns + 1_000_000_000
    assert interference(snap_b, snap_c, cpu_count=2, clock_ticks=100)["other_cpu_s"] == pytest.approx(0.03)


def test_a_window_shorter_than_a_clock_tick_is_judged_by_nanoseconds(tmp_path: Path) -> None:
    """A 9 ms repetition under two busy loops: utime+stime move by whole 10 ms ticks, so neither hog
    may show a tick in the window (the CI miss of stop 16); their schedstat nanoseconds do."""
    root = tmp_path / "proc"
    procs = {100: ("python", 1, 50, 0, 1), 200: ("hog", 1, 300, 0, 3), 201: ("hog", 1, 300, 0, 4)}
    _write_proc(root, procs, (1000, 0, 200, 5000, 0, 0, 0, 0),
                run_ns={100: 500_000_000, 200: 3_004_000_000, 201: 3_001_000_000})
    snap_a = take_snapshot(str(root), self_pid=100)
    # 9 ms later: each hog ran 4.5 ms (half a core each beside the runner), no tick boundary crossed
    _write_proc(root, procs, (1000, 0, 200, 5000, 0, 0, 0, 0),
                run_ns={100: 509_000_000, 200: 3_008_500_000, 201: 3_005_500_000})
    snap_b = take_snapshot(str(root), self_pid=100)
    snap_b.t_ns = snap_a.t_ns + 9_000_000
    out = interference(snap_a, snap_b, cpu_count=2, clock_ticks=100)
    assert out["other_cpu_s"] == pytest.approx(0.009)
    assert out["other_cpu_share"] == pytest.approx(0.5) and out["disturbed"] is True
    assert "nanoseconds" in out["resolution"]
    # the same window judged by ticks alone (a kernel without schedstat) misses it, and says why
    for pid in procs:
        (root / str(pid) / "schedstat").unlink()
    ticks_a = take_snapshot(str(root), self_pid=100)
    ticks_b = take_snapshot(str(root), self_pid=100)
    ticks_b.t_ns = ticks_a.t_ns + 9_000_000
    blind = interference(ticks_a, ticks_b, cpu_count=2, clock_ticks=100)
    assert blind["disturbed"] is False and "no schedstat" in blind["resolution"]


def test_a_process_whose_other_threads_work_counts_by_its_ticks(tmp_path: Path) -> None:
    """schedstat is the main thread only: a build with idle main thread and busy workers counts by
    utime+stime, the larger of the two."""
    root = tmp_path / "proc"
    procs = {100: ("python", 1, 0, 0, 1), 300: ("make", 1, 100, 0, 5)}
    _write_proc(root, procs, (1000, 0, 200, 5000, 0, 0, 0, 0), run_ns={300: 10_000_000})
    snap_a = take_snapshot(str(root), self_pid=100)
    procs[300] = ("make", 1, 150, 10, 5)  # 60 ticks = 0.6 s across its threads
    _write_proc(root, procs, (1000, 0, 200, 5000, 0, 0, 0, 0), run_ns={300: 11_000_000})  # main: 1 ms
    snap_b = take_snapshot(str(root), self_pid=100)
    snap_b.t_ns = snap_a.t_ns + 1_000_000_000
    out = interference(snap_a, snap_b, cpu_count=2, clock_ticks=100)
    assert out["other_cpu_s"] == pytest.approx(0.6)
    assert out["busiest_other"] == [{"pid": 300, "name": "make", "cpu_s": 0.6}]


def test_steal_past_its_threshold_disturbs_and_a_missing_proc_says_so(tmp_path: Path) -> None:
    assert steal_share((0,) * 8, (80, 0, 10, 0, 0, 0, 0, 10)) == pytest.approx(0.10)
    assert steal_share((1, 2, 3), (4, 5, 6)) is None  # an old kernel without the steal field
    missing = take_snapshot(str(tmp_path / "nope"))
    out = interference(missing, missing)
    assert out["available"] is False and "cannot list" in out["reason"]


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_pid_stat_reader_never_crashes(text: str) -> None:
    result = parse_pid_stat(text)
    assert result is None or all(isinstance(v, int) for v in result)
    parse_stat_cpu(text)


def test_real_schedstat_line_parses_and_malformed_ones_do_not() -> None:
    assert parse_schedstat(REAL_SCHEDSTAT) == 484058
    assert parse_schedstat("") is None and parse_schedstat("1 2") is None and parse_schedstat("-1 0 0") is None
    assert parse_schedstat("1 2 x") is None


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_schedstat_reader_never_crashes(text: str) -> None:
    result = parse_schedstat(text)
    assert result is None or (isinstance(result, int) and result >= 0)


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00\n"), max_size=40),
       st.integers(0, 2 ** 31), st.integers(0, 2 ** 40), st.integers(0, 2 ** 40))
def test_any_command_name_parses(comm: str, ppid: int, utime: int, stime: int) -> None:
    assert parse_pid_stat(_stat_line(5, comm, ppid, utime, stime, 9)) == (ppid, utime, stime, 9)


def run_runner(tmp_path: Path, options: dict, reps: int, tokens: int) -> list:
    return run_runner_gen(tmp_path, options, GenerationSpec(output_tokens=tokens, warmup=1, repetitions=reps))


def run_runner_gen(tmp_path: Path, options: dict, generation: GenerationSpec) -> list:
    """The real runner process on a one-image spec; its JSON measurement records."""
    run_dir = tmp_path / "run"
    (run_dir / "inputs").mkdir(parents=True)
    frame = Frame(4, 3, bytes(range(36)))
    (run_dir / "inputs" / "f0.ppm").write_bytes(encode_ppm(frame))
    spec = RunSpec(
        run_id="noise", device="here", suite="noise", backend=BackendSpec("reference", options),
        models=[ModelSpec("emulated", "n/a")],
        workloads=[WorkloadSpec("w", "image", ["f0.ppm"], "prompt", input_digest([frame], "prompt"))],
        generation=generation,
        device_info={"idle_s": 0.0},
    )
    (run_dir / "spec.json").write_text(spec.to_json())
    proc = subprocess.run([sys.executable, "-m", "harness.runner", "run", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=bench_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()
            if '"record": "measurement"' in line]


BUSY_LOOP = "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass\n"


@contextlib.contextmanager
def cpu_hogs(count: int, settle_s: float) -> Iterator[None]:
    """``count`` busy-loop processes for the duration of the block, settled for ``settle_s`` first."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        time.sleep(settle_s)
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_a_cpu_hog_during_a_run_flags_every_repetition_disturbed(tmp_path: Path) -> None:
    """Two busy loops (one per core) while the real runner process measures: every measured
    repetition is flagged. (Which processes are named busiest depends on what else this shared
    machine runs; that the runner's own CPU time is never counted is proven on synthetic /proc above.)"""
    phases = {"preprocess_ms": 20.0, "vision_encode_ms": 60.0, "prefill_ms": 80.0, "tpot_ms": 10.0,
              "n_input_tokens": 100, "n_visual_tokens": 64}
    with cpu_hogs(os.cpu_count() or 2, settle_s=0.3):
        records = run_runner(tmp_path, {"phases": {"image": phases}, "busy": True}, reps=3, tokens=10)
    measured = [r for r in records if not r["warmup"]]
    assert len(measured) == 3
    for record in measured:
        load = record["provenance"]["interference"]
        assert load["available"] is True
        assert load["disturbed"] is True, load
        # each hog wants a whole core; even sharing with the runner and other tests they get far
        # more than the threshold
        assert load["other_cpu_share"] >= 2 * DISTURBED_OTHER_CPU_SHARE, load


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="needs Linux /proc with schedstat")
def test_repetitions_shorter_than_a_clock_tick_are_flagged_under_real_hogs(tmp_path: Path) -> None:
    """Twenty repetitions of about 4 ms, each shorter than one 10 ms clock tick, with two busy loops
    per core: every one is flagged. By ticks alone a hog shows a tick in a window like this only
    now and then, so a run of twenty was rarely flagged throughout (the mutation check in the issue
    note: with schedstat ignored this test failed in most tries)."""
    phases = {"preprocess_ms": 0.5, "vision_encode_ms": 1.0, "prefill_ms": 1.0, "tpot_ms": 0.5,
              "n_input_tokens": 10, "n_visual_tokens": 4}
    with cpu_hogs(2 * (os.cpu_count() or 2), settle_s=0.5):
        records = run_runner(tmp_path, {"phases": {"image": phases}, "busy": True}, reps=20, tokens=3)
    measured = [r["provenance"]["interference"] for r in records if not r["warmup"]]
    assert len(measured) == 20
    assert all(load["wall_s"] < 0.05 for load in measured), [load["wall_s"] for load in measured]
    assert all(load["disturbed"] for load in measured), measured
