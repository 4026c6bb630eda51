"""The job queue end to end: real PostgreSQL, real `bench worker` processes, the sshd farm.

Every fault of issue 14 is asserted here, each from outside the code under test: the job states
and events are procrastinate's own rows, the measurements are the store's rows, and the boards
are real sshd "boards" running the reference backend.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Dict, List

import pytest

from harness.farm.sshd_farm import generate_ed25519

from .conftest import LAB, Team, farm_devices, restart_postgres

pytestmark = [pytest.mark.queue, pytest.mark.journey]

QUICK_RECORDS = 1 + 2  # warm-up + repetitions of the quick suite
LONG_RECORDS = 1 + 10


def measurement_keys(team: Team, run_id: str) -> List[tuple]:
    return team.sql("SELECT device, workload, variant, repetition FROM measurements WHERE run_id = %s"
                    " ORDER BY repetition", (run_id,))


def wait_for(condition, timeout: float, what: str, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def job_windows(team: Team, ids: List[int]) -> Dict[int, tuple]:
    """(started, ended) of each job from procrastinate's own event log."""
    rows = team.sql("SELECT job_id, type::text, at FROM procrastinate_events WHERE job_id = ANY(%s) ORDER BY at",
                    (ids,))
    out: Dict[int, list] = {}
    for job_id, kind, at in rows:
        window = out.setdefault(job_id, [None, None, 0])
        if kind == "started":
            window[0] = window[0] or at
            window[2] += 1
        elif kind in ("succeeded", "failed"):
            window[1] = at
    return {k: tuple(v) for k, v in out.items()}


def test_submit_then_worker_once_runs_each_board_into_the_store(team: Team) -> None:
    jobs = team.submit("--suite", "quick", "--devices", "ax650n,orin-nano", "--tag", "ci", "--priority", "5",
                       "--variant", "emulated")
    assert [j["board"] for j in jobs] == ["ax650n", "orin-nano"]
    assert all(team.jobs()[j["job_id"]]["priority"] == 5 for j in jobs)
    assert len({j["run_id"] for j in jobs}) == 1  # the boards of one suite share a run
    run_id = jobs[0]["run_id"]
    proc = team.bench("worker", "--lab", LAB, "--once", "--poll", "0.3", "--board-poll", "0.2")
    assert proc.returncode == 0, proc.stderr
    listed = team.jobs()
    assert {listed[j["job_id"]]["state"] for j in jobs} == {"succeeded"}
    assert all("3 measurement(s) stored" in listed[j["job_id"]]["why"] for j in jobs)
    keys = measurement_keys(team, run_id)
    assert len(keys) == 2 * QUICK_RECORDS and len(set(keys)) == len(keys)
    assert team.sql("SELECT status, tags FROM runs WHERE run_id = %s", (run_id,)) == [("finished", '["ci"]')]
    table = team.bench("queue", "--lab", LAB)
    assert table.returncode == 0 and "succeeded" in table.stderr and run_id in table.stderr
    done = team.bench("queue", "--lab", LAB, "--state", "succeeded", "--json")
    assert done.returncode == 0 and {j["id"] for j in json.loads(done.stdout)} >= {j["job_id"] for j in jobs}
    queued = team.bench("queue", "--lab", LAB, "--state", "todo", "--json")
    assert queued.returncode == 0 and not {j["id"] for j in json.loads(queued.stdout)} & {j["job_id"] for j in jobs}


def test_unserved_board_stays_queued_and_says_why(team: Team) -> None:
    [job] = team.submit_here(["quick"], ["agx-orin"])
    team.start_worker("w-ax", "--devices", "ax650n")
    wait_for(lambda: team.sql("SELECT 1 FROM bench_workers WHERE name = 'w-ax'"), 30, "the worker to register")
    time.sleep(1.5)  # several polls of the worker
    listed = team.jobs()[job["job_id"]]
    assert listed["state"] == "todo"
    assert "no live worker serves board agx-orin in lab lab-a" in listed["why"]
    assert "w-ax" in listed["why"]  # the lab's live workers are named
    shown = team.bench("queue")
    assert "no live worker serves board agx-orin" in " ".join(shown.stderr.split())
    # a queued job can be cancelled, and put back
    cancelled = team.bench("queue", "cancel", str(job["job_id"]))
    assert cancelled.returncode == 0 and "job %d cancelled" % job["job_id"] in cancelled.stdout
    assert team.jobs()[job["job_id"]]["state"] == "cancelled"
    again = team.bench("queue", "cancel", str(job["job_id"]))
    assert again.returncode == 2 and "cannot be cancelled: cancelled" in again.stderr
    retried = team.bench("queue", "retry", str(job["job_id"]))
    assert retried.returncode == 0 and "job %d queued" % job["job_id"] in retried.stdout
    assert team.jobs()[job["job_id"]]["state"] == "todo"
    unknown = team.bench("queue", "retry", "987654")
    assert unknown.returncode == 2 and "no job 987654" in unknown.stderr


def test_host_key_changed_and_auth_refused_fail_for_good_without_retry(team: Team, tmp_path: Path) -> None:
    farm = team.farm
    orin = farm.board("orin-nano")
    stranger = generate_ed25519(tmp_path / "other_host_key", "not-the-board").split()
    known = Path(farm.known_hosts).read_text().splitlines()
    entry = "[%s]:%d" % (orin.host, orin.port)
    changed = [(" ".join([l.split()[0], stranger[0], stranger[1]] + l.split()[3:]) if l.split()[:1] == [entry] else l)
               for l in known]
    assert changed != known
    (tmp_path / "known_hosts").write_text("\n".join(changed) + "\n")
    generate_ed25519(tmp_path / "unauthorised_key", "nobody")

    def edit(data: Dict) -> None:
        data["known_hosts"] = str(tmp_path / "known_hosts")
        for device in data["devices"]:
            if device["name"] == "agx-orin":
                device["key_file"] = str(tmp_path / "unauthorised_key")

    devices = farm_devices(farm, team.root, edit=edit, name="broken.yaml")
    team.devices_file = devices
    jobs = {j["board"]: j["job_id"] for j in team.submit_here(["quick"], ["orin-nano", "agx-orin"])}
    proc = team.bench("worker", "--lab", LAB, "--once", "--poll", "0.3", "--max-attempts", "3", "--retry-wait", "1")
    assert proc.returncode == 0, proc.stderr
    listed = team.jobs()
    changed_job, refused_job = listed[jobs["orin-nano"]], listed[jobs["agx-orin"]]
    assert changed_job["state"] == refused_job["state"] == "failed"
    assert "HOST KEY CHANGED" in changed_job["why"] and "failed for good" in changed_job["why"]
    assert "unauthorised_key" in refused_job["why"] and "failed for good" in refused_job["why"]
    windows = job_windows(team, list(jobs.values()))
    assert [windows[i][2] for i in jobs.values()] == [1, 1]  # started once each: not retried


def test_board_unreachable_is_retried_then_fails_with_the_message(team: Team) -> None:
    """The other side of the line above: a transient fault is retried (max_attempts), then fails."""
    def edit(data: Dict) -> None:
        for device in data["devices"]:
            if device["name"] == "ax650n":
                device["port"] = 1  # nothing listens there: connection refused
                device["timeouts"]["connect_s"] = 1.0

    team.devices_file = farm_devices(team.farm, team.root, edit=edit, name="unreachable.yaml")
    [job] = team.submit_here(["quick"], ["ax650n"])
    team.start_worker("w-patient", "--max-attempts", "2", "--retry-wait", "1")
    listed = team.wait_jobs([job["job_id"]], states=("failed",), timeout=90, what="(unreachable board)")[job["job_id"]]
    assert listed["state"] == "failed"
    assert "attempt 2 of 2" in listed["why"] and "ax650n" in listed["why"]
    assert job_windows(team, [job["job_id"]])[job["job_id"]][2] == 2


def test_two_workers_never_run_two_jobs_on_one_board_at_once(team: Team) -> None:
    jobs = team.submit_here(["quick", "quick", "quick"], ["ax650n"])
    ids = [j["job_id"] for j in jobs]
    team.start_worker("w1", "--concurrency", "3")
    team.start_worker("w2", "--concurrency", "3")
    listed = team.wait_jobs(ids, timeout=90, what="(three jobs on one board, two workers)")
    assert [listed[i]["state"] for i in ids] == ["succeeded"] * 3
    windows = sorted(job_windows(team, ids).values())
    assert all(w[2] == 1 for w in windows)  # none had to be retried (a lease clash would have failed it)
    for (_s1, end1, _), (start2, _e2, _) in zip(windows, windows[1:]):
        assert end1 <= start2, "two jobs overlapped on ax650n: %s" % windows
    for job in jobs:
        assert len(measurement_keys(team, job["run_id"])) == QUICK_RECORDS


def test_worker_killed_mid_job_is_resumed_by_another_with_each_repetition_once(team: Team) -> None:
    team.devices_file = farm_devices(team.farm, team.root, time_scale=0.08, name="slow.yaml")
    [job] = team.submit_here(["long"], ["ax650n"])
    run_id = job["run_id"]
    first = team.start_worker("w-doomed")
    wait_for(lambda: len(measurement_keys(team, run_id)) >= 2, 60, "the first measurements")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    stored_at_kill = len(measurement_keys(team, run_id))
    assert stored_at_kill < LONG_RECORDS, "the job finished before the kill; make it longer"
    team.start_worker("w-heir")
    listed = team.wait_jobs([job["job_id"]], timeout=90, what="(resume after SIGKILL)")[job["job_id"]]
    assert listed["state"] == "succeeded" and listed["worker"] == "w-heir"
    keys = measurement_keys(team, run_id)
    assert len(keys) == LONG_RECORDS and len(set(keys)) == LONG_RECORDS
    assert sorted(k[3] for k in keys) == list(range(-1, 10)) or len({k[3] for k in keys}) == LONG_RECORDS
    heir = team.log("w-heir")
    assert "stalled" in heir and "resuming" in heir
    assert team.sql("SELECT count(*) FROM runs") == [(1,)]  # the same run, not a new one
    assert job_windows(team, [job["job_id"]])[job["job_id"]][2] == 2
    journal = Path(team.farm.board("ax650n").workdir) / "runs" / run_id / "ax650n" / "results.jsonl"
    assert len(journal.read_text().splitlines()) == LONG_RECORDS  # the board measured each once too


def test_postgres_restarted_mid_run_worker_reconnects_and_finishes(team: Team, pg_server) -> None:
    team.devices_file = farm_devices(team.farm, team.root, time_scale=0.08, name="slow.yaml")
    [job] = team.submit_here(["long"], ["orin-nano"])
    run_id = job["run_id"]
    team.start_worker("w-steady", "--stall-timeout", "30")
    wait_for(lambda: len(measurement_keys(team, run_id)) >= 2, 60, "the first measurements")
    restart_postgres(pg_server, down_s=2.0)
    listed = team.wait_jobs([job["job_id"]], timeout=90, what="(after a PostgreSQL restart)")[job["job_id"]]
    assert listed["state"] == "succeeded", listed
    keys = measurement_keys(team, run_id)
    assert len(keys) == LONG_RECORDS and len(set(keys)) == LONG_RECORDS
    assert job_windows(team, [job["job_id"]])[job["job_id"]][2] == 1  # finished by the same attempt
    assert team.workers[0].poll() is None  # the worker lived through it
    assert "unreachable" in team.log("w-steady") or "not written" in team.log("w-steady")


SCHEDULE = """\
schedules:
  - name: nightly
    cron: "* * * * * */3"      # every 3 s (seconds last): a 'night' per tick, for the test
    lab: lab-night             # no worker serves it: the night's board jobs stay queued
    suites: [quick]
    devices: ax650n,orin-nano
    tags: [nightly]
"""


def test_two_workers_racing_at_the_periodic_tick_enqueue_one_nightly(team: Team) -> None:
    schedule = team.root / "schedule.yaml"
    schedule.write_text(SCHEDULE)
    team.start_worker("w-east", "--schedule", str(schedule))
    team.start_worker("w-west", "--schedule", str(schedule))
    wait_for(lambda: len(team.sql("SELECT 1 FROM bench_workers")) == 2, 60, "both workers to register")
    wait_for(lambda: len(team.sql("SELECT 1 FROM bench_nights WHERE job_ids <> '[]'")) >= 3, 60, "three nights")
    team.stop_workers()
    nightly = team.sql("SELECT args->>'timestamp', count(*) FROM procrastinate_jobs"
                       " WHERE task_name = 'bench.nightly' GROUP BY 1")
    assert len(nightly) >= 3 and all(count == 1 for _tick, count in nightly), nightly
    nights = team.sql("SELECT period, job_ids FROM bench_nights ORDER BY period")
    done = [n for n in nights if n[1]]
    board_jobs = team.sql("SELECT args->>'board', args->>'tags' FROM procrastinate_jobs"
                          " WHERE task_name = 'bench.run_board'")
    assert len(board_jobs) == 2 * len(done)  # each night's two boards, once
    for period, _ids in done:
        assert sorted(b for b, tags in board_jobs if "night:%s" % period in tags) == ["ax650n", "orin-nano"]
    ran = team.sql("SELECT DISTINCT n.worker FROM bench_job_notes n JOIN procrastinate_jobs j ON j.id = n.job_id"
                   " WHERE j.task_name = 'bench.nightly'")
    assert ran == [] or all(w[0] in ("w-east", "w-west", None) for w in ran)


NIGHT_WITH_CHECK = """\
schedules:
  - name: nightly
    cron: "* * * * * */30"
    lab: lab-a
    suites: [quick]
    devices: ax650n
    tags: [nightly]
    regress:
      baseline: last:7
      junit: reports/{schedule}-{period}.junit.xml
"""


def test_the_night_runs_its_jobs_then_its_regression_check_and_stores_the_verdict(team: Team) -> None:
    schedule = team.root / "schedule.yaml"
    schedule.write_text(NIGHT_WITH_CHECK)
    team.start_worker("w-night", "--schedule", str(schedule))
    verdict = wait_for(lambda: team.sql("SELECT period, run_ids, verdict FROM bench_nights WHERE verdict IS NOT NULL"),
                       120, "the night's verdict")
    period, run_ids, stored = verdict[0]
    assert stored["jobs"] == 1 and stored["failed_jobs"] == 0 and stored["runs"] == run_ids
    assert len(stored["verdicts"]) == 1 and "regression" in stored["verdicts"][0]
    [run_id] = run_ids
    assert team.sql("SELECT status, tags FROM runs WHERE run_id = %s", (run_id,))[0][0] == "finished"
    assert "night:%s" % period in team.sql("SELECT tags FROM runs WHERE run_id = %s", (run_id,))[0][0]
    assert len(measurement_keys(team, run_id)) == QUICK_RECORDS
    junit = list((team.root / "reports").glob("nightly-*.junit.xml"))
    assert junit and "<testsuite" in junit[0].read_text()
    shown = team.bench("queue", "nights", "--json")
    assert shown.returncode == 0 and period in shown.stdout and stored["verdicts"][0] in shown.stdout


def test_queue_commands_without_postgresql_say_what_to_give(tmp_path: Path) -> None:
    import subprocess
    import sys

    from ..conftest import REPO, bench_env

    bench = str(Path(sys.executable).parent / "bench")
    proc = subprocess.run([bench, "--devices-file", str(REPO / "devices.yaml"), "--suites-dir", str(REPO / "suites"),
                           "--results-dir", str(tmp_path), "submit", "--suite", "video-8f", "--devices", "local"],
                          cwd=tmp_path, capture_output=True, text=True, env=bench_env(), timeout=120)
    assert proc.returncode == 2
    assert "the job queue lives in PostgreSQL: give --queue postgresql://" in proc.stderr
    assert "Traceback" not in proc.stderr
