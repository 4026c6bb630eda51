"""One queue job: a suite on one board, through the controller path, into the shared store.

The job carries its run id (chosen at submit time), so a job delivered twice - its worker died,
the stalled-job check handed it to another - continues the same run: the board's device state in
the store says a runner was started, so the controller resumes it (follows the runner if it still
runs, restarts it otherwise; the runner skips repetitions its journal has) and the store keeps
each measurement once, keyed by identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .. import __version__
from ..config.devices import load_devices
from ..config.suites import find_suite
from ..farm.controller import DeviceOutcome, DeviceProgress, run_plans
from ..plan import Paths, plan_run
from ..store import RunRecord

TASK_RUN_BOARD = "bench.run_board"


@dataclass
class BoardJob:
    """What `bench submit` puts on the queue for one (suite, board): the procrastinate job's args."""

    run_id: str
    suite: str
    board: str
    lab: str
    devices: List[str]  # every board of the submission: the run record lists them
    tags: List[str] = field(default_factory=list)
    variant: Optional[str] = None
    submission: str = ""

    def as_args(self) -> Dict[str, Any]:
        return asdict(self)


class JobFailedForGood(Exception):
    """Retrying cannot help (host key changed, authentication refused, unknown board or suite)."""


class BoardUnavailable(Exception):
    """The board could not be reached or its run broke off: another attempt may succeed."""


def queue_name(lab: str, board: str) -> str:
    """One procrastinate queue per (lab, board): a worker listens to the boards it serves only,
    so a job for a board nobody serves stays queued instead of failing on the wrong worker."""
    return "%s/%s" % (lab, board)


def execute_board_job(job: BoardJob, paths: Paths, store: Any, make_transport_factory: Callable,
                      on_progress: Callable[[DeviceProgress], None], notify: Callable[[str], None],
                      poll_s: float = 0.5) -> DeviceOutcome:
    """Run (or resume) ``job`` and return the board's outcome. Raises :class:`JobFailedForGood`
    or :class:`BoardUnavailable` when the board's part of the run did not finish."""
    from ..config.yaml_lines import ConfigError
    from ..farm.deploy import build_runner

    try:
        inventory = load_devices(paths.devices_file)
        device = inventory.get(job.board)
        suite = find_suite(job.suite, paths.suites_dir)
    except ConfigError as exc:
        raise JobFailedForGood(str(exc)) from None
    if suite.config.accuracy is not None:
        raise JobFailedForGood("suite %s measures accuracy: run it with `bench run` (the queue does not "
                               "score lm-eval tasks yet)" % suite.name)
    plans = plan_run(suite, [device], inventory, paths, notify=notify, run_id=job.run_id)
    if job.variant:
        for plan in plans:
            plan.spec.models = [m for m in plan.spec.models if m.variant == job.variant]
            if not plan.spec.models:
                raise JobFailedForGood("board %s has no model variant %r (%s)" % (
                    job.board, job.variant, ", ".join(m.variant for m in device.models) or "none"))
    store.ensure_run(RunRecord(
        run_id=job.run_id, created_at="", suite=suite.name, devices=list(job.devices) or [job.board],
        status="running", controller_commit=plans[0].spec.controller.get("git_commit", ""), tags=list(job.tags),
        info={"suite_file": str(suite.path), "controller_version": __version__, "lab": job.lab,
              "submission": job.submission},
    ))
    resume = any(s.device == job.board for s in store.device_states(job.run_id))
    if resume:
        notify("run %s on %s was started before: resuming it" % (job.run_id, job.board))
    outcome = run_plans(plans, store, build_runner(), make_transport_factory(paths, inventory), on_progress,
                        resume=resume, poll_s=poll_s, mirror_dir=Path(paths.results_dir) / "pulled")[0]
    _finish_run_when_complete(store, job)
    if outcome.state != "finished":
        message = "%s: %s" % (job.board, outcome.error or "failed")
        if getattr(outcome, "retryable", True):
            raise BoardUnavailable(message)
        raise JobFailedForGood(message)
    return outcome


def _finish_run_when_complete(store: Any, job: BoardJob) -> None:
    """The run is over when every board of the submission has finished or failed."""
    states = {s.device: s.state for s in store.device_states(job.run_id)}
    boards = list(job.devices) or [job.board]
    if all(states.get(b) in ("finished", "failed") for b in boards):
        store.finish_run(job.run_id, "finished" if all(states[b] == "finished" for b in boards) else "failed")
