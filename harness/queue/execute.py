"""One queue job: a suite on one board, through the controller path, into the shared store.

The job carries its run id (chosen at submit time), so a job delivered twice - its worker died,
the stalled-job check handed it to another - continues the same run: the board's device state in
the store says a runner was started, so the controller resumes it (follows the runner if it still
runs, restarts it otherwise; the runner skips repetitions its journal has) and the store keeps
each measurement once, keyed by identity.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import __version__
from ..config.devices import Inventory, load_devices
from ..config.suites import find_suite
from ..farm.controller import DeviceOutcome, DeviceProgress, run_plans
from ..plan import Paths, plan_run
from ..store import RunRecord

TASK_RUN_BOARD = "bench.run_board"


class JobInputs:
    """What every job of one worker reads alike, prepared once instead of per job: the devices file
    (parsed again only when it changed on disk: a 10,000-board inventory takes seconds to parse)
    and the runner artifact (built once: a worker's own code does not change while it runs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inventory: Optional[Tuple[Tuple[str, int, int, int, int], Inventory]] = None
        self._runner: Any = None

    def inventory(self, path: Path) -> Inventory:
        try:
            stat = os.stat(path)
        except OSError:
            return load_devices(Path(path))  # says what is wrong with the file, as `bench run` does
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with self._lock:
            if self._inventory is not None and self._inventory[0] == key:
                return self._inventory[1]
            inventory = load_devices(Path(path))  # a ConfigError is raised, never kept
            self._inventory = (key, inventory)
            return inventory

    def runner(self) -> Any:
        from ..farm.deploy import build_runner

        with self._lock:
            if self._runner is None:
                self._runner = build_runner()
            return self._runner


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


@dataclass
class BoardJobResult:
    """The board's outcome and, for a suite with an ``accuracy`` block, its variants' scores."""

    outcome: DeviceOutcome
    accuracy: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for `bench queue`: what was stored, and each variant's accuracy."""
        text = "%d measurement(s) stored, %d failed" % (self.outcome.stored, self.outcome.errors)
        for item in self.accuracy:
            value = item.get("accuracy")
            text += "; %s %s %s" % (item.get("variant"), item.get("metric"),
                                     "no answers" if value is None else "%.1f%% (n=%s)" % (100 * value, item.get("n")))
        return text


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
                      poll_s: float = 0.5, inputs: Optional[JobInputs] = None) -> BoardJobResult:
    """Run (or resume) ``job`` and return the board's outcome (and, for an accuracy suite, each
    variant's score, stored as `bench run` stores it). Raises :class:`JobFailedForGood` or
    :class:`BoardUnavailable` when the board's part of the run did not finish."""
    from ..config.yaml_lines import ConfigError

    inputs = inputs if inputs is not None else JobInputs()
    try:
        inventory = inputs.inventory(paths.devices_file)
        device = inventory.get(job.board)
        suite = find_suite(job.suite, paths.suites_dir)
    except ConfigError as exc:
        raise JobFailedForGood(str(exc)) from None
    plans = plan_run(suite, [device], inventory, paths, notify=notify, run_id=job.run_id)
    if job.variant:
        for plan in plans:
            plan.spec.models = [m for m in plan.spec.models if m.variant == job.variant]
            if not plan.spec.models:
                raise JobFailedForGood("board %s has no model variant %r (%s)" % (
                    job.board, job.variant, ", ".join(m.variant for m in device.models) or "none"))
    session = _prepare_accuracy(suite, plans)
    store.ensure_run(RunRecord(
        run_id=job.run_id, created_at="", suite=suite.name, devices=list(job.devices) or [job.board],
        status="running", controller_commit=plans[0].spec.controller.get("git_commit", ""), tags=list(job.tags),
        info={"suite_file": str(suite.path), "controller_version": __version__, "lab": job.lab,
              "submission": job.submission},
    ))
    resume = any(s.device == job.board for s in store.device_states(job.run_id))
    if resume:
        notify("run %s on %s was started before: resuming it" % (job.run_id, job.board))
    outcome = run_plans(plans, store, inputs.runner(), make_transport_factory(paths, inventory), on_progress,
                        resume=resume, poll_s=poll_s, mirror_dir=Path(paths.results_dir) / "pulled")[0]
    if outcome.state != "finished":
        _finish_run_when_complete(store, job)
        message = "%s: %s" % (job.board, outcome.error or "failed")
        if getattr(outcome, "retryable", True):
            raise BoardUnavailable(message)
        raise JobFailedForGood(message)
    accuracy: List[Dict[str, Any]] = []
    if session is not None:
        from ..eval.suite import score

        # this job's board only (the session was prepared from its plan); a re-delivered job
        # scores again from the re-pulled journal and the store replaces the rows, keyed by identity
        accuracy = score(session, job.run_id, Path(paths.results_dir), notify=notify, store=store)
    _finish_run_when_complete(store, job)
    return BoardJobResult(outcome=outcome, accuracy=accuracy)


def _prepare_accuracy(suite: Any, plans: List[Any]) -> Any:
    """lm-eval's requests attached to the board's plan, as `bench run` does; None for a suite
    without an ``accuracy`` block."""
    if suite.config.accuracy is None:
        return None
    from ..config.yaml_lines import ConfigError
    from ..errors import install_hint

    try:
        from ..eval.suite import prepare
    except ImportError as exc:
        raise JobFailedForGood("suite %s measures accuracy with lm-eval (%s); on this worker: %s"
                               % (suite.name, exc, install_hint("eval"))) from None
    try:
        return prepare(suite, suite.config.accuracy, plans)
    except ConfigError as exc:
        raise JobFailedForGood(str(exc)) from None
    except ValueError as exc:
        raise JobFailedForGood("suite %s: %s" % (suite.path, exc)) from None


def _finish_run_when_complete(store: Any, job: BoardJob) -> None:
    """The run is over when every board of the submission has finished or failed."""
    states = {s.device: s.state for s in store.device_states(job.run_id)}
    boards = list(job.devices) or [job.board]
    if all(states.get(b) in ("finished", "failed") for b in boards):
        store.finish_run(job.run_id, "finished" if all(states[b] == "finished" for b in boards) else "failed")
