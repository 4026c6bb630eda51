"""`bench submit` and `bench queue`: defer board jobs, list them with why they wait, cancel, retry."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

from ..plan import new_run_id
from . import db
from .execute import BoardJob
from .tasks import TASK_RUN_BOARD, board_lock, defer_board_jobs, make_app

# a worker whose heartbeat is older than this is not counted as serving its boards
LIVE_WORKER_S = 60.0


def plan_submission(suites: Sequence[str], boards: Sequence[str], lab: str, tags: Sequence[str],
                    variant: Optional[str] = None) -> List[BoardJob]:
    """One job per (suite, board); the boards of one suite share one run (one report, one history
    point), each job carrying the run id so a re-delivered job resumes it."""
    submission = new_run_id()
    jobs = []
    for suite in suites:
        run_id = new_run_id()
        for board in boards:
            jobs.append(BoardJob(run_id=run_id, suite=suite, board=board, lab=lab, devices=list(boards),
                                 tags=list(tags), variant=variant, submission=submission))
    return jobs


def submit(url: str, jobs: List[BoardJob], priority: int = 0) -> List[int]:
    db.ensure_schema(url)
    app = make_app(url)

    async def go() -> List[int]:
        async with app.open_async():
            return await defer_board_jobs(app, jobs, priority)

    return asyncio.run(go())


@dataclass
class QueuedJob:
    id: int
    state: str
    lab: str
    board: str
    suite: str
    run_id: str
    priority: int
    attempts: int
    worker: Optional[str]
    age_s: float
    why: str  # what the job is waiting for, or what it said last

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def list_jobs(url: str, lab: Optional[str] = None, state: Optional[str] = None,
              live_worker_s: float = LIVE_WORKER_S) -> List[QueuedJob]:
    db.ensure_schema(url)
    with db.connect(url) as conn:
        rows = conn.execute(
            "SELECT j.id, j.status::text, j.queue_name, j.lock, j.args, j.priority, j.attempts, j.scheduled_at,"
            " EXTRACT(EPOCH FROM now() - COALESCE((SELECT min(e.at) FROM procrastinate_events e"
            "   WHERE e.job_id = j.id), now())),"
            " j.task_name"
            " FROM procrastinate_jobs j WHERE j.task_name = %s"
            " AND (%s::text IS NULL OR j.status::text = %s)"
            " ORDER BY j.id", (TASK_RUN_BOARD, state, state)).fetchall()
        notes = db.job_notes(conn, [r[0] for r in rows])
        workers = db.live_workers(conn, live_worker_s)
        running_on = {r[3]: r[0] for r in rows if r[1] == "doing" and r[3]}
    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    for job_id, status, _queue, lock, args, priority, attempts, scheduled_at, age, _task in rows:
        args = dict(args or {})
        job_lab = str(args.get("lab", ""))
        if lab is not None and job_lab != lab:
            continue
        note = notes.get(job_id, {})
        board = str(args.get("board", ""))
        why = note.get("message") or ""
        if status == "todo":
            why = _why_waiting(job_id, job_lab, board, lock, scheduled_at, now, running_on, workers, why)
        out.append(QueuedJob(id=job_id, state=status, lab=job_lab, board=board, suite=str(args.get("suite", "")),
                             run_id=str(args.get("run_id", "")), priority=int(priority), attempts=int(attempts),
                             worker=note.get("worker"), age_s=float(age or 0.0), why=why))
    return out


def _why_waiting(job_id: int, lab: str, board: str, lock: Optional[str], scheduled_at: Any,
                 now: datetime.datetime, running_on: Dict[str, int], workers: List[Dict[str, Any]],
                 last: str) -> str:
    serving = [w["name"] for w in workers if w["lab"] == lab and board in w["boards"]]
    if not serving:
        of_lab = [w["name"] for w in workers if w["lab"] == lab]
        return ("waiting: no live worker serves board %s in lab %s (live workers of the lab: %s)"
                % (board, lab, ", ".join(of_lab) or "none"))
    if scheduled_at is not None and scheduled_at > now:
        return "waiting: retry at %s%s" % (scheduled_at.strftime("%H:%M:%S"), ("; last: " + last) if last else "")
    holder = running_on.get(lock or board_lock(lab, board))
    if holder is not None and holder != job_id:
        return "waiting: board %s is busy with job %d" % (board, holder)
    return "waiting for a free slot on %s" % ", ".join(serving)


def cancel(url: str, job_id: int) -> str:
    db.ensure_schema(url)
    app = make_app(url)

    async def go() -> bool:
        async with app.open_async():
            return await app.job_manager.cancel_job_by_id_async(job_id)

    if not asyncio.run(go()):
        raise db.QueueError("job %d cannot be cancelled: %s (only a queued job can; stop a running one's "
                            "worker with SIGTERM)" % (job_id, _state_of(url, job_id)))
    return "cancelled"


def retry(url: str, job_id: int) -> str:
    state = _state_of(url, job_id)
    if state not in ("failed", "cancelled", "aborted"):
        raise db.QueueError("job %d is %s: only a failed, cancelled or aborted job can be retried" % (job_id, state))
    with db.connect(url) as conn:
        with conn.transaction():
            if state != "failed":  # procrastinate retries failed jobs only: make it one first
                conn.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", (job_id,))
            conn.execute("SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)", (job_id,))
        db.note_job(conn, job_id, state="queued", message="retried by hand")
    return "queued"


def _state_of(url: str, job_id: int) -> str:
    with db.connect(url) as conn:
        row = conn.execute("SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)).fetchone()
    if row is None:
        raise db.QueueError("no job %d in the queue (see `bench queue`)" % job_id)
    return str(row[0])
