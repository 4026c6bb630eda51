"""The procrastinate app and its tasks.

- ``bench.run_board``: one (suite, board) job (:mod:`.execute`); a board that could not be reached
  is retried (``max_attempts``), a refusal (host key changed, authentication refused, unknown board
  or suite) fails for good with its message.
- ``bench.nightly``: a periodic task per schedule.yaml entry; procrastinate records each
  (task, periodic id, tick) once, so however many workers run, one nightly is enqueued per period.
  It submits the night's board jobs and a ``bench.night_check`` that waits for them and runs the
  regression check.

The worker hands its runtime (paths, store, name) to the tasks through procrastinate's
``additional_context``; nothing here is global.
"""

from __future__ import annotations

import datetime
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..plan import Paths
from . import db
from .execute import (TASK_RUN_BOARD, BoardJob, BoardUnavailable, JobFailedForGood, JobInputs, execute_board_job,
                      queue_name)

log = logging.getLogger("bench.worker")

TASK_NIGHTLY = "bench.nightly"
TASK_NIGHT_CHECK = "bench.night_check"
SCHEDULE_QUEUE = "bench/schedule"


@dataclass
class WorkerRuntime:
    """What a task needs from the worker that runs it."""

    name: str
    lab: str
    paths: Paths
    store: Any  # a ReconnectingStore
    queue_url: str
    make_transport_factory: Callable
    boards: List[str]
    max_attempts: int = 3
    poll_s: float = 0.5
    schedule: Any = None  # a schedule.Schedule, when the worker runs one
    echo: Callable[[str], None] = print
    options: Dict[str, Any] = field(default_factory=dict)
    inputs: JobInputs = field(default_factory=JobInputs)  # the devices file and runner, shared by its jobs

    def note(self, job_id: int, **fields: Any) -> None:
        """Record what a job is doing for `bench queue`; never fails the job."""
        try:
            with db.connect(self.queue_url, timeout_s=5) as conn:
                db.note_job(conn, job_id, **fields)
        except Exception as exc:  # the queue database may be restarting: the note is informative
            log.warning("could not note job %s: %s", job_id, exc)


def make_app(url: str, max_attempts: int = 3, retry_wait_s: float = 10.0,
             schedule: Any = None) -> Any:
    """The procrastinate app on the queue database ``url`` with our tasks (and the schedule's
    periodic tasks when given)."""
    db.require_psycopg()
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=url, min_size=1, max_size=8, kwargs={"connect_timeout": 5}))

    # procrastinate counts retries after the first attempt, and 0 would mean "retry forever"
    retry = (procrastinate.RetryStrategy(max_attempts=max_attempts - 1, wait=int(retry_wait_s),
                                         retry_exceptions={BoardUnavailable}) if max_attempts > 1 else None)

    @app.task(name=TASK_RUN_BOARD, pass_context=True, retry=retry)
    def run_board(context: Any, **args: Any) -> Dict[str, Any]:
        return _run_board(context, args, max_attempts)

    @app.task(name=TASK_NIGHTLY, pass_context=True, queue=SCHEDULE_QUEUE)
    async def nightly(context: Any, timestamp: int, schedule: str) -> Dict[str, Any]:
        from .schedule import enqueue_night

        runtime: WorkerRuntime = context.additional_context["bench"]
        return await enqueue_night(app, runtime, schedule, timestamp)

    @app.task(name=TASK_NIGHT_CHECK, pass_context=True, queue=SCHEDULE_QUEUE,
              retry=procrastinate.RetryStrategy(max_attempts=100000, wait=max(1, int(retry_wait_s)),
                                                retry_exceptions={NightNotOver}))
    def night_check(context: Any, schedule: str, period: str) -> Dict[str, Any]:
        from .schedule import check_night

        runtime: WorkerRuntime = context.additional_context["bench"]
        return check_night(runtime, schedule, period)

    if schedule is not None:
        for entry in schedule.entries:
            app.periodic_registry.register_task(
                task=nightly, cron=entry.cron, periodic_id=entry.name,
                configure_kwargs={"task_kwargs": {"schedule": entry.name}, "queue": SCHEDULE_QUEUE})
    return app


class NightNotOver(Exception):
    """Some of the night's board jobs are still queued or running: check again later."""


def _run_board(context: Any, args: Dict[str, Any], max_attempts: int) -> Dict[str, Any]:
    runtime: WorkerRuntime = context.additional_context["bench"]
    job = BoardJob(**args)
    job_id = int(context.job.id)
    attempt = int(context.job.attempts) + 1
    runtime.note(job_id, worker=runtime.name, run_id=job.run_id, state="running",
                 message="attempt %d on %s (%s)" % (attempt, runtime.name, socket.gethostname()))
    runtime.echo("job %d: %s on %s (run %s, attempt %d)" % (job_id, job.suite, job.board, job.run_id, attempt))
    seen: Dict[str, str] = {}

    def on_progress(progress: Any) -> None:
        key = "%s|%s" % (progress.state, progress.message)
        if seen.get(progress.device) != key:
            seen[progress.device] = key
            runtime.echo("job %d: %s %s %s" % (job_id, progress.device, progress.state, progress.message))

    try:
        result = execute_board_job(job, runtime.paths, runtime.store, runtime.make_transport_factory,
                                   on_progress, notify=runtime.echo, poll_s=runtime.poll_s, inputs=runtime.inputs)
    except JobFailedForGood as exc:
        runtime.note(job_id, state="failed", message="failed for good: %s" % exc)
        runtime.echo("job %d failed for good: %s" % (job_id, exc))
        raise
    except BoardUnavailable as exc:
        final = attempt >= max_attempts
        runtime.note(job_id, state="failed" if final else "retrying",
                     message=("attempt %d of %d: %s" % (attempt, max_attempts, exc)))
        runtime.echo("job %d attempt %d failed: %s" % (job_id, attempt, exc))
        raise
    message = result.summary()
    runtime.note(job_id, state="finished", message=message)
    runtime.echo("job %d finished: %s" % (job_id, message))
    return {"run_id": job.run_id, "board": job.board, "stored": result.outcome.stored,
            "errors": result.outcome.errors,
            "accuracy": [{k: item.get(k) for k in ("variant", "task", "metric", "accuracy", "n", "ci_low", "ci_high")}
                         for item in result.accuracy]}


async def defer_board_jobs(app: Any, jobs: List[BoardJob], priority: int = 0) -> List[int]:
    """Put each job on its (lab, board) queue with the board's lock; returns the job ids."""
    task = app.tasks[TASK_RUN_BOARD]
    ids = []
    for job in jobs:
        job_id = await task.configure(queue=queue_name(job.lab, job.board), lock=board_lock(job.lab, job.board),
                                      priority=priority).defer_async(**job.as_args())
        ids.append(int(job_id))
    return ids


def board_lock(lab: str, board: str) -> str:
    """procrastinate runs one job per lock at a time, across every worker: one run per board."""
    return "board:%s/%s" % (lab, board)


def utc_period(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
