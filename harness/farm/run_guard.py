"""A run's life as the store sees it, while one `bench run` controller follows it.

    guard = RunGuard(store, run_id)
    guard.start(resuming=False)    # claims the run: status running, this controller, a heartbeat
    ...                            # Ctrl-C / SIGTERM here raise RunInterrupted (exit 130 / 143)
    store.finish_run(run_id, "finished")
    guard.close()                  # a run still "running" at this point becomes interrupted or failed

The runners already started on the boards keep going when the controller stops (they are detached,
and they hold their boards' leases); `bench run --resume RUN_ID` follows them again, takes the
leases back and stores what is missing. A controller that is killed outright cannot say anything:
its heartbeat stops and readers judge the run abandoned (see :mod:`harness.store.liveness`).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Dict, Optional

from ..errors import BenchError, UsageError
from ..store.liveness import HEARTBEAT_INTERVAL_S, INTERRUPTED, controller_identity, describe_controller


class RunInterrupted(BenchError):
    """The user stopped the controller (Ctrl-C or SIGTERM); the message says how to continue."""

    def __init__(self, run_id: str, signum: int) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(
            "run %s interrupted (%s) and stored as %s; runners already started keep running on "
            "their boards and hold their leases. Continue it, storing what they measured, with: "
            "bench run --resume %s" % (run_id, name, INTERRUPTED, run_id),
            exit_code=128 + int(signum),
        )
        self.run_id = run_id


class RunStillRunning(UsageError):
    """--resume of a run whose controller is alive: two controllers would follow the same boards."""


class RunGuard:
    """Heartbeat, interrupt handling and the final status of one run (see the module doc)."""

    def __init__(self, store: Any, run_id: str, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.store = store
        self.run_id = run_id
        self.interval_s = interval_s
        self.interrupted: Optional[int] = None  # the signal that stopped us
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._previous: Dict[int, Any] = {}
        self._closed = False

    def start(self, resuming: bool = False) -> None:
        if resuming:
            run = self.store.get_run(self.run_id)
            if run.status == "running" and run.controller:
                raise RunStillRunning(
                    "run %s is still being followed by its controller (%s); resume only an interrupted, "
                    "abandoned or failed run" % (self.run_id, describe_controller(run.heartbeat_at, run.controller)))
        self.store.claim_run(self.run_id, controller_identity())
        self._thread = threading.Thread(target=self._beat, name="heartbeat-%s" % self.run_id, daemon=True)
        self._thread.start()
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.heartbeat(self.run_id)
            except Exception:  # a store hiccup must not kill the run; a stale beat shows up as abandoned
                pass

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.interrupted is not None:
            return  # one is enough: the first is already unwinding the run
        self.interrupted = signum
        raise RunInterrupted(self.run_id, signum)

    def close(self) -> None:
        """Stop beating, restore the signal handlers, and settle a run left "running"."""
        if self._closed:
            return
        self._closed = True
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.store.stored_status(self.run_id) == "running":
            # not finished by the command: stopped by the user, or an error ended it early
            self.store.finish_run(self.run_id, INTERRUPTED if self.interrupted is not None else "failed")
