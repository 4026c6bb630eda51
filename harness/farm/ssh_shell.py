"""One long-lived ``sh`` per SSH connection that runs the controller's commands in turn.

Why: sshd starts every exec request through the user's login shell, which reads its rc files
first. On a board whose ``~/.bashrc`` does real work (this machine's root runs ``pyenv init``:
~0.1 s of CPU) every command pays for it, and a run issues several (home, lease, runner hash,
start, release); eight emulated boards sharing two cores paid it forty times at once. One shell
per connection pays it once, and a command costs a fork and an exec on the board again.

Framing: a command's stdout and stderr go to files on the board and come back after a header
line carrying their exact sizes, so any bytes - binary, or lines that look like our own markers -
return unchanged. Before its header the shell prints nothing but our own marker lines, each with
the command's random id, so whatever rc files printed at login is skipped.

A command that runs past its deadline has its process group killed (by the caller, on a fresh
channel) and the shell is discarded, so the next command starts from a clean shell.
"""

from __future__ import annotations

import select
import shlex
import socket
import time
import uuid
from typing import List, Optional, Sequence, Tuple

import paramiko

_CHUNK = 1 << 16

# Read by `sh` from the channel's stdin. Each command runs as a background job so its pid (a
# process group leader once `setsid` has run) is known before it ends; `wait` then gives its exit
# code. Output files live in a private directory removed when the shell exits.
_PRELUDE = r"""
__bench_dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-sh.XXXXXX") || exit 97
trap 'rm -rf "$__bench_dir"' EXIT
trap 'exit 129' HUP INT TERM
__bench_run() {
  __bench_id=$1; shift
  "$@" </dev/null >"$__bench_dir/out" 2>"$__bench_dir/err" &
  __bench_pid=$!
  printf '\n@@bench-started %s %s\n' "$__bench_id" "$__bench_pid"
  wait "$__bench_pid"; __bench_rc=$?
  printf '\n@@bench-done %s %s %s %s\n' "$__bench_id" "$__bench_rc" \
    $(wc -c <"$__bench_dir/out") $(wc -c <"$__bench_dir/err")
  cat "$__bench_dir/out" "$__bench_dir/err"
}
if command -v setsid >/dev/null 2>&1; then __bench_setsid=yes; else __bench_setsid=no; fi
printf '\n@@bench-ready %s %s %s\n' "$1" "$__bench_setsid" "$HOME"
"""


class ShellUnavailable(Exception):
    """The board's shell could not be set up for reuse; callers use one channel per command."""


class ShellLost(Exception):
    """The shell's channel closed or failed mid-command; the connection may be gone too."""


class ShellTimeout(Exception):
    """The command ran past its deadline; ``pgid`` is its process group when it was known."""

    def __init__(self, pgid: Optional[int]) -> None:
        super().__init__(pgid)
        self.pgid = pgid


class ShellSession:
    """A ``sh`` on one open SSH transport. Not thread-safe: the transport serialises use."""

    def __init__(self, transport: paramiko.Transport, ready_timeout_s: float) -> None:
        self._transport = transport
        self._buffer = bytearray()
        token = uuid.uuid4().hex
        try:
            self._chan = transport.open_session(timeout=ready_timeout_s)
            self._chan.exec_command("exec sh -s %s" % token)
            self._send(_PRELUDE.encode("utf-8"), time.monotonic() + ready_timeout_s)
            line = self._line_after(b"\n@@bench-ready %s " % token.encode("ascii"),
                                    time.monotonic() + ready_timeout_s)
        except (ShellLost, ShellTimeout, paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ShellUnavailable("the board's sh did not start: %s" % (exc or type(exc).__name__)) from None
        setsid, _, home = line.partition(b" ")
        if setsid != b"yes":
            # without setsid a timed-out command could not be killed alone (it would share the
            # shell's process group): one channel per command keeps the old guarantees
            self.close()
            raise ShellUnavailable("setsid is not installed on the board")
        self.home = home.decode("utf-8", errors="surrogateescape")

    @property
    def alive(self) -> bool:
        return not self._chan.closed and not self._chan.eof_received and self._transport.is_active()

    def close(self) -> None:
        chan = getattr(self, "_chan", None)
        if chan is not None:
            try:
                chan.close()
            except Exception:  # closing a broken channel fails in many ways; it is gone anyway
                pass

    def run(self, argv: Sequence[str], timeout_s: float) -> Tuple[int, bytes, bytes, Optional[int]]:
        """Run argv; returns (exit code, stdout, stderr, pid of the job). Raises ShellTimeout
        (the caller kills the group and discards this session) or ShellLost."""
        deadline = time.monotonic() + timeout_s
        command_id = uuid.uuid4().hex
        line = "__bench_run %s %s\n" % (command_id, " ".join(shlex.quote(str(a)) for a in argv))
        self._send(line.encode("utf-8", errors="surrogateescape"), deadline)
        started = self._line_after(b"\n@@bench-started %s " % command_id.encode("ascii"), deadline, pgid=None)
        try:
            pid = int(started)
        except ValueError:
            raise ShellLost("unreadable job id from the board's sh: %r" % started[:80]) from None
        header = self._line_after(b"\n@@bench-done %s " % command_id.encode("ascii"), deadline, pgid=pid)
        try:
            code, n_out, n_err = (int(x) for x in header.split())
        except ValueError:
            raise ShellLost("unreadable reply from the board's sh: %r" % header[:80]) from None
        body = self._exactly(n_out + n_err, deadline, pid)
        return code, body[:n_out], body[n_out:], pid

    # -- channel I/O --------------------------------------------------------------------------
    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            self._check(deadline, None)
            if self._chan.send_ready():
                n = self._chan.send(view[sent:sent + _CHUNK])
                if n <= 0:
                    raise ShellLost("the board's sh stopped reading its input")
                sent += n
            else:
                self._wait(deadline)

    def _fill(self, deadline: float, pgid: Optional[int]) -> None:
        """Wait for more stdout (stderr is drained and dropped: the shell itself writes none)."""
        got = False
        while self._chan.recv_stderr_ready():
            self._chan.recv_stderr(_CHUNK)
        while self._chan.recv_ready():
            data = self._chan.recv(_CHUNK)
            if not data:
                break
            self._buffer += data
            got = True
        if got:
            return
        if self._chan.closed or (self._chan.eof_received and not self._chan.recv_ready()):
            raise ShellLost("the board's sh exited")
        self._check(deadline, pgid)
        self._wait(deadline)

    def _line_after(self, marker: bytes, deadline: float, pgid: Optional[int] = None) -> bytes:
        """The rest of the line after ``marker``; everything before it is dropped."""
        while True:
            at = self._buffer.find(marker)
            if at >= 0:
                end = self._buffer.find(b"\n", at + len(marker))
                if end >= 0:
                    line = bytes(self._buffer[at + len(marker):end])
                    del self._buffer[:end + 1]
                    return line
            self._fill(deadline, pgid)

    def _exactly(self, n: int, deadline: float, pgid: Optional[int]) -> bytes:
        while len(self._buffer) < n:
            self._fill(deadline, pgid)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _check(self, deadline: float, pgid: Optional[int]) -> None:
        if not self._transport.is_active():
            raise ShellLost("connection lost")
        if time.monotonic() >= deadline:
            raise ShellTimeout(pgid)

    def _wait(self, deadline: float) -> None:
        try:
            select.select([self._chan.fileno()], [], [], min(0.05, max(0.0, deadline - time.monotonic())))
        except (OSError, ValueError, socket.error) as exc:
            raise ShellLost("waiting on the board's sh failed: %s" % exc) from None


def session_argv(directory: str, run_script: str, argv: List[str]) -> List[str]:
    """What the shell runs for ``Transport.run``: the command in its own session, so its pid is
    its process group (a background job of a non-interactive shell is no group leader, so setsid
    needs no fork and the job's pid is the new group's id)."""
    return ["setsid", "sh", "-c", run_script, "sh", directory] + argv
