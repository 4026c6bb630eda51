"""`bench worker`: a procrastinate worker near the boards that outlives database restarts.

procrastinate's worker stops when one of its side tasks (heartbeat, periodic deferrer, listener)
or a job fetch raises; a worker in a lab must instead wait the database out and carry on. So the
side tasks are restarted with backoff, a failed fetch is retried at the next poll, and a job's
final status is written again until the database takes it. Two side tasks are ours:

- our heartbeat in ``bench_workers`` (lab, boards served) that `bench queue` uses to say why a
  job waits;
- the stalled-job check: a job left ``doing`` by a worker whose procrastinate heartbeat is older
  than ``stall_s`` (it was SIGKILLed, its machine died) is put back on the queue, where the next
  worker resumes its run.

procrastinate runs a sync task in the event loop's default thread pool, which Python sizes from
the CPU count (min(32, cores + 4): 6 threads on a 2-core lab PC), not from ``--concurrency``; the
jobs past that number sat fetched but not started. The worker gives the loop a pool of
``concurrency`` threads plus a few for its own side work (heartbeats, job notes), so a job never
waits for a thread and a heartbeat never waits for a job.

SIGTERM/SIGINT: stop taking jobs and finish the running ones (a second signal leaves them
``doing``; the stalled-job check on another worker hands them on).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, List, Optional

from . import db
from .execute import queue_name
from .tasks import SCHEDULE_QUEUE, WorkerRuntime, make_app

log = logging.getLogger("bench.worker")

#: threads beside the jobs' for the worker's own blocking calls (bench heartbeat, job notes, the
#: nightly claim, stopping), so none of them waits behind a running job
SIDE_THREADS = 4


@dataclass
class WorkerOptions:
    lab: str
    boards: List[str]
    concurrency: int = 4
    once: bool = False
    stall_s: float = 60.0  # a job whose worker has not beaten its heart for this long is handed on
    poll_s: float = 2.0  # how often to look for jobs when no notification came
    max_attempts: int = 3
    retry_wait_s: float = 10.0
    schedule: Any = None


def _connection_errors() -> tuple:
    import psycopg
    from procrastinate import exceptions

    return (psycopg.OperationalError, psycopg.InterfaceError, exceptions.ConnectorException, OSError)


def make_worker_class() -> type:
    from procrastinate import worker as pworker

    errors = _connection_errors()

    class ResilientWorker(pworker.Worker):
        """procrastinate's worker, made to wait out a database restart (see the module doc)."""

        bench_runtime: WorkerRuntime
        bench_stall_s: float = 60.0

        async def _keep_running(self, name: str, factory: Callable[[], Awaitable[Any]]) -> None:
            delay = 0.5
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s: %s; restarting it in %.1f s", name, str(exc).strip()[:200], delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

        def _start_side_tasks(self) -> List[asyncio.Task]:
            factories = [("heartbeat", self._update_heartbeat), ("deferrer", self._periodic_deferrer),
                         ("abort poll", self._poll_jobs_to_abort), ("bench heartbeat", self._bench_heartbeat),
                         ("stalled jobs", self._hand_on_stalled_jobs)]
            if self.listen_notify:
                factories.append(("listener", lambda: self.app.job_manager.listen_for_jobs(
                    on_notification=self._handle_notification, queues=self.queues)))
            return [asyncio.create_task(self._keep_running(name, factory), name=name) for name, factory in factories]

        async def _update_heartbeat(self) -> None:
            while True:
                await asyncio.sleep(self.update_heartbeat_interval)
                try:
                    await self.app.job_manager.update_heartbeat(self.worker_id)
                except errors as exc:
                    log.warning("heartbeat not written (%s)", str(exc).strip()[:160])

        async def _bench_heartbeat(self) -> None:
            runtime = self.bench_runtime
            await asyncio.to_thread(self._register)
            while True:
                await asyncio.sleep(self.update_heartbeat_interval)
                try:
                    await asyncio.to_thread(self._beat)
                except Exception as exc:
                    log.warning("worker heartbeat of %s not written (%s)", runtime.name, str(exc).strip()[:160])

        def _register(self) -> None:
            runtime = self.bench_runtime
            with db.connect(runtime.queue_url) as conn:
                db.register_worker(conn, runtime.name, runtime.lab, socket.gethostname(), os.getpid(), runtime.boards)

        def _beat(self) -> None:
            with db.connect(self.bench_runtime.queue_url, timeout_s=5) as conn:
                if conn.execute("UPDATE bench_workers SET heartbeat = now(), stopped = false WHERE name = %s",
                                (self.bench_runtime.name,)).rowcount == 0:
                    self._register()

        async def _hand_on_stalled_jobs(self) -> None:
            while True:
                await asyncio.sleep(max(1.0, self.bench_stall_s / 4))
                try:
                    stalled = await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=self.bench_stall_s)
                    for job in stalled:
                        if job.worker_id is not None and job.worker_id == self.worker_id:
                            continue  # ours: we are alive (a slow heartbeat write, not a dead worker)
                        log.warning("job %s stalled (its worker's heartbeat is older than %.0f s): "
                                    "putting it back on the queue", job.id, self.bench_stall_s)
                        await self.app.job_manager.retry_job(job)
                        await asyncio.to_thread(self.bench_runtime.note, int(job.id), state="queued",
                                                message="handed on: worker of attempt %d stopped beating"
                                                % (job.attempts + 1))
                except errors as exc:
                    log.warning("stalled-job check skipped (%s)", str(exc).strip()[:160])

        async def _fetch_and_process_jobs(self) -> None:
            try:
                await super()._fetch_and_process_jobs()
            except errors as exc:
                log.warning("could not fetch a job (%s); trying again", str(exc).strip()[:160])
                await asyncio.sleep(self.fetch_job_polling_interval)

        async def _persist_job_status(self, *args: Any, **kwargs: Any) -> None:
            delay = 0.5
            while True:  # a job's outcome must reach the database, or it would run again
                try:
                    return await super()._persist_job_status(*args, **kwargs)
                except errors as exc:
                    log.warning("job status not written (%s); retrying in %.1f s", str(exc).strip()[:160], delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

        async def _shutdown(self, side_tasks: List[asyncio.Task]) -> None:
            try:
                await super()._shutdown(side_tasks)
            except errors as exc:
                log.warning("could not unregister the worker (%s)", str(exc).strip()[:160])
            try:
                await asyncio.to_thread(self._mark_stopped)
            except Exception as exc:
                log.warning("could not mark %s stopped (%s)", self.bench_runtime.name, exc)

        def _mark_stopped(self) -> None:
            with db.connect(self.bench_runtime.queue_url, timeout_s=5) as conn:
                conn.execute("UPDATE bench_workers SET stopped = true WHERE name = %s", (self.bench_runtime.name,))

    return ResilientWorker


def job_threads(concurrency: int) -> int:
    """Threads in the worker's pool: one per concurrent job, plus SIDE_THREADS."""
    return concurrency + SIDE_THREADS


def serve(runtime: WorkerRuntime, options: WorkerOptions) -> None:
    """Run the worker until SIGTERM/SIGINT (or, with ``once``, until its queues are empty)."""
    db.ensure_schema(runtime.queue_url)
    asyncio.run(_serve(runtime, options))


async def _serve(runtime: WorkerRuntime, options: WorkerOptions) -> None:
    worker_class = make_worker_class()
    queues = [queue_name(options.lab, board) for board in options.boards]
    if options.schedule is not None:
        queues.append(SCHEDULE_QUEUE)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=job_threads(options.concurrency),
                                                 thread_name_prefix="bench-job"))
    current: List[Any] = []

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            runtime.echo("second signal: leaving running jobs to the stalled-job check of another worker")
            os._exit(128 + signum)
        stopping.set()
        runtime.echo("stopping: no new jobs; finishing the running ones (signal again to leave them)")
        for worker in current:
            worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    delay = 1.0
    while not stopping.is_set():
        app = make_app(runtime.queue_url, max_attempts=options.max_attempts, retry_wait_s=options.retry_wait_s,
                       schedule=options.schedule)
        try:
            async with app.open_async():
                worker = worker_class(
                    app, queues=queues, name=runtime.name, concurrency=options.concurrency, wait=not options.once,
                    fetch_job_polling_interval=options.poll_s, install_signal_handlers=False,
                    update_heartbeat_interval=max(0.5, options.stall_s / 6),
                    stalled_worker_timeout=options.stall_s, additional_context={"bench": runtime},
                )
                worker.bench_runtime = runtime
                worker.bench_stall_s = options.stall_s
                current[:] = [worker]
                runtime.echo("worker %s: lab %s, %d board(s): %s" % (runtime.name, options.lab, len(options.boards),
                                                                      ", ".join(options.boards[:20])))
                await worker.run()
                delay = 1.0
            if options.once:
                return
        except _connection_errors() as exc:
            runtime.echo("queue database unreachable (%s); reconnecting in %.0f s" % (str(exc).strip()[:200], delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            current[:] = []
