"""`bench submit`, `bench worker`, `bench queue [cancel|retry|nights]`: the team's job queue."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..plan import Paths
from .app import app
from .common import EXIT_CONFIG, err, fail, inventory_of, open_paths_store, transport_factory

queue_app = typer.Typer(help="The team's job queue (PostgreSQL): list, cancel, retry.", invoke_without_command=True)
app.add_typer(queue_app, name="queue")

QUEUE_OPTION = typer.Option(None, "--queue", envvar="BENCH_QUEUE",
                            help="The queue's PostgreSQL URL (default: a postgresql:// --store).")


def _url(paths: Paths, queue: Optional[str]) -> str:
    from ..queue.db import queue_url

    return queue_url(queue, paths.store_url)


@app.command()
def submit(
    ctx: typer.Context,
    suite: List[str] = typer.Option(..., "--suite", "-s", help="Suite name; repeatable."),
    devices: str = typer.Option(..., "--devices", "-d", help="all, names, tag:NAME, type:BOARD (comma-separated)."),
    lab: str = typer.Option("default", "--lab", help="The lab whose workers serve these boards."),
    tag: List[str] = typer.Option([], "--tag", help="Label the runs (e.g. nightly); repeatable."),
    priority: int = typer.Option(0, "--priority", help="Higher runs first; equal priorities run oldest first."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Only this model variant of each board."),
    json_out: bool = typer.Option(False, "--json", help="Print the job ids and run ids as JSON."),
    queue: Optional[str] = QUEUE_OPTION,
) -> None:
    """Queue one job per (suite, board) for the lab's workers; print the job ids."""
    from ..config.suites import find_suite
    from ..queue.jobs import plan_submission
    from ..queue.jobs import submit as submit_jobs

    paths: Paths = ctx.obj
    url = _url(paths, queue)
    for name in suite:
        find_suite(name, paths.suites_dir)  # an unknown suite is refused here, not on the worker
    boards = [d.name for d in inventory_of(paths).select(devices)]
    jobs = plan_submission(suite, boards, lab, tag, variant)
    ids = submit_jobs(url, jobs, priority=priority)
    if json_out:
        sys.stdout.write(json.dumps({"jobs": [dict(job.as_args(), job_id=i) for job, i in zip(jobs, ids)]},
                                    indent=1, sort_keys=True) + "\n")
        return
    for job, job_id in zip(jobs, ids):
        typer.echo("%d\t%s\t%s\t%s" % (job_id, job.board, job.suite, job.run_id))
    err.print("queued %d job(s) for lab %s; watch them with `bench queue --lab %s`" % (len(ids), lab, lab))


@app.command()
def worker(
    ctx: typer.Context,
    lab: str = typer.Option(..., "--lab", help="The lab this worker serves."),
    devices_file: Optional[Path] = typer.Option(None, "--devices-file", help="The lab's boards (default: the global one)."),
    devices: str = typer.Option("all", "--devices", "-d", help="Which boards of the file this worker serves."),
    concurrency: int = typer.Option(4, "--concurrency", help="Jobs (boards) run at once."),
    once: bool = typer.Option(False, "--once", help="Run what is queued for these boards, then exit (CI)."),
    schedule: Optional[Path] = typer.Option(None, "--schedule", help="schedule.yaml: enqueue the nightly."),
    name: Optional[str] = typer.Option(None, "--name", help="Worker name (default LAB@HOST:PID)."),
    stall_timeout: float = typer.Option(60.0, "--stall-timeout",
                                        help="Seconds without a worker heartbeat before its job is handed on."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks at the queue (notifications are instant)."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Attempts for a board that cannot be reached."),
    retry_wait: float = typer.Option(10.0, "--retry-wait", help="Seconds before another attempt."),
    board_poll: float = typer.Option(0.5, "--board-poll", help="Seconds between pulls from a running board."),
    queue: Optional[str] = QUEUE_OPTION,
) -> None:
    """Take this lab's jobs from the queue and run each through the controller path."""
    from ..queue.schedule import load_schedule
    from ..queue.store import ReconnectingStore
    from ..queue.tasks import WorkerRuntime
    from ..queue.worker import WorkerOptions, serve

    paths: Paths = ctx.obj
    if devices_file is not None:
        paths = Paths(devices_file=devices_file, suites_dir=paths.suites_dir, results_dir=paths.results_dir,
                      reports_dir=paths.reports_dir, store_url=paths.store_url)
    url = _url(paths, queue)
    boards = [d.name for d in inventory_of(paths).select(devices)]
    plan = load_schedule(schedule) if schedule is not None else None
    if concurrency < 1:
        raise fail("--concurrency must be at least 1", EXIT_CONFIG)
    worker_name = name or "%s@%s:%d" % (lab, socket.gethostname(), os.getpid())

    def echo(message: str) -> None:
        err.print("%s %s" % (time.strftime("%H:%M:%S"), message), markup=False, highlight=False)

    runtime = WorkerRuntime(
        name=worker_name, lab=lab, paths=paths, store=ReconnectingStore(open_paths_store(paths)), queue_url=url,
        make_transport_factory=transport_factory, boards=boards, max_attempts=max_attempts, poll_s=board_poll,
        schedule=plan, echo=echo,
    )
    serve(runtime, WorkerOptions(lab=lab, boards=boards, concurrency=concurrency, once=once, stall_s=stall_timeout,
                                 poll_s=poll, max_attempts=max_attempts, retry_wait_s=retry_wait, schedule=plan))
    echo("worker %s stopped" % worker_name)


@queue_app.callback()
def queue_list(
    ctx: typer.Context,
    lab: Optional[str] = typer.Option(None, "--lab"),
    state: Optional[str] = typer.Option(None, "--state", help="todo, doing, succeeded, failed, cancelled."),
    json_out: bool = typer.Option(False, "--json"),
    queue: Optional[str] = QUEUE_OPTION,
) -> None:
    """Jobs with state, board, worker, attempts, run id, age and why a queued job waits."""
    ctx.meta["bench_queue"] = queue
    if ctx.invoked_subcommand is not None:
        return
    from ..queue.jobs import list_jobs

    jobs = list_jobs(_url(ctx.obj, queue), lab=lab, state=state)
    if json_out:
        sys.stdout.write(json.dumps([j.as_dict() for j in jobs], indent=1, sort_keys=True) + "\n")
        return
    table = Table(title="queue")
    for column in ("job", "state", "lab", "board", "suite", "run", "prio", "attempts", "worker", "age", "why / last"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(str(job.id), job.state, job.lab, job.board, job.suite, job.run_id, str(job.priority),
                      str(job.attempts), job.worker or "", "%.0fs" % job.age_s, job.why)
    err.print(table)


@queue_app.command("cancel")
def queue_cancel(ctx: typer.Context, job_id: int = typer.Argument(...)) -> None:
    """Cancel a queued job."""
    from ..queue.jobs import cancel

    typer.echo("job %d %s" % (job_id, cancel(_url(ctx.obj, ctx.parent.meta.get("bench_queue")), job_id)))


@queue_app.command("retry")
def queue_retry(ctx: typer.Context, job_id: int = typer.Argument(...)) -> None:
    """Put a failed or cancelled job back on the queue."""
    from ..queue.jobs import retry

    typer.echo("job %d %s" % (job_id, retry(_url(ctx.obj, ctx.parent.meta.get("bench_queue")), job_id)))


@queue_app.command("nights")
def queue_nights(ctx: typer.Context, json_out: bool = typer.Option(False, "--json")) -> None:
    """The nightly schedule's nights: jobs, runs, the regression verdict and the alert's outcome."""
    from ..queue.schedule import night_alert_text, night_verdict_text, nights

    rows = nights(_url(ctx.obj, ctx.parent.meta.get("bench_queue")))
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=1, sort_keys=True, default=str) + "\n")
        return
    from ..terminal import TerminalTable, num_col, show, text_col

    # one row per line through a pipe (grep a night), ids and paths never split on a terminal
    table = TerminalTable(["schedule", "period", num_col("jobs"), text_col("runs"), text_col("verdict"),
                           text_col("alert"), text_col("junit / markdown")], title="nights")
    for row in rows:
        outputs = (row["verdict"] or {}).get("outputs") or {}
        table.add_row(row["schedule"], row["period"], str(len(row["jobs"])), ", ".join(row["runs"]),
                      night_verdict_text(row), night_alert_text(row),
                      ", ".join(outputs.get("junit", []) + outputs.get("markdown", [])) or "-")
    show(err, table)
