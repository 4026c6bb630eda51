"""Board leases: at most one controller benchmarks a board at a time.

The lease is a JSON file ``WORKDIR/lease.json`` on the board. Every change to it is a
compare-and-swap done by a small shell script under ``flock`` on ``WORKDIR/.lease.lock``: the
script replaces the file only if the ``lease_id`` currently in it is the one the caller saw.
flock (not a lock *file*) is what makes this safe: the kernel releases it when the script exits,
however it exits, so no stale mutex can ever be left behind; a stale *lease* is handled by its
expiry instead. Two controllers racing for a free or an expired lease both send a CAS from the same
starting point and the board serialises them: exactly one finds the id it expected.

All times are the board's wall clock (epoch seconds, read by the same script), so controllers
whose clocks disagree still agree on whether a lease has expired.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Optional, Tuple

from ..errors import FailedError
from .transport import Transport, TransportError

LEASE_FILE = "lease.json"
#: the run id `bench devices lock` leases a board under
MANUAL_LOCK = "manual-lock"

# $1 op (show|put|del|force)  $2 workdir  $3 the lease_id the caller expects ("-" = no lease)
# $4 new content (put). Prints "NOW <epoch>", "TOKEN <lease_id or - >", then the content that is
# current after the call (or, on a mismatch, the content that won: exit 3).
_SCRIPT = r"""
op=$1; dir=$2; expect=$3; new=$4
case $dir in "~") dir=$HOME ;; "~/"*) dir=$HOME/${dir#"~/"} ;; esac
mkdir -p "$dir" && cd "$dir" || exit 70
command -v flock >/dev/null 2>&1 || { echo "flock not found on the board (install util-linux)" >&2; exit 71; }
exec 9>>.lease.lock
flock -x -w 60 9 || { echo "timed out waiting 60 s for the lease mutex $dir/.lease.lock" >&2; exit 72; }
if [ -f lease.json ]; then
  cur=$(cat lease.json)
  tok=$(printf '%s' "$cur" | sed -n 's/.*"lease_id": *"\([^"]*\)".*/\1/p')
else
  cur=""; tok="-"
fi
printf 'NOW %s\n' "$(date +%s)"
case $op in
  show) printf 'TOKEN %s\n%s' "$tok" "$cur"; exit 0 ;;
  force) rm -f lease.json; printf 'TOKEN %s\n%s' "$tok" "$cur"; exit 0 ;;
  take)  # $3 ttl seconds, $4 our lease JSON with @NOW@ and @EXP@ for the board's clock
    now=$(date +%s)
    exp=$(printf '%s' "$cur" | sed -n 's/.*"expires_at": *\([0-9.eE+-]*\).*/\1/p')
    if [ -n "$exp" ] && awk -v e="$exp" -v n="$now" 'BEGIN { exit !(e > n) }'; then
      printf 'TOKEN %s\n%s' "$tok" "$cur"; exit 3
    fi
    end=$(awk -v n="$now" -v t="$expect" 'BEGIN { printf "%.3f", n + t }')
    mine=$(printf '%s' "$new" | sed "s/@NOW@/$now/; s/@EXP@/$end/")
    printf '%s' "$mine" > .lease.json.$$ && mv -f .lease.json.$$ lease.json || exit 70
    printf 'TOKEN %s\n%s\n@@PREVIOUS@@\n%s' \
      "$(printf '%s' "$mine" | sed -n 's/.*"lease_id": *"\([^"]*\)".*/\1/p')" "$mine" "$cur"
    exit 0 ;;
esac
if [ "$tok" != "$expect" ]; then printf 'TOKEN %s\n%s' "$tok" "$cur"; exit 3; fi
case $op in
  put) printf '%s' "$new" > .lease.json.$$ && mv -f .lease.json.$$ lease.json || exit 70
       printf 'TOKEN %s\n%s' "$(printf '%s' "$new" | sed -n 's/.*"lease_id": *"\([^"]*\)".*/\1/p')" "$new" ;;
  del) rm -f lease.json; printf 'TOKEN -\n' ;;
  *) echo "unknown lease operation $op" >&2; exit 70 ;;
esac
"""


class LeaseError(FailedError, RuntimeError):
    """A lease operation failed; the message says why and what to do."""


class LeaseHeld(LeaseError):
    """Someone else holds a live lease on the board."""

    def __init__(self, message: str, holder: "LeaseInfo") -> None:
        super().__init__(message)
        self.holder = holder


class LeaseNotOwned(LeaseError):
    """We tried to renew or release a lease that is no longer ours (expired and taken over,
    or force-unlocked)."""


@dataclass(frozen=True)
class LeaseOwner:
    user: str
    host: str
    pid: int
    run_id: str

    @classmethod
    def current(cls, run_id: str) -> "LeaseOwner":
        """This controller process, for the given run."""
        return cls(getpass.getuser(), socket.gethostname(), os.getpid(), run_id)


@dataclass(frozen=True)
class LeaseInfo:
    """What lease.json holds."""

    lease_id: str
    user: str
    host: str
    pid: int
    run_id: str
    acquired_at: float  # board wall clock, epoch seconds
    expires_at: float

    @property
    def owner(self) -> LeaseOwner:
        return LeaseOwner(self.user, self.host, self.pid, self.run_id)

    def holder(self) -> str:
        return "%s@%s pid %d run %s" % (self.user, self.host, self.pid, self.run_id)

    def to_json(self) -> str:
        # one line, fixed key spelling: the board-side script finds lease_id with sed
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Optional["LeaseInfo"]:
        try:
            data = json.loads(text)
            return cls(
                lease_id=str(data["lease_id"]), user=str(data["user"]), host=str(data["host"]),
                pid=int(data["pid"]), run_id=str(data["run_id"]),
                acquired_at=float(data["acquired_at"]), expires_at=float(data["expires_at"]),
            )
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError):  # the board's file: anything
            return None


@dataclass
class _State:
    board_now: float  # the board's clock when the script ran ...
    seen_at: float  # ... and our monotonic clock when its answer arrived
    token: str  # lease_id in the file, "-" when there is no file, "" when it has none
    raw: str
    info: Optional[LeaseInfo]

    def now(self) -> float:
        """The board's clock now, extrapolated with our monotonic clock."""
        return self.board_now + (time.monotonic() - self.seen_at)


def _call(transport: Transport, workdir: str, op: str, expect: str = "-", new: str = "",
          timeout_s: float = 90.0) -> Tuple[bool, _State]:
    result = transport.run(["sh", "-c", _SCRIPT, "sh", op, workdir, expect, new], timeout_s=timeout_s)
    if result.exit_code not in (0, 3):
        raise LeaseError("%s: lease %s in %s failed (exit %d): %s" % (
            transport.name, op, workdir, result.exit_code,
            result.stderr.decode("utf-8", errors="replace").strip()[-500:]))
    text = result.stdout.decode("utf-8", errors="replace")
    first, _, rest = text.partition("\n")
    second, _, raw = rest.partition("\n")
    if not first.startswith("NOW ") or not second.startswith("TOKEN "):
        raise LeaseError(
            "%s: unexpected answer from the lease script: %r" % (transport.name, text[:200]))
    state = _State(float(first[4:]), time.monotonic(), second[6:].strip(), raw,
                   LeaseInfo.from_json(raw) if raw.strip() else None)
    return result.exit_code == 0, state


def _held_message(name: str, holder: LeaseInfo, now: float, waited_s: Optional[float]) -> str:
    waited = " after waiting %.0f s" % waited_s if waited_s is not None else ""
    if holder.run_id == MANUAL_LOCK:
        return (
            "%s is locked by hand%s (`bench devices lock`) by %s@%s (acquired %.0f s ago, expires in %.0f s); "
            "--wait waits for the board; `bench devices unlock %s` releases it (--force for someone else's)"
            % (name, waited, holder.user, holder.host, max(0.0, now - holder.acquired_at),
               max(0.0, holder.expires_at - now), name)
        )
    # the run comes first: an interrupted run is continued (and its lease taken back) by resuming
    # it, not by breaking the lock
    return (
        "%s is leased%s by run %s (%s@%s pid %d, acquired %.0f s ago, expires in %.0f s); if that run "
        "was interrupted or its controller is gone, `bench run --resume %s` continues it; --wait waits "
        "for the board; `bench devices unlock %s --force` frees it"
        % (name, waited, holder.run_id, holder.user, holder.host, holder.pid, max(0.0, now - holder.acquired_at),
           max(0.0, holder.expires_at - now), holder.run_id, name)
    )


@dataclass
class Lease:
    """A lease we hold. Renew it before ``expires_at`` on long runs; release it when done."""

    transport: Transport
    workdir: str
    info: LeaseInfo
    took_over: Optional[LeaseInfo] = None  # the expired lease this one replaced, if any
    timeout_s: float = 90.0

    def renew(self, ttl_s: float) -> None:
        """Push the expiry to (board now + ttl_s); LeaseNotOwned if the lease is no longer ours."""
        ok, state = _call(self.transport, self.workdir, "show", timeout_s=self.timeout_s)
        if ok and state.token == self.info.lease_id:
            updated = replace(self.info, expires_at=state.now() + ttl_s)
            ok, state = _call(self.transport, self.workdir, "put", self.info.lease_id,
                              updated.to_json(), timeout_s=self.timeout_s)
            if ok:
                self.info = updated
                return
        raise LeaseNotOwned(self._lost_message("renew", state))

    def release(self) -> None:
        """Remove the lease if it is still ours; LeaseNotOwned (nothing removed) otherwise."""
        ok, state = _call(self.transport, self.workdir, "del", self.info.lease_id,
                          timeout_s=self.timeout_s)
        if not ok:
            raise LeaseNotOwned(self._lost_message("release", state))

    def _lost_message(self, what: str, state: _State) -> str:
        now_holder = state.info.holder() if state.info else "nobody"
        return (
            "cannot %s the lease on %s: it is no longer ours (we were %s, lease %s); it is now held "
            "by %s - it expired and was taken over, or was force-unlocked"
            % (what, self.transport.name, self.info.holder(), self.info.lease_id[:8], now_holder)
        )

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        except (LeaseError, TransportError):
            pass  # the with-body's own exception (if any) matters more than a lost lease


def acquire(
    transport: Transport,
    workdir: str,
    owner: LeaseOwner,
    ttl_s: float,
    wait: bool = False,
    wait_timeout_s: Optional[float] = None,
    poll_s: float = 5.0,
    timeout_s: float = 90.0,
) -> Lease:
    """Take the board's lease for ttl_s seconds. A live lease held by anyone (including another
    run of ours) raises LeaseHeld naming the holder, or with ``wait`` is polled every poll_s
    until free or wait_timeout_s (None: forever). An expired lease is taken over."""
    started = time.monotonic()
    while True:
        # one remote command: under the board's lock, take the lease if it is free, expired or
        # unreadable (we write atomically, so garbage is nobody's lease), else report the holder
        ok, state, mine, previous = _take(transport, workdir, owner, ttl_s, timeout_s)
        if ok and mine is not None:
            return Lease(transport, workdir, mine, took_over=previous, timeout_s=timeout_s)
        holder = state.info
        if holder is None:
            raise LeaseError("%s: the lease script refused without naming a holder: %r"
                             % (transport.name, state.raw[:200]))
        waited = time.monotonic() - started
        remaining = poll_s if wait_timeout_s is None else wait_timeout_s - waited
        if not wait or remaining <= 0:
            raise LeaseHeld(_held_message(transport.name, holder, state.now(),
                                          waited if wait else None), holder)
        # wake at the next poll, or just after the holder's expiry if that comes first
        time.sleep(max(0.05, min(poll_s, remaining, holder.expires_at - state.now() + 0.05)))


_PREVIOUS = "\n@@PREVIOUS@@\n"


def _take(transport: Transport, workdir: str, owner: LeaseOwner, ttl_s: float, timeout_s: float
          ) -> Tuple[bool, _State, Optional[LeaseInfo], Optional[LeaseInfo]]:
    """(taken, state, our lease, the expired lease it replaced)."""
    template = LeaseInfo(uuid.uuid4().hex, owner.user, owner.host, owner.pid, owner.run_id,
                         acquired_at=0.0, expires_at=0.0).to_json()
    template = template.replace('"acquired_at": 0.0', '"acquired_at": @NOW@').replace(
        '"expires_at": 0.0', '"expires_at": @EXP@')
    ok, state = _call(transport, workdir, "take", "%.3f" % ttl_s, template, timeout_s=timeout_s)
    if not ok:
        return False, state, None, None
    mine_raw, _, previous_raw = state.raw.partition(_PREVIOUS)
    mine = LeaseInfo.from_json(mine_raw)
    if mine is None:
        raise LeaseError("%s: unexpected lease written by the board: %r" % (transport.name, mine_raw[:200]))
    previous = LeaseInfo.from_json(previous_raw) if previous_raw.strip() else None
    return True, state, mine, previous


def take_over(transport: Transport, workdir: str, held: LeaseInfo, owner: LeaseOwner, ttl_s: float,
              timeout_s: float = 90.0) -> Lease:
    """Replace the live lease ``held`` (our own run's, left by a controller that is gone) with ours,
    by compare-and-swap: if anyone changed the lease since ``held`` was read, LeaseHeld names them
    and nothing is replaced."""
    if held.run_id != owner.run_id:
        raise LeaseError("%s: refusing to take over the lease of run %s for run %s"
                         % (transport.name, held.run_id, owner.run_id))
    _, state = _call(transport, workdir, "show", timeout_s=timeout_s)
    now = state.now()
    mine = LeaseInfo(uuid.uuid4().hex, owner.user, owner.host, owner.pid, owner.run_id,
                     acquired_at=now, expires_at=now + ttl_s)
    ok, state = _call(transport, workdir, "put", held.lease_id, mine.to_json(), timeout_s=timeout_s)
    if not ok:
        if state.info is None:
            raise LeaseError("%s: the lease of run %s vanished while taking it over; run again"
                             % (transport.name, held.run_id))
        raise LeaseHeld(_held_message(transport.name, state.info, state.now(), None), state.info)
    return Lease(transport, workdir, mine, took_over=held, timeout_s=timeout_s)


def read_lease(
    transport: Transport, workdir: str, timeout_s: float = 90.0
) -> Tuple[Optional[LeaseInfo], float]:
    """The lease on the board (None when free) and the board's clock, for `bench devices lock`."""
    _, state = _call(transport, workdir, "show", timeout_s=timeout_s)
    return state.info, state.board_now


def force_unlock(transport: Transport, workdir: str, timeout_s: float = 90.0) -> Optional[LeaseInfo]:
    """Remove any lease (``bench devices unlock --force``); returns the one removed. The
    controller that held it finds out at its next renew or release (LeaseNotOwned)."""
    _, state = _call(transport, workdir, "force", timeout_s=timeout_s)
    return state.info
