"""Is a run's controller still there? A stored run says ``running`` until its controller says
otherwise; a controller that was killed (SIGKILL, a crashed machine) never says anything.

While it runs, the controller writes its identity (host, pid, the pid's start time) and a heartbeat
(epoch seconds, every :data:`HEARTBEAT_INTERVAL_S`) into its runs row. A reader then judges a
``running`` run as ``abandoned`` when

- the controller ran on this host and that process is gone (or the pid now belongs to a process
  started at another time: pids are reused) - on its own host the process table decides, or
- it ran on another host and its heartbeat is older than :data:`STALE_AFTER_S`.

Rows without a controller identity (written before schema 3, or by library code that never
heartbeats) keep their stored status: nothing can be said about them.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Dict, Mapping, Optional

HEARTBEAT_INTERVAL_S = 5.0
# well above the interval: a controller busy storing a large pull, or a loaded machine, must not
# be declared dead
STALE_AFTER_S = 60.0

INTERRUPTED = "interrupted"
ABANDONED = "abandoned"
#: runs that stopped before their end: history and regressions leave them out unless asked
INCOMPLETE_STATUSES = (INTERRUPTED, ABANDONED)


def process_start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        with open("/proc/%d/stat" % pid, "r") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and parentheses
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def controller_identity(pid: Optional[int] = None) -> Dict[str, Any]:
    """This process as a run's controller: host, pid and the pid's start time."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "pid_start": process_start_ticks(pid)}


def _process_is(pid: int, start_ticks: Optional[int]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    now_ticks = process_start_ticks(pid)
    if now_ticks is None:
        return True  # no /proc to tell: trust the pid
    if start_ticks is not None and now_ticks != start_ticks:
        return False  # the pid was reused by a later process
    try:  # a zombie has exited
        with open("/proc/%d/stat" % pid, "r") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def effective_status(status: str, heartbeat_at: Optional[float], controller: Mapping[str, Any],
                     now: Optional[float] = None, host: Optional[str] = None) -> str:
    """``status``, except that a ``running`` run whose controller is gone is ``abandoned``."""
    if status != "running" or not controller:
        return status
    now = time.time() if now is None else now
    host = socket.gethostname() if host is None else host
    pid = controller.get("pid")
    if controller.get("host") == host and isinstance(pid, int) and pid > 0:
        # on its own host the process table is the authority: alive (the same process) is running
        return status if _process_is(pid, controller.get("pid_start")) else ABANDONED
    if heartbeat_at is None or now - float(heartbeat_at) > STALE_AFTER_S:
        return ABANDONED
    return status


def describe_controller(heartbeat_at: Optional[float], controller: Mapping[str, Any],
                        now: Optional[float] = None) -> str:
    """"pid 123 on host vm, last heartbeat 4 s ago" for messages."""
    if not controller:
        return "no controller recorded"
    now = time.time() if now is None else now
    beat = "never" if heartbeat_at is None else "%.0f s ago" % max(0.0, now - float(heartbeat_at))
    return "pid %s on host %s, last heartbeat %s" % (controller.get("pid"), controller.get("host"), beat)
