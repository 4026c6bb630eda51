"""schedule.yaml: the nightly, run by the workers through procrastinate periodic tasks.

    schedules:
      - name: nightly
        cron: "0 2 * * *"          # 5 fields, or 6 with seconds last (croniter)
        lab: lab-a
        suites: [video-8f, image]
        devices: all               # a selector over the running worker's devices file
        tags: [nightly]
        priority: -1               # below interactive submissions
        regress:                   # after every board job of the night has ended
          baseline: last:7
          junit: reports/nightly/{period}.junit.xml
          markdown: reports/nightly/{period}.md
        alert:                     # on a confirmed regression
          command: ["sh", "-c", "mail -s 'bench: regression' lab@example.org < $BENCH_VERDICT_FILE"]
          # or webhook: https://chat.example.org/hooks/bench

Every worker given the file registers one periodic task per entry (periodic id = the entry's
name); procrastinate records each (task, periodic id, tick) once, so one night is enqueued per
period however many workers run. The night (its job ids, run ids and verdict) is a row of
``bench_nights``; a re-delivered nightly job finds the row and enqueues nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config.devices import load_devices
from ..errors import UsageError
from . import db
from .jobs import plan_submission
from .tasks import NightNotOver, WorkerRuntime, defer_board_jobs, utc_period


class RegressStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    baseline: str = "last:7"
    threshold: float = 0.05
    alpha: float = 0.01
    min_persist: int = 2
    junit: Optional[str] = None  # {period} and {schedule} are filled in
    markdown: Optional[str] = None


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: Optional[List[str]] = None
    webhook: Optional[str] = None


class ScheduleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    cron: str
    lab: str
    suites: List[str] = Field(min_length=1)
    devices: str = "all"
    tags: List[str] = Field(default_factory=lambda: ["nightly"])
    priority: int = -1
    regress: Optional[RegressStep] = None
    alert: Optional[Alert] = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        import croniter

        if not croniter.croniter.is_valid(value):
            raise ValueError("not a cron expression: %r" % value)
        return value


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedules: List[ScheduleEntry] = Field(min_length=1)

    @property
    def entries(self) -> List[ScheduleEntry]:
        return self.schedules

    def entry(self, name: str) -> ScheduleEntry:
        for entry in self.schedules:
            if entry.name == name:
                return entry
        raise UsageError("no schedule %r in the schedule file (%s)" % (name, ", ".join(e.name for e in self.schedules)))


def load_schedule(path: Path) -> Schedule:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError("cannot read the schedule %s: %s" % (path, exc)) from None
    except yaml.YAMLError as exc:
        raise UsageError("%s: invalid YAML: %s" % (path, str(exc).replace("\n", " "))) from None
    try:
        schedule = Schedule.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError("%s: %s: %s" % (path, where, first["msg"])) from None
    names = [e.name for e in schedule.schedules]
    if len(set(names)) != len(names):
        raise UsageError("%s: schedule names must be unique (%s)" % (path, ", ".join(names)))
    return schedule


async def enqueue_night(app: Any, runtime: WorkerRuntime, schedule_name: str, timestamp: int) -> Dict[str, Any]:
    """The periodic task's body: claim the night, submit its board jobs, then the check after."""
    from .tasks import TASK_NIGHT_CHECK

    entry = runtime.schedule.entry(schedule_name)
    period = utc_period(timestamp)
    claimed = await asyncio.to_thread(_claim_night, runtime.queue_url, entry.name, period)
    if not claimed:
        runtime.echo("night %s of %s was already enqueued" % (period, entry.name))
        return {"schedule": entry.name, "period": period, "enqueued": False}
    inventory = load_devices(runtime.paths.devices_file)
    boards = [d.name for d in inventory.select(entry.devices)]
    jobs = plan_submission(entry.suites, boards, entry.lab, list(entry.tags) + ["night:%s" % period])
    job_ids = await defer_board_jobs(app, jobs, priority=entry.priority)
    run_ids = sorted({j.run_id for j in jobs})
    await asyncio.to_thread(_record_night, runtime.queue_url, entry.name, period, job_ids, run_ids)
    await app.tasks[TASK_NIGHT_CHECK].configure(schedule_in={"seconds": 2}).defer_async(
        schedule=entry.name, period=period)
    runtime.echo("night %s of %s: %d job(s) on %d board(s)" % (period, entry.name, len(job_ids), len(boards)))
    return {"schedule": entry.name, "period": period, "enqueued": True, "jobs": job_ids, "runs": run_ids}


def _claim_night(url: str, schedule: str, period: str) -> bool:
    with db.connect(url) as conn:
        return conn.execute("INSERT INTO bench_nights(schedule, period) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            (schedule, period)).rowcount == 1


def _record_night(url: str, schedule: str, period: str, job_ids: List[int], run_ids: List[str]) -> None:
    with db.connect(url) as conn:
        conn.execute("UPDATE bench_nights SET job_ids = %s, run_ids = %s WHERE schedule = %s AND period = %s",
                     (json.dumps(job_ids), json.dumps(run_ids), schedule, period))


def nights(url: str, limit: int = 20) -> List[Dict[str, Any]]:
    with db.connect(url) as conn:
        rows = conn.execute("SELECT schedule, period, job_ids, run_ids, verdict FROM bench_nights"
                            " ORDER BY created_at DESC LIMIT %s", (limit,)).fetchall()
    return [{"schedule": r[0], "period": r[1], "jobs": list(r[2]), "runs": list(r[3]), "verdict": r[4]} for r in rows]


def check_night(runtime: WorkerRuntime, schedule_name: str, period: str) -> Dict[str, Any]:
    """After every board job of the night ended: the regression check, stored with the night,
    its JUnit/markdown written, the alert sent on a confirmed regression."""
    from ..analysis.regress import regress, suite_thresholds
    from ..analysis.regress_output import to_junit_xml, to_markdown, verdict

    entry = runtime.schedule.entry(schedule_name)
    with db.connect(runtime.queue_url) as conn:
        row = conn.execute("SELECT job_ids, run_ids FROM bench_nights WHERE schedule = %s AND period = %s",
                           (entry.name, period)).fetchone()
        if row is None:
            raise UsageError("no night %s of %s" % (period, entry.name))
        job_ids, run_ids = list(row[0]), list(row[1])
        states = [r[0] for r in conn.execute("SELECT status::text FROM procrastinate_jobs WHERE id = ANY(%s)",
                                             (job_ids,)).fetchall()]
    open_jobs = [s for s in states if s in ("todo", "doing")]
    if open_jobs:
        raise NightNotOver("%d of %d job(s) of the night are not over" % (len(open_jobs), len(job_ids)))
    result: Dict[str, Any] = {"jobs": len(job_ids), "runs": run_ids, "failed_jobs": states.count("failed")}
    if entry.regress is not None:
        step = entry.regress
        fields = {"period": period.replace(":", ""), "schedule": entry.name}
        reports = []
        problems = []
        for run_id in run_ids:
            try:
                report = regress(runtime.store.inner if hasattr(runtime.store, "inner") else runtime.store,
                                 baseline=step.baseline, threshold=step.threshold, alpha=step.alpha,
                                 suite_thresholds=suite_thresholds(runtime.paths.suites_dir), run=run_id,
                                 min_persist=step.min_persist)
            except UsageError as exc:  # e.g. no baseline yet: the night's verdict says so
                problems.append("%s: %s" % (run_id, exc))
                continue
            reports.append(report)
            for target, render in ((step.junit, to_junit_xml), (step.markdown, to_markdown)):
                if target:
                    path = Path(target.format(**fields))
                    if len(run_ids) > 1:
                        path = path.with_name("%s.%s%s" % (path.stem, run_id, path.suffix))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(render(report), encoding="utf-8")
        regressions = sum(len(r.regressions) for r in reports)
        result.update({"regressions": regressions, "verdicts": [verdict(r) for r in reports] + problems,
                       "reports": [r.as_dict() for r in reports]})
        if regressions and entry.alert is not None:
            result["alert"] = _alert(entry.alert, entry.name, period, result)
    with db.connect(runtime.queue_url) as conn:
        conn.execute("UPDATE bench_nights SET verdict = %s WHERE schedule = %s AND period = %s",
                     (json.dumps({k: v for k, v in result.items() if k != "reports"}), entry.name, period))
    runtime.echo("night %s of %s checked: %s" % (period, entry.name, "; ".join(result.get("verdicts", [])) or "done"))
    return {k: v for k, v in result.items() if k != "reports"}


def _alert(alert: Alert, schedule: str, period: str, result: Dict[str, Any]) -> str:
    payload = json.dumps({"schedule": schedule, "period": period, "regressions": result.get("regressions"),
                          "verdicts": result.get("verdicts"), "runs": result.get("runs")}, sort_keys=True)
    if alert.command:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            handle.write(payload)
        env = dict(os.environ, BENCH_VERDICT_FILE=handle.name, BENCH_SCHEDULE=schedule, BENCH_PERIOD=period)
        proc = subprocess.run(alert.command, env=env, capture_output=True, text=True, timeout=60)
        return "command exited %d" % proc.returncode
    if alert.webhook:
        request = urllib.request.Request(alert.webhook, data=payload.encode("utf-8"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  (the team's own hook)
            return "webhook answered %d" % response.status
    return "no alert configured"
