"""Who used the host's CPU during a benchmark round: our worker processes (the controller), the
emulated boards (their sshd sessions, runners and engines), PostgreSQL, and the rest.

The kernel keeps the books; this module only reads them:

- the benchmark makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so the processes it
  starts that daemonise (sshd, the PostgreSQL postmaster) and the runners the boards start
  detached (setsid, their shell gone) are re-parented to it when their parents exit;
- a reaper thread collects every child that exits with wait4(), which returns that process's
  own user+system time (and that of the children it waited for): a worker pid counts for the
  controller, anything else (runners and their engines) for the boards;
- long-lived daemons (each board's sshd, the postmaster) are read from /proc/PID/stat: their
  own time plus the time of the children they reaped (sessions, backends), as deltas over the
  round;
- the whole host's busy time from /proc/stat.

Linux only (prctl, /proc). The figures are CPU-seconds, not shares of a core.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set

PR_SET_CHILD_SUBREAPER = 36
_TICK = os.sysconf("SC_CLK_TCK")


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def host_busy_s() -> float:
    """CPU-seconds the host spent not idle (all cores), since boot."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    busy = sum(values[:8]) - values[3] - values[4]  # idle and iowait are not busy
    return busy / _TICK


def process_cpu_s(pid: int) -> float:
    """A live process's own CPU-seconds plus those of the children it has reaped; 0 when gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return 0.0
    fields = raw[raw.rfind(")") + 2:].split()
    return sum(int(v) for v in fields[11:15]) / _TICK  # utime, stime, cutime, cstime


@dataclass
class Split:
    wall_s: float = 0.0
    host_s: float = 0.0
    controller_s: float = 0.0
    boards_s: float = 0.0
    database_s: float = 0.0

    @property
    def other_s(self) -> float:
        return max(0.0, self.host_s - self.controller_s - self.boards_s - self.database_s)


class Reaper:
    """While a round runs: reaps every child of this process that exits and sorts its CPU time into
    the controller's (a worker pid) and the boards' (the orphaned runners re-parented here). It
    runs only during rounds, so no setup code's subprocess.run() has its child taken from it."""

    def __init__(self, controller_pids: Iterable[int]) -> None:
        self.controller_pids = set(controller_pids)
        self.controller_s = 0.0
        self.orphans_s = 0.0
        self.exited: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._reap_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._reap_all():
                time.sleep(0.02)

    def _reap_all(self) -> bool:
        reaped = False
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            reaped = True
            cpu = usage.ru_utime + usage.ru_stime  # the process and the children it waited for
            with self._lock:
                if pid in self.controller_pids:
                    self.controller_s += cpu
                    self.exited[pid] = os.waitstatus_to_exitcode(status)
                else:
                    self.orphans_s += cpu

    def wait_for_controller(self, timeout_s: float) -> Dict[int, int]:
        """Exit codes of the controller processes once all have exited."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self.controller_pids <= set(self.exited):
                    return dict(self.exited)
            if time.monotonic() > deadline:
                raise TimeoutError("workers %s still running after %.0f s"
                                   % (sorted(self.controller_pids - set(self.exited)), timeout_s))
            time.sleep(0.05)


def children_alive(exclude: Iterable[int]) -> List[int]:
    """This process's live children (the re-parented runners among them), but ``exclude``."""
    me, skip, found = os.getpid(), set(exclude), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                raw = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry))
    return found


class Books:
    """One round's books: :meth:`open` before the workers start, :meth:`close` after they exit
    (it waits up to ``grace_s`` for the boards' last runners to exit and be reaped)."""

    def __init__(self, board_daemons: List[int], database_daemons: List[int]) -> None:
        self.board_daemons = board_daemons
        self.database_daemons = database_daemons
        self.reaper: Optional[Reaper] = None

    def open(self) -> None:
        self._t0 = time.monotonic()
        self._host0 = host_busy_s()
        self._boards0 = sum(process_cpu_s(p) for p in self.board_daemons)
        self._db0 = sum(process_cpu_s(p) for p in self.database_daemons)

    def watch(self, controller_pids: Iterable[int]) -> Reaper:
        self.reaper = Reaper(controller_pids)
        return self.reaper

    def close(self, grace_s: float = 5.0) -> Split:
        assert self.reaper is not None, "watch() the workers first"
        wall = time.monotonic() - self._t0
        deadline = time.monotonic() + grace_s
        daemons = self.board_daemons + self.database_daemons
        while children_alive(daemons) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.reaper.stop()
        return Split(
            wall_s=wall,
            host_s=host_busy_s() - self._host0,
            controller_s=self.reaper.controller_s,
            boards_s=self.reaper.orphans_s + sum(process_cpu_s(p) for p in self.board_daemons) - self._boards0,
            database_s=sum(process_cpu_s(p) for p in self.database_daemons) - self._db0,
        )
