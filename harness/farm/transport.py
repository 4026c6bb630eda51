"""How the controller reaches a device: one small protocol, a local and an SSH implementation.

Everything the controller does on a board goes through these five calls, so a run, a deploy, a
lease and a health check are written once and work the same on ``local`` and over SSH.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Sequence

from ..errors import FailedError


class TransportError(FailedError, RuntimeError):
    """The device could not be reached or the command could not be run; the message says why."""

    #: worth reconnecting and trying again (a dropped link); False for refusals that will not
    #: change by themselves (host key, authentication)
    retryable = True


class CommandTimeout(TransportError):
    """A command ran past its timeout (it has been killed)."""


class CannotStart(TransportError):
    """The program does not exist or may not be run (a mistyped ``python:``): no retry heals it."""

    retryable = False


class CommandFailed(TransportError):
    """A command ran and exited non-zero: the connection is fine, trying again changes nothing."""

    retryable = False


@dataclass
class CommandResult:
    argv: Sequence[str]
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    def check(self, what: str) -> "CommandResult":
        if self.exit_code != 0:
            detail = self.stderr.decode("utf-8", errors="replace").strip()[-2000:]
            raise CommandFailed("%s failed (exit %d): %s" % (what, self.exit_code, detail))
        return self


class Transport(Protocol):
    """What the controller needs from a device connection."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float,
        stdin: Optional[bytes] = None,
        cwd: Optional[str] = None,
    ) -> CommandResult:
        """Run argv (each argument quoted on the remote side), draining output while waiting."""

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """Write a file atomically (temporary name, then rename); parent directories are made."""

    def read_bytes(self, path: str, offset: int = 0, max_bytes: Optional[int] = None) -> bytes:
        """Read a file from ``offset``; raises FileNotFoundError when it does not exist."""

    def spawn_detached(
        self, argv: Sequence[str], cwd: str, stdout_path: str, stderr_path: str
    ) -> int:
        """Start argv in a new session (its own process group) that outlives this connection;
        returns its pid (= its process group id)."""

    def close(self) -> None:
        """Drop the connection; detached processes keep running."""

    def expand(self, path: str) -> str:
        """The path with a leading ``~`` replaced by the device user's home directory."""


class LocalTransport:
    """The controller's own machine, through subprocess."""

    def __init__(self, name: str = "local") -> None:
        # the device's name from devices.yaml (e.g. local-3b): messages name the device, not the kind
        self.name = name

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float,
        stdin: Optional[bytes] = None,
        cwd: Optional[str] = None,
    ) -> CommandResult:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise CannotStart("%s: cannot start %s: %s" % (self.name, argv[0], exc.strerror or exc)) from exc
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            raise CommandTimeout(
                "%s ran longer than %.0f s and was killed" % (" ".join(argv[:3]), timeout_s)
            ) from None
        return CommandResult(list(argv), proc.returncode, out, err, time.monotonic() - started)

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(".%s.%d.tmp" % (target.name, os.getpid()))
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)

    def read_bytes(self, path: str, offset: int = 0, max_bytes: Optional[int] = None) -> bytes:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read() if max_bytes is None else handle.read(max_bytes)

    def spawn_detached(
        self, argv: Sequence[str], cwd: str, stdout_path: str, stderr_path: str
    ) -> int:
        Path(cwd).mkdir(parents=True, exist_ok=True)
        with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                raise CannotStart("%s: cannot start %s: %s" % (self.name, argv[0], exc.strerror or exc)) from exc
        return proc.pid

    def close(self) -> None:
        """Nothing to drop for the local machine."""

    def expand(self, path: str) -> str:
        return os.path.abspath(os.path.expanduser(path))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_process_group(
    transport: Transport, pgid: int, signal_name: str = "KILL", timeout_s: float = 30.0
) -> bool:
    """Send a signal to process group ``pgid`` on any Transport; True if the group existed.

    Never ``transport.run(["kill", "-9", "-%d" % pgid])``: that execs /usr/bin/kill, and
    procps-ng 4.0.2 (Debian 12) sends such a negative pid's signal to *every* process the user
    may signal (kill(-1)) - as root, the whole machine. The shell's builtin kill is correct.
    """
    if pgid <= 1:
        raise ValueError("refusing to signal process group %d" % pgid)
    if not re.fullmatch(r"[A-Z0-9]+", signal_name):
        raise ValueError("signal name %r: use e.g. KILL, TERM, INT" % signal_name)
    script = "kill -%s -%d 2>/dev/null" % (signal_name, pgid)
    result = transport.run(["sh", "-c", script], timeout_s=timeout_s)
    return result.exit_code == 0


def process_state(transport: Transport, pid: int, timeout_s: float = 30.0) -> Optional[str]:
    """The process's state letter (R, S, D, T, ...) on the board, or None when it is gone (a zombie
    counts as gone: it has finished, only its parent has not collected it yet)."""
    if pid <= 0:
        raise ValueError("pid %d" % pid)
    script = (
        "if [ -r /proc/%d/stat ]; then sed 's/.*) //' /proc/%d/stat | cut -d' ' -f1; "
        "elif kill -0 %d 2>/dev/null; then echo R; fi" % (pid, pid, pid)
    )
    state = transport.run(["sh", "-c", script], timeout_s=timeout_s).text().strip()
    return state if state and state != "Z" else None
