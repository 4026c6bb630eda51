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
          # and/or webhook: https://chat.example.org/hooks/bench

Every worker given the file registers one periodic task per entry (periodic id = the entry's
name); procrastinate records each (task, periodic id, tick) once, so one night is enqueued per
period however many workers run. The night (its job ids, run ids and verdict) is a row of
``bench_nights``; a re-delivered nightly job finds the row and enqueues nothing.

The alert (on a confirmed regression only) is one JSON document (:func:`alert_payload`): a
one-line ``text`` for a chat plus the regressions (board, workload, metric, before/after medians,
change, p), the runs and the absolute paths of the JUnit/markdown. A webhook gets it as the body of
one POST; a command gets it on stdin and in ``$BENCH_VERDICT_FILE`` (``$BENCH_ALERT_TEXT`` holds the
line). The verdict is stored before the alert is sent, and each channel's outcome (a non-2xx answer,
an unreachable hook, a non-zero exit) is stored with it: a failing alert never loses a verdict.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.parse
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
    command: Optional[List[str]] = Field(default=None, min_length=1)
    webhook: Optional[str] = None

    @field_validator("webhook")
    @classmethod
    def _http_webhook(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        parts = urllib.parse.urlsplit(value)
        try:
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            raise ValueError("the webhook's port is not a number") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook must be an http:// or https:// URL, got %r" % webhook_target(value))
        return value


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


# -- the nights, as `bench queue nights` and `bench report --history` show them ------------------
def nights(url: str, limit: int = 20) -> List[Dict[str, Any]]:
    """The newest ``limit`` nights: jobs, runs, verdict (None until checked) and how many of the
    night's jobs are still queued or running (why a night has no verdict yet)."""
    with db.connect(url) as conn:
        return _read_nights(conn, limit)


def stored_nights(url: str, limit: int = 30) -> Optional[List[Dict[str, Any]]]:
    """:func:`nights` of a PostgreSQL store, or None when it holds no ``bench_nights`` table (a
    results store no worker has used for the queue): the caller then shows no nights at all."""
    with db.connect(url) as conn:
        if not conn.execute("SELECT to_regclass('bench_nights') IS NOT NULL").fetchone()[0]:
            return None
        return _read_nights(conn, limit)


def _read_nights(conn: Any, limit: int) -> List[Dict[str, Any]]:
    has_jobs = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()[0]
    open_jobs = ("(SELECT count(*) FROM procrastinate_jobs j WHERE j.status IN ('todo', 'doing')"
                 " AND j.id IN (SELECT jsonb_array_elements_text(n.job_ids)::bigint))" if has_jobs else "0")
    rows = conn.execute("SELECT n.schedule, n.period, n.job_ids, n.run_ids, n.verdict, %s FROM bench_nights n"
                        " ORDER BY n.created_at DESC, n.period DESC LIMIT %%s" % open_jobs, (limit,)).fetchall()
    return [{"schedule": r[0], "period": r[1], "jobs": list(r[2]), "runs": list(r[3]), "verdict": r[4],
             "open_jobs": int(r[5])} for r in rows]


def night_verdict_text(night: Dict[str, Any]) -> str:
    """One line: the regressions, "clean", or why there is no verdict yet."""
    verdict = night.get("verdict")
    jobs = len(night.get("jobs") or [])
    if not verdict:
        if night.get("open_jobs"):
            return "not over: %d of %d job(s) queued or running" % (night["open_jobs"], jobs)
        return "pending: the regression check has not run yet"
    failed = verdict.get("failed_jobs") or 0
    tail = "; %d of %d job(s) failed" % (failed, verdict.get("jobs", jobs)) if failed else ""
    if "regressions" not in verdict:
        return "done (no regression check configured)" + tail
    if verdict["regressions"]:
        regressed = verdict.get("regressed")
        if regressed:
            return "%d regression(s): %s%s" % (verdict["regressions"], _listed(regressed), tail)
        return "; ".join(verdict.get("verdicts") or ["%d regression(s)" % verdict["regressions"]]) + tail
    problems = verdict.get("problems") or []
    checked = verdict.get("checked_runs", len(verdict.get("verdicts") or []) - len(problems))
    if not checked and problems:
        return "not checked: %s%s" % ("; ".join(problems), tail)
    return "clean" + ("; " + "; ".join(problems) if problems else "") + tail


def night_alert_text(night: Dict[str, Any]) -> str:
    """How the night's alert went: "-" when none was due, else each channel's outcome."""
    outcomes = (night.get("verdict") or {}).get("alert")
    if not outcomes:
        return "-"
    if isinstance(outcomes, str):  # a verdict stored before outcomes were structured
        return outcomes
    said = {True: "sent", False: "FAILED", None: "pending"}
    return "; ".join("%s %s %s: %s" % (o["via"], o["target"], said[o.get("ok")], o["detail"]) for o in outcomes)


def regression_text(regression: Dict[str, Any]) -> str:
    """``ax650n video-8f ttft_ms +25.3% (5400 -> 6766)``, a change a person reads in a chat line."""
    numbers = ""
    if regression.get("baseline_median") is not None and regression.get("latest_median") is not None:
        numbers = " (%s -> %s)" % (_short(regression["baseline_median"]), _short(regression["latest_median"]))
    change = "%+.1f%%" % (100 * regression["rel_change"]) if regression.get("rel_change") is not None else "changed"
    return "%s %s %s %s%s" % (regression["device"], regression["workload"], regression["metric"], change, numbers)


def _listed(regressed: List[Dict[str, Any]], limit: int = 3) -> str:
    """The first ``limit`` regressions as text, "+N more" for the rest (the stored verdict and the
    JUnit/markdown hold all of them)."""
    named = "; ".join(regression_text(r) for r in regressed[:limit])
    return named + ("; +%d more" % (len(regressed) - limit) if len(regressed) > limit else "")


def _short(value: float) -> str:
    return "%.0f" % value if abs(value) >= 100 else "%.3g" % value


# -- the check after a night -------------------------------------------------------------------
def check_night(runtime: WorkerRuntime, schedule_name: str, period: str) -> Dict[str, Any]:
    """After every board job of the night ended: the regression check, stored with the night,
    its JUnit/markdown written, the alert sent on a confirmed regression and its outcome stored."""
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
        outputs: Dict[str, List[str]] = {"junit": [], "markdown": []}
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
            for kind, target, render in (("junit", step.junit, to_junit_xml), ("markdown", step.markdown, to_markdown)):
                if target:
                    path = Path(target.format(**fields))
                    if len(run_ids) > 1:
                        path = path.with_name("%s.%s%s" % (path.stem, run_id, path.suffix))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(render(report), encoding="utf-8")
                    # absolute: the alert and the history page are read far from the worker's cwd
                    outputs[kind].append(str(path.resolve()))
        regressed = [_regression_fields(change) for r in reports for change in r.regressions]
        result.update({"regressions": len(regressed), "regressed": regressed, "checked_runs": len(reports),
                       "problems": problems, "outputs": outputs,
                       "verdicts": [verdict(r) for r in reports] + problems})
        if regressed and entry.alert is not None:
            result["alert"] = [{"via": "alert", "target": "-", "ok": None,
                                "detail": "being sent (if this stays, the worker stopped while sending)"}]
    # stored before alerting: an alert that fails, hangs or kills the worker cannot lose the verdict
    _store_verdict(runtime.queue_url, entry.name, period, result)
    if "alert" in result:
        result["alert"] = send_alert(entry.alert, alert_payload(entry, period, result))
        _store_verdict(runtime.queue_url, entry.name, period, result)
        for outcome in result["alert"]:
            if not outcome["ok"]:
                runtime.echo("night %s of %s: the alert by %s %s FAILED: %s" % (
                    period, entry.name, outcome["via"], outcome["target"], outcome["detail"]))
    runtime.echo("night %s of %s checked: %s" % (period, entry.name, "; ".join(result.get("verdicts", [])) or "done"))
    return result


def _store_verdict(url: str, schedule: str, period: str, result: Dict[str, Any]) -> None:
    with db.connect(url) as conn:
        conn.execute("UPDATE bench_nights SET verdict = %s WHERE schedule = %s AND period = %s",
                     (json.dumps(result, sort_keys=True), schedule, period))


def _regression_fields(change: Any) -> Dict[str, Any]:
    """What a person needs of one confirmed regression (a MetricChange): which series, how much."""
    return {
        "device": change.device, "suite": change.suite, "workload": change.workload, "variant": change.variant,
        "metric": change.metric, "direction": change.direction, "run_id": change.latest_run,
        "baseline_median": _rounded(change.baseline_median), "latest_median": _rounded(change.latest_median),
        "rel_change": _rounded(change.rel_change), "p_value": _rounded(change.p_value),
        "provenance_changes": [c.text() for c in change.provenance_changes],
    }


def _rounded(value: Optional[float]) -> Optional[float]:
    if value is None or value != value:  # NaN is not JSON
        return None
    return float("%.6g" % value)


# -- the alert ---------------------------------------------------------------------------------
ALERT_COMMAND_TIMEOUT_S = 60.0
ALERT_WEBHOOK_TIMEOUT_S = 30.0
ALERT_TEXT_REGRESSIONS = 3  # the one-line summary names this many; the structured fields hold all


def alert_payload(entry: ScheduleEntry, period: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """The alert's JSON: ``text`` is one line for a chat (Slack and Mattermost hooks show it as the
    message), the other fields are the same facts for a script."""
    regressed: List[Dict[str, Any]] = result.get("regressed") or []
    outputs: Dict[str, List[str]] = result.get("outputs") or {}
    named = _listed(regressed, ALERT_TEXT_REGRESSIONS)
    where = ", ".join(["JUnit %s" % p for p in outputs.get("junit", [])]
                      + ["markdown %s" % p for p in outputs.get("markdown", [])])
    text = "bench %s %s (lab %s): %d confirmed regression(s): %s%s" % (
        entry.name, period, entry.lab, len(regressed), named, " | " + where if where else "")
    return {
        "text": text, "schedule": entry.name, "period": period, "lab": entry.lab,
        "regressions": regressed, "n_regressions": len(regressed),
        "devices": sorted({r["device"] for r in regressed}), "metrics": sorted({r["metric"] for r in regressed}),
        "runs": result.get("runs", []), "failed_jobs": result.get("failed_jobs", 0),
        "verdicts": result.get("verdicts", []),
        "junit": outputs.get("junit", []), "markdown": outputs.get("markdown", []),
    }


def send_alert(alert: Alert, payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Run the command and/or POST the webhook; never raises: each channel's outcome is returned
    (``via``, ``target``, ``ok``, ``detail``) to be stored with the verdict."""
    body = json.dumps(payload, sort_keys=True)
    outcomes = []
    if alert.command:
        outcomes.append(_run_alert_command(alert.command, body, payload))
    if alert.webhook:
        outcomes.append(_post_webhook(alert.webhook, body))
    return outcomes


def _run_alert_command(command: List[str], body: str, payload: Dict[str, Any]) -> Dict[str, Any]:
    outcome: Dict[str, Any] = {"via": "command", "target": command[0], "ok": False}
    with tempfile.NamedTemporaryFile("w", prefix="bench-verdict-", suffix=".json", delete=False) as handle:
        handle.write(body)
    env = dict(os.environ, BENCH_VERDICT_FILE=handle.name, BENCH_SCHEDULE=payload["schedule"],
               BENCH_PERIOD=payload["period"], BENCH_ALERT_TEXT=payload["text"])
    try:  # the verdict is on stdin too, for `curl -d @-` and the like
        proc = subprocess.run(command, env=env, input=body, capture_output=True, text=True,
                              timeout=ALERT_COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        outcome["detail"] = "did not finish within %.0f s (killed)" % ALERT_COMMAND_TIMEOUT_S
        return outcome
    except OSError as exc:  # not found, not executable
        outcome["detail"] = "could not start: %s" % exc
        return outcome
    finally:
        os.unlink(handle.name)
    outcome["ok"] = proc.returncode == 0
    said = " ".join((proc.stderr or proc.stdout or "").split())
    outcome["detail"] = "exited %d%s" % (proc.returncode, ": " + said[-300:] if said and proc.returncode else "")
    return outcome


def _post_webhook(url: str, body: str) -> Dict[str, Any]:
    outcome: Dict[str, Any] = {"via": "webhook", "target": webhook_target(url), "ok": False}
    request = urllib.request.Request(url, data=body.encode("utf-8"),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        # the team's own hook (S310), checked to be http(s) when the schedule loads
        with urllib.request.urlopen(request, timeout=ALERT_WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
            outcome["ok"] = 200 <= response.status < 300
            outcome["detail"] = ("answered %d %s" % (response.status, response.reason or "")).strip()
    except urllib.error.HTTPError as exc:  # an answer, but not 2xx
        outcome["detail"] = ("answered %d %s" % (exc.code, exc.reason or "")).strip()
    except urllib.error.URLError as exc:
        outcome["detail"] = "unreachable: %s" % (exc.reason,)
    except (OSError, http.client.HTTPException, ValueError) as exc:  # a timeout, a reset, a garbled answer
        outcome["detail"] = "failed: %s" % (exc or type(exc).__name__,)
    return outcome


def webhook_target(url: str) -> str:
    """The hook's scheme, host and port: chat hooks carry their secret in the path or query, and
    the verdict is readable by everyone who can read the store."""
    parts = urllib.parse.urlsplit(url)
    return "%s://%s%s" % (parts.scheme, parts.hostname or "", ":%d" % parts.port if parts.port else "") + (
        "/..." if parts.path not in ("", "/") or parts.query else "")
