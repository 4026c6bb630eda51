"""What else used the machine during one repetition: load average, other processes' CPU time, steal.

A timing taken while another process competes for the cores is slower for reasons that have
nothing to do with the model or the board. The runner takes a :class:`ProcSnapshot` just before and
just after each repetition and stores :func:`interference` (the difference) in the measurement's
provenance under ``interference``, so a report can say which repetitions were disturbed instead of
silently averaging them in.

What is read (Linux /proc; elsewhere the record says ``available: false`` and why):

- ``/proc/loadavg``: the 1-minute load average at the end of the repetition (smoothed over a
  minute and counting our own threads, so it is context, not the flag).
- ``/proc/[pid]/stat`` of every process except the runner and its descendants: utime + stime.
  ``other_cpu_s`` is the sum of their increases during the repetition (a process that started
  during it counts from zero; one that exited during it is lost to this sum, /proc keeps no trace).
- ``/proc/[pid]/schedstat``: the first field is the CPU time of the process's main thread in
  nanoseconds. utime + stime count the whole process but only in clock ticks (10 ms at the usual
  100 Hz), so a repetition of a few milliseconds sees 0 or 1 tick per process, whatever the load.
  Each process counts with the larger of its two deltas: the ticks for a process whose other
  threads worked, the nanoseconds for a short repetition (kernels without CONFIG_SCHED_INFO have no
  schedstat file; the ticks alone are then used and ``resolution`` says so).
- ``/proc/stat``'s aggregate ``cpu`` line: ``steal_share``, the share of all CPU time the
  hypervisor gave to other guests (0 on bare metal; absent on kernels without the field).

A repetition is ``disturbed`` when other processes used at least :data:`DISTURBED_OTHER_CPU_SHARE`
of the machine's CPU capacity during it (``other_cpu_s / (wall_s * cpu_count)``), or when steal
reached :data:`DISTURBED_STEAL_SHARE`. Standard library only, Python >= 3.8: this ships to boards.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Set, Tuple

# Other processes took a tenth of every core's time (on a 2-core machine, a fifth of one core):
# far above an idle OS's housekeeping (well under 1%), well below one busy loop (1/cpu_count).
DISTURBED_OTHER_CPU_SHARE = 0.10
# A virtual machine whose host gave 5% of the time to other guests is not measuring our code alone.
DISTURBED_STEAL_SHARE = 0.05

PROC = "/proc"


@dataclass
class ProcSnapshot:
    """One reading of /proc: monotonic time, per-process CPU ticks, the aggregate cpu line."""

    t_ns: int
    cpu_ticks: Dict[Tuple[int, int], int] = field(default_factory=dict)  # (pid, starttime) -> utime+stime
    main_thread_ns: Dict[Tuple[int, int], int] = field(default_factory=dict)  # (pid, starttime) -> schedstat run ns
    own: Set[int] = field(default_factory=set)  # the runner and its descendants at this moment
    comms: Dict[int, str] = field(default_factory=dict)  # pid -> command name, for people
    stat_cpu: Tuple[int, ...] = ()  # /proc/stat "cpu" fields: user nice system idle iowait irq softirq steal
    loadavg: Optional[Tuple[float, float, float]] = None
    error: str = ""


def parse_pid_stat(text: str) -> Optional[Tuple[int, int, int, int]]:
    """(ppid, utime, stime, starttime) from a /proc/[pid]/stat line; None when malformed.

    The command name (field 2) is in parentheses and may itself contain spaces and ')', so the
    fields after it are split at the LAST ')'.
    """
    close = text.rfind(")")
    if close < 0:
        return None
    rest = text[close + 1:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22
    if len(rest) < 20:
        return None
    try:
        return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19])
    except ValueError:
        return None


def parse_schedstat(text: str) -> Optional[int]:
    """Nanoseconds on a CPU from a /proc/[pid]/schedstat line ("run_ns wait_ns timeslices"); None
    when malformed."""
    parts = text.split()
    if len(parts) != 3:
        return None
    try:
        values = [int(p) for p in parts]
    except ValueError:
        return None
    return values[0] if min(values) >= 0 else None


def parse_stat_cpu(text: str) -> Tuple[int, ...]:
    """The aggregate ``cpu`` line of /proc/stat as integers (empty when absent or malformed)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                return tuple(int(p) for p in parts[1:])
            except ValueError:
                return ()
    return ()


def parse_loadavg(text: str) -> Optional[Tuple[float, float, float]]:
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        return None


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None  # the process exited between listdir and open, or /proc is not there


def _descendants(root: int, parents: Dict[int, int]) -> Set[int]:
    own = {root}
    changed = True
    while changed:  # a few passes: the process tree of a runner is shallow
        changed = False
        for pid, ppid in parents.items():
            if ppid in own and pid not in own:
                own.add(pid)
                changed = True
    return own


def take_snapshot(proc: str = PROC, self_pid: Optional[int] = None) -> ProcSnapshot:
    """Read /proc now. Never raises: an unreadable /proc gives a snapshot with ``error`` set."""
    snap = ProcSnapshot(t_ns=time.perf_counter_ns())
    try:
        names = os.listdir(proc)
    except OSError as exc:
        snap.error = "cannot list %s: %s" % (proc, exc)
        return snap
    parents: Dict[int, int] = {}
    ticks: Dict[int, Tuple[int, int]] = {}
    run_ns: Dict[int, int] = {}
    comms: Dict[int, str] = {}
    for name in names:
        if not name.isdigit():
            continue
        text = _read(os.path.join(proc, name, "stat"))
        parsed = parse_pid_stat(text) if text else None
        if parsed is None:
            continue
        ppid, utime, stime, start = parsed
        pid = int(name)
        parents[pid] = ppid
        ticks[pid] = (start, utime + stime)
        sched = _read(os.path.join(proc, name, "schedstat"))
        nanoseconds = parse_schedstat(sched) if sched else None
        if nanoseconds is not None:
            run_ns[pid] = nanoseconds
        comms[pid] = text[text.find("(") + 1:text.rfind(")")][:32] if text else ""
    if not parents:
        snap.error = "no readable process in %s" % proc
    snap.own = _descendants(os.getpid() if self_pid is None else self_pid, parents)
    snap.cpu_ticks = {(pid, start): total for pid, (start, total) in ticks.items()}
    snap.main_thread_ns = {(pid, ticks[pid][0]): ns for pid, ns in run_ns.items()}
    snap.comms = comms
    snap.stat_cpu = parse_stat_cpu(_read(os.path.join(proc, "stat")) or "")
    snap.loadavg = parse_loadavg(_read(os.path.join(proc, "loadavg")) or "")
    return snap


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, ValueError, OSError):
        return 100


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def interference(before: ProcSnapshot, after: ProcSnapshot, cpu_count: Optional[int] = None,
                 clock_ticks: Optional[int] = None) -> Dict[str, Any]:
    """What other processes used between two snapshots, and whether that disturbs a timing."""
    if before.error or after.error:
        return {"available": False, "reason": before.error or after.error}
    hz = clock_ticks or _clock_ticks()
    cpus = cpu_count or _cpu_count()
    wall_s = max((after.t_ns - before.t_ns) / 1e9, 1e-9)
    own = before.own | after.own
    other_cpu_s = 0.0
    busiest: Dict[int, float] = {}
    for key, total in after.cpu_ticks.items():
        pid = key[0]
        if pid in own:
            continue
        # a new process (or a reused pid: another starttime) counts from 0
        from_ticks = (total - before.cpu_ticks.get(key, 0)) / float(hz)
        from_ns = 0.0
        if key in after.main_thread_ns:
            from_ns = (after.main_thread_ns[key] - before.main_thread_ns.get(key, 0)) / 1e9
        used_s = max(from_ticks, from_ns)
        if used_s > 0:
            other_cpu_s += used_s
            busiest[pid] = used_s
    precise = bool(after.main_thread_ns)
    out: Dict[str, Any] = {
        "available": True,
        "wall_s": round(wall_s, 4),
        "cpu_count": cpus,
        "other_cpu_s": round(other_cpu_s, 3),
        "other_cpu_share": round(other_cpu_s / (wall_s * cpus), 4),
        "load_avg_1m": after.loadavg[0] if after.loadavg else None,
        # the three busiest others, so a reader can tell a compiler from a browser
        "busiest_other": [{"pid": pid, "name": after.comms.get(pid, ""), "cpu_s": round(used, 3)}
                          for pid, used in sorted(busiest.items(), key=lambda kv: -kv[1])[:3]],
        "resolution": ("per process: clock ticks of %.0f ms, nanoseconds for its main thread (schedstat)" % (1e3 / hz)
                       if precise else "per process: clock ticks of %.0f ms (no schedstat on this kernel)" % (1e3 / hz)),
        "steal_share": steal_share(before.stat_cpu, after.stat_cpu),
    }
    reasons = []
    if out["other_cpu_share"] >= DISTURBED_OTHER_CPU_SHARE:
        reasons.append("other processes used %.0f%% of the CPU" % (100 * out["other_cpu_share"]))
    if out["steal_share"] is not None and out["steal_share"] >= DISTURBED_STEAL_SHARE:
        reasons.append("CPU steal %.0f%%" % (100 * out["steal_share"]))
    out["disturbed"] = bool(reasons)
    out["reasons"] = reasons
    out["thresholds"] = {"other_cpu_share": DISTURBED_OTHER_CPU_SHARE, "steal_share": DISTURBED_STEAL_SHARE}
    return out


def steal_share(before: Iterable[int], after: Iterable[int]) -> Optional[float]:
    """Steal ticks / all ticks between two /proc/stat cpu lines; None without a steal field (8th)."""
    a, b = tuple(before), tuple(after)
    if len(a) < 8 or len(b) < 8:
        return None
    # guest and guest_nice (fields 9-10) are already counted in user and nice: leave them out
    total = sum(b[:8]) - sum(a[:8])
    if total <= 0:
        return 0.0
    return round(max(b[7] - a[7], 0) / float(total), 4)
