"""The SSH transport: a board reached with paramiko, behaving exactly like LocalTransport.

Pitfalls this file exists to avoid (see FACTS.md "SSH facts"):
- host keys are checked against the project's own known_hosts with a reject policy, never
  auto-added; the error says how to trust a new board and, for a changed key, shows both
  fingerprints;
- ``recv_exit_status()`` can hang when a command fills the channel window (paramiko #448, #1778):
  stdout and stderr are drained in one loop with a deadline, stdin is fed from the same loop;
- keep-alives do not notice a dead peer (paramiko #2326): every wait here has its own deadline;
- a timed-out command is killed with its whole process group on the board, so nothing lingers.
"""

from __future__ import annotations

import errno
import os
import posixpath
import select
import shlex
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import paramiko

from .known_hosts import DEFAULT_KNOWN_HOSTS, KnownHosts, fingerprint, host_entry_name
from .ssh_shell import ShellLost, ShellSession, ShellTimeout, ShellUnavailable, session_argv
from .transport import (  # noqa: F401  (process helpers re-exported for callers of this module)
    CannotStart,
    CommandResult,
    CommandTimeout,
    Transport,
    TransportError,
    kill_process_group,
    process_state,
)

if TYPE_CHECKING:  # the config package imports pydantic; only the type is needed here
    from harness.config.devices import DeviceConfig


class HostKeyUnknown(TransportError):
    """The board's host key is not in the project's known_hosts."""

    retryable = False


class HostKeyChanged(TransportError):
    """The board offered a different key than the one on record: refused."""

    retryable = False


class AuthFailed(TransportError):
    """The board rejected our credentials (or we had none to offer)."""

    retryable = False


class Unreachable(TransportError):
    """No TCP connection or no SSH handshake within the connect timeout."""


class ConnectionLost(TransportError):
    """An established connection died while a call was in progress."""


# Markers the remote wrapper writes as the first line(s) of stderr; stripped before returning.
_PGID_MARK = b"@@bench-pgid "
_NOSTART_MARK = b"@@bench-nostart "

# Runs argv in a new session so its process group id is known (printed first on stderr) and a
# timeout can kill the whole group. `setsid -w` forks when the caller already leads a group (the
# login shell does), waits, and passes the exit code through. Without setsid (rare: util-linux
# or busybox provide it) OpenSSH's own setsid() for the session makes `$$` the group id anyway.
# `command -v` distinguishes "could not start" (LocalTransport raises) from the program's own
# exit code 127.
_RUN_SCRIPT = (
    "printf '@@bench-pgid %s\\n' \"$$\" >&2\n"
    "cd \"$1\" 2>/dev/null || { printf '@@bench-nostart cannot enter directory %s\\n' \"$1\" >&2;"
    " exit 127; }\n"
    "shift\n"
    "command -v \"$1\" >/dev/null 2>&1 || { printf '@@bench-nostart %s: command not found\\n'"
    " \"$1\" >&2; exit 127; }\n"
    "exec \"$@\"\n"
)

# Starts argv detached: a new session (setsid, so pid == pgid and no SIGHUP reaches it), nohup,
# stdin from /dev/null and both outputs appended to files, so the SSH channel closes at once and
# the process outlives the connection. The loop waits until setsid() has happened, so a caller
# that immediately signals the group does not race the child.
_SPAWN_SCRIPT = (
    "mkdir -p \"$1\" && cd \"$1\" || { printf '@@bench-nostart cannot enter directory %s\\n'"
    " \"$1\" >&2; exit 127; }\n"
    "out=$2; err=$3; shift 3\n"
    "command -v setsid >/dev/null 2>&1 || { printf '@@bench-nostart setsid not found on the board"
    " (install util-linux)\\n' >&2; exit 127; }\n"
    "command -v \"$1\" >/dev/null 2>&1 || { printf '@@bench-nostart %s: command not found\\n'"
    " \"$1\" >&2; exit 127; }\n"
    "setsid nohup \"$@\" </dev/null >>\"$out\" 2>>\"$err\" &\n"
    "pid=$!\n"
    "i=0\n"
    "while [ $i -lt 200 ] && [ -r /proc/$pid/stat ]; do\n"
    "  pgrp=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f3)\n"
    "  [ \"$pgrp\" = \"$pid\" ] && break\n"
    "  i=$((i+1)); sleep 0.01\n"
    "done\n"
    "echo $pid\n"
)

_CHUNK = 1 << 16


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RejectAndRemember(paramiko.RejectPolicy):
    """RejectPolicy that keeps the offered key, so the error can show its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key)


class SSHTransport:
    """One board over SSH. Connects lazily and reconnects after a dropped connection on the
    next call, so the controller's retry-with-backoff needs nothing but calling again."""

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: Optional[str] = None,
        key_file: Optional[str] = None,
        use_agent: bool = False,
        password_env: Optional[str] = None,
        known_hosts_path: Path = DEFAULT_KNOWN_HOSTS,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 120.0,
        name: Optional[str] = None,
        keepalive_s: float = 15.0,
        reuse_shell: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.key_file = os.path.expanduser(key_file) if key_file else None
        self.use_agent = use_agent
        self.password_env = password_env
        self.known_hosts_path = Path(known_hosts_path)
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.keepalive_s = keepalive_s
        self.name = name or "%s:%d" % (host, port)
        self.host_key_fingerprint: Optional[str] = None
        self._client: Optional[paramiko.SSHClient] = None
        self._sftp: Optional[paramiko.SFTPClient] = None
        self._home: Optional[str] = None
        # paramiko's client and SFTP session are shared by the calls below; connecting and the
        # SFTP request/response pairs must not interleave between threads.
        self._connect_lock = threading.RLock()
        self._sftp_lock = threading.RLock()
        # one sh per connection runs commands in turn (see ssh_shell.py); a call that finds it
        # busy, or a board where it cannot start, uses a channel of its own
        self.reuse_shell = reuse_shell
        self._shell: Optional[ShellSession] = None
        self._shell_lock = threading.Lock()
        self._shell_refused = False

    @classmethod
    def from_device(
        cls, device: "DeviceConfig", known_hosts_path: Path = DEFAULT_KNOWN_HOSTS
    ) -> "SSHTransport":
        if not device.host:
            raise TransportError("device %s has no host in devices.yaml" % device.name)
        return cls(
            host=device.host,
            port=device.port,
            user=device.user,
            key_file=device.key_file,
            use_agent=device.use_agent,
            password_env=device.password_env,
            known_hosts_path=known_hosts_path,
            connect_timeout_s=device.timeouts.connect_s,
            command_timeout_s=device.timeouts.command_s,
            name=device.name,
        )

    # ------------------------------------------------------------------ connection

    @property
    def where(self) -> str:
        return "%s@%s:%d" % (self.user or "(current user)", self.host, self.port)

    def connect(self) -> None:
        """Connect now (otherwise the first call does); raises a TransportError subclass."""
        self._ensure()

    def _ensure(self) -> paramiko.Transport:
        with self._connect_lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._drop()
            self._client = self._connect()
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _connect(self) -> paramiko.SSHClient:
        timeout = self.connect_timeout_s
        password: Optional[str] = None
        if self.password_env:
            password = os.environ.get(self.password_env)
            if password is None:
                raise AuthFailed(
                    "%s: devices.yaml names password_env %s but that environment variable is not set"
                    % (self.name, self.password_env)
                )
        if self.key_file and not os.path.isfile(self.key_file):
            raise AuthFailed("%s: key_file %s does not exist" % (self.name, self.key_file))
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except socket.timeout:
            raise Unreachable(
                "%s: cannot reach %s:%d: no answer within the %.0f s connect timeout "
                "(is the board on, and the address and port right?)"
                % (self.name, self.host, self.port, timeout)
            ) from None
        except OSError as exc:
            raise Unreachable(
                "%s: cannot reach %s:%d (connect timeout %.0f s): %s"
                % (self.name, self.host, self.port, timeout, exc.strerror or exc)
            ) from None
        known = KnownHosts.load(self.known_hosts_path)
        client = paramiko.SSHClient()
        # only the project's file: never ~/.ssh/known_hosts (load_system_host_keys is not called)
        client.set_missing_host_key_policy(_RejectAndRemember())
        known.to_paramiko(client.get_host_keys())
        # With nothing configured, behave like ssh: try ~/.ssh/id_*; otherwise offer exactly
        # what devices.yaml says, so a wrong key fails instead of silently using another.
        look_for_keys = not (self.key_file or self.use_agent or self.password_env)
        try:
            client.connect(
                self.host,
                self.port,
                username=self.user,
                password=password,
                passphrase=password,
                key_filename=self.key_file,
                timeout=timeout,
                allow_agent=self.use_agent,
                look_for_keys=look_for_keys,
                sock=sock,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
            )
        except _UnknownHostKey as exc:
            client.close()
            raise HostKeyUnknown(
                "%s: host key of %s:%d is not trusted yet (offered %s key %s, not in %s). "
                "Check it against the board (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub) and run "
                "`bench devices trust %s`."
                % (
                    self.name, self.host, self.port, exc.key.get_name(), fingerprint(exc.key),
                    self.known_hosts_path, _short_type(exc.key), self.name,
                )
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyChanged(self._changed_message(known, exc)) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthFailed(self._auth_message(exc)) from None
        except paramiko.SSHException as exc:
            client.close()
            if "No authentication methods available" in str(exc):
                raise AuthFailed(self._auth_message(exc)) from None
            raise Unreachable(
                "%s: SSH handshake with %s:%d failed within %.0f s: %s"
                % (self.name, self.host, self.port, timeout, exc)
            ) from None
        except (OSError, EOFError) as exc:
            client.close()
            raise Unreachable(
                "%s: connection to %s:%d failed during the handshake (timeout %.0f s): %s"
                % (self.name, self.host, self.port, timeout, exc or type(exc).__name__)
            ) from None
        transport = client.get_transport()
        assert transport is not None
        # Keep-alives keep NAT/firewall state open on long runs; dead peers are caught by the
        # deadlines below, not by these (paramiko #2326).
        transport.set_keepalive(int(max(1, self.keepalive_s)))
        self.host_key_fingerprint = fingerprint(transport.get_remote_server_key())
        return client

    def _changed_message(self, known: KnownHosts, exc: paramiko.BadHostKeyException) -> str:
        lines = known.lookup(self.host, self.port)
        shown = "\n".join("  %s:%d: %s" % (known.path, l.line_no, l.text) for l in lines)
        return (
            "%s: HOST KEY CHANGED for %s - connection refused.\n"
            "  expected %s (%s)\n  offered  %s (%s)\n"
            "known_hosts entry:\n%s\n"
            "If the board was reinstalled, verify the new key on its console and run "
            "`bench devices trust %s --replace`; otherwise someone may be intercepting the connection."
            % (
                self.name, host_entry_name(self.host, self.port),
                fingerprint(exc.expected_key), exc.expected_key.get_name(),
                fingerprint(exc.key), exc.key.get_name(),
                shown or "  (%s)" % known.path, self.name,
            )
        )

    def _auth_message(self, exc: Exception) -> str:
        if self.key_file:
            how = "key %s" % self.key_file
            hint = "add %s.pub to ~%s/.ssh/authorized_keys on the board" % (
                self.key_file, self.user or "")
        elif self.use_agent:
            how = "the ssh-agent's keys"
            hint = "check `ssh-add -l` lists the board's key"
        elif self.password_env:
            how = "the password in $%s" % self.password_env
            hint = "check the password"
        else:
            how = "the default keys in ~/.ssh"
            hint = "set key_file or use_agent for this device in devices.yaml"
        return "%s: authentication failed for user %s at %s:%d with %s (%s); %s" % (
            self.name, self.user or "(current user)", self.host, self.port, how, exc, hint,
        )

    def _drop(self) -> None:
        self._discard_shell()
        with self._sftp_lock:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:  # closing a dead session must not mask the real error
                    pass
                self._sftp = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None

    def close(self) -> None:
        """Drop the connection; detached processes keep running."""
        with self._connect_lock:
            self._drop()

    def __enter__(self) -> "SSHTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ paths

    def home(self) -> str:
        """The remote user's home directory, asked once per transport."""
        if self._home is None and self._shell_acquire():
            try:
                shell = self._session()
                if shell is not None:
                    self._home = shell.home
            finally:
                self._shell_lock.release()
        if self._home is None:
            code, out, err, _ = self._execute("printf '%s' \"$HOME\"", self.command_timeout_s)
            home = out.decode("utf-8", errors="replace").strip()
            if code != 0 or not home.startswith("/"):
                raise TransportError(
                    "%s: cannot determine the remote home directory: %r" % (self.name, err[-500:]))
            self._home = home
        return self._home

    def expand(self, path: str) -> str:
        """``~`` and ``~/...`` resolved against the remote home (quoting prevents the shell from
        doing it, and SFTP never does)."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return posixpath.join(self.home(), path[2:])
        return path

    # ------------------------------------------------------------------ commands

    def run(
        self,
        argv: Sequence[str],
        timeout_s: float,
        stdin: Optional[bytes] = None,
        cwd: Optional[str] = None,
    ) -> CommandResult:
        """Run argv (each argument quoted), draining output while waiting; a timeout kills the
        command's whole process group on the board and raises CommandTimeout."""
        if not argv:
            raise TransportError("%s: empty command" % self.name)
        started = time.monotonic()
        directory = self.expand(cwd) if cwd else "."
        args = [str(a) for a in argv]
        reply = None
        if stdin is None:
            reply = self._in_shell(session_argv(directory, _RUN_SCRIPT, args), timeout_s, argv)
        if reply is None:
            script = _quote(["sh", "-c", _RUN_SCRIPT, "sh", directory] + args)
            command = "if command -v setsid >/dev/null 2>&1; then exec setsid -w %s; else exec %s; fi" % (
                script, script,
            )
            reply = self._execute(command, timeout_s, stdin=stdin, what=argv)
        code, out, err, _ = reply
        if code == 127 and err.startswith(_NOSTART_MARK):
            reason = err[len(_NOSTART_MARK):].decode("utf-8", errors="replace").strip()
            raise CannotStart("%s: cannot start %s: %s" % (self.name, argv[0], reason))
        return CommandResult(list(argv), code, out, err, time.monotonic() - started)

    def spawn_detached(self, argv: Sequence[str], cwd: str, stdout_path: str, stderr_path: str) -> int:
        """Start argv in its own session (pid == pgid), surviving this connection; returns its pid."""
        if not argv:
            raise TransportError("%s: empty command" % self.name)
        args = ["sh", "-c", _SPAWN_SCRIPT, "sh", self.expand(cwd), self.expand(stdout_path),
                self.expand(stderr_path)] + [str(a) for a in argv]
        reply = self._in_shell(args, self.command_timeout_s, argv)
        if reply is None:
            reply = self._execute(_quote(args), self.command_timeout_s, what=argv)
        code, out, err, _ = reply
        if code == 127 and err.startswith(_NOSTART_MARK):
            reason = err[len(_NOSTART_MARK):].decode("utf-8", errors="replace").strip()
            raise CannotStart("%s: cannot start %s: %s" % (self.name, argv[0], reason))
        text = out.decode("ascii", errors="replace").strip()
        if code != 0 or not text.isdigit():
            raise TransportError(
                "%s: starting %s detached failed (exit %d): %s"
                % (self.name, argv[0], code, err.decode("utf-8", errors="replace").strip()[-1000:])
            )
        return int(text)

    def _shell_acquire(self) -> bool:
        return self.reuse_shell and not self._shell_refused and self._shell_lock.acquire(blocking=False)

    def _session(self) -> Optional[ShellSession]:
        """The connection's shell (started on first use); None where it cannot run. Call with
        ``_shell_lock`` held."""
        transport = self._ensure()
        if self._shell is not None and self._shell.alive:
            return self._shell
        self._discard_shell()
        try:
            self._shell = ShellSession(transport, self.connect_timeout_s)
        except ShellUnavailable:
            if not transport.is_active():
                self._drop_if_dead()
                raise ConnectionLost("%s: connection lost while starting a shell" % self.name) from None
            self._shell_refused = True  # e.g. no setsid: one channel per command from now on
            return None
        return self._shell

    def _discard_shell(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()

    def _in_shell(self, argv: Sequence[str], timeout_s: float, what: Sequence[str]
                  ) -> Optional[Tuple[int, bytes, bytes, Optional[int]]]:
        """Run argv in the connection's shell; None when the caller should use its own channel
        (the shell is busy with another thread's command, or unavailable on this board)."""
        if not self._shell_acquire():
            return None
        try:
            shell = self._session()
            if shell is None:
                return None
            try:
                code, out, err, pgid = shell.run(argv, timeout_s)
            except ShellTimeout as exc:
                self._discard_shell()
                killed = self._kill_group(exc.pgid) if exc.pgid else False
                if killed:
                    how = "was killed (process group %d on the board)" % exc.pgid
                elif exc.pgid:
                    how = ("could not be killed (process group %d on the board: the board did not "
                           "answer)" % exc.pgid)
                else:
                    how = "was abandoned (the board's shell did not start it in time)"
                raise CommandTimeout("%s: %s ran longer than %.0f s and %s"
                                     % (self.name, _describe(what, ""), timeout_s, how)) from None
            except (ShellLost, paramiko.SSHException, socket.error, EOFError) as exc:
                self._discard_shell()
                self._drop_if_dead()
                raise ConnectionLost("%s: connection failed while running %s: %s"
                                     % (self.name, _describe(what, ""), exc)) from None
        finally:
            self._shell_lock.release()
        if err.startswith(_PGID_MARK):
            err = err.partition(b"\n")[2]
        return code, out, err, pgid

    def _execute(
        self,
        command: str,
        timeout_s: float,
        stdin: Optional[bytes] = None,
        what: Optional[Sequence[str]] = None,
    ) -> Tuple[int, bytes, bytes, Optional[int]]:
        """exec_command with concurrent draining; returns (exit code, stdout, stderr, pgid)."""
        transport = self._ensure()
        try:
            chan = transport.open_session(timeout=self.connect_timeout_s)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._drop_if_dead()
            raise ConnectionLost(
                "%s: cannot open a channel: %s" % (self.name, exc or type(exc).__name__)) from None
        out = bytearray()
        err = bytearray()
        pgid: Optional[int] = None
        head_done = False  # the pgid marker line has been seen (or cannot come any more)
        pending = memoryview(stdin) if stdin else None
        sent = 0
        deadline = time.monotonic() + timeout_s
        try:
            if pending is None:
                chan.shutdown_write()  # like stdin=DEVNULL locally: the command sees EOF at once
            wake = chan.fileno()  # a pipe paramiko signals when stdout or stderr data arrives
            while True:
                busy = False
                while chan.recv_ready():
                    data = chan.recv(_CHUNK)
                    if not data:
                        break
                    out += data
                    busy = True
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(_CHUNK)
                    if not data:
                        break
                    err += data
                    busy = True
                if not head_done:
                    if err.startswith(_PGID_MARK) and b"\n" in err:
                        line, _, rest = bytes(err).partition(b"\n")
                        try:
                            pgid = int(line[len(_PGID_MARK):])
                        except ValueError:
                            pgid = None
                        err = bytearray(rest)
                        head_done = True
                    elif len(err) >= len(_PGID_MARK) and not err.startswith(_PGID_MARK):
                        head_done = True
                if pending is not None and chan.send_ready():
                    # fed in slices from this loop: a blocking sendall while the command fills
                    # our receive window would deadlock both sides
                    n = chan.send(pending[sent:sent + _CHUNK])
                    sent += n
                    busy = busy or n > 0
                    if sent >= len(pending):
                        chan.shutdown_write()
                        pending = None
                finished = chan.exit_status_ready() and (chan.eof_received or chan.closed)
                if (finished or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if not transport.is_active():
                    raise ConnectionLost("%s: connection lost while running %s"
                                         % (self.name, _describe(what, command)))
                now = time.monotonic()
                if now >= deadline:
                    killed = self._kill_group(pgid) if pgid else False
                    if killed:
                        how = "was killed (process group %d on the board)" % pgid
                    elif pgid:
                        how = ("could not be killed (process group %d on the board: the board "
                               "did not answer); the channel was closed" % pgid)
                    else:
                        how = "was abandoned (its process group is unknown); the channel was closed"
                    raise CommandTimeout("%s: %s ran longer than %.0f s and %s"
                                         % (self.name, _describe(what, command), timeout_s, how))
                if not busy:
                    select.select([wake], [], [], min(0.05, max(0.0, deadline - now)))
            code = chan.recv_exit_status() if chan.exit_status_ready() else -1
            if code == -1 and not chan.eof_received:
                # closed without status or EOF: paramiko closes every channel of a transport that
                # died (sshd killed, network gone) a moment before it marks itself inactive
                grace = time.monotonic() + 1.0
                while transport.is_active() and time.monotonic() < grace:
                    time.sleep(0.01)
                if not transport.is_active():
                    raise ConnectionLost("%s: connection lost while running %s"
                                         % (self.name, _describe(what, command)))
        except (socket.error, EOFError, paramiko.SSHException) as exc:
            self._drop_if_dead()
            raise ConnectionLost(
                "%s: connection failed while running %s: %s" % (self.name, _describe(what, command), exc)
            ) from None
        finally:
            chan.close()
        return code, bytes(out), bytes(err), pgid

    def _kill_group(self, pgid: int) -> bool:
        """SIGKILL the process group on the board (on a fresh channel: the old one may be stuck)."""
        if pgid <= 1:  # 0 and 1 would mean "our own group" / "everything": never
            return False
        try:
            transport = self._ensure()
            chan = transport.open_session(timeout=self.connect_timeout_s)
            try:
                chan.settimeout(self.connect_timeout_s)
                # the shell's builtin kill: dash's rejects `--`, `-9 -PGID` works in every shell,
                # and procps-ng 4.0.2's /usr/bin/kill (Debian 12) turns `-9 -PGID` into kill(-1)
                chan.exec_command("sh -c %s" % shlex.quote("kill -9 -%d" % pgid))
                chan.shutdown_write()
                deadline = time.monotonic() + self.connect_timeout_s
                while not chan.exit_status_ready() and time.monotonic() < deadline:
                    time.sleep(0.02)
                return chan.exit_status_ready() and chan.recv_exit_status() == 0
            finally:
                chan.close()
        except (TransportError, paramiko.SSHException, OSError, EOFError):
            return False

    def _drop_if_dead(self) -> None:
        with self._connect_lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is None or not transport.is_active():
                    self._drop()

    # ------------------------------------------------------------------ files

    def _sftp_client(self) -> paramiko.SFTPClient:
        transport = self._ensure()
        with self._sftp_lock:
            if self._sftp is None or self._sftp.get_channel() is None or self._sftp.get_channel().closed:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise TransportError(
                        "%s: cannot open an SFTP session (is the sftp subsystem enabled in sshd?): %s"
                        % (self.name, exc)
                    ) from None
                if self._sftp is None:
                    raise TransportError("%s: the server refused the SFTP subsystem" % self.name)
                # SFTP calls block on replies; without a channel timeout a dead peer hangs us
                self._sftp.get_channel().settimeout(self.command_timeout_s)
            return self._sftp

    def _makedirs(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        missing: List[str] = []
        current = directory
        while current not in ("", "/", "."):
            try:
                sftp.stat(current)
                break
            except FileNotFoundError:
                missing.append(current)
                current = posixpath.dirname(current)
        for path in reversed(missing):
            try:
                sftp.mkdir(path)
            except OSError:
                # another writer may have made it meanwhile; only a real failure remains
                sftp.stat(path)

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """Write a file atomically: SFTP to a temporary name, chmod, then posix-rename over."""
        target = self.expand(path)
        parent = posixpath.dirname(target) or "."
        tmp = posixpath.join(parent, ".%s.%s.tmp" % (posixpath.basename(target), uuid.uuid4().hex[:12]))
        sftp = self._sftp_client()
        with self._sftp_lock:
            try:
                self._makedirs(sftp, parent)
                try:
                    with sftp.open(tmp, "wb") as handle:
                        handle.set_pipelined(True)
                        handle.write(data)
                    sftp.chmod(tmp, mode)
                    try:
                        sftp.posix_rename(tmp, target)
                    except IOError as exc:
                        if getattr(exc, "errno", None) in (errno.ENOENT, errno.EACCES):
                            raise
                        # servers without posix-rename@openssh.com: plain rename refuses to
                        # overwrite, so remove the target first (a short non-atomic window)
                        try:
                            sftp.remove(target)
                        except FileNotFoundError:
                            pass
                        sftp.rename(tmp, target)
                except BaseException:
                    try:
                        sftp.remove(tmp)
                    except Exception:
                        pass
                    raise
            except (paramiko.SSHException, socket.error, EOFError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # a filesystem error from the board (PermissionError, ...), as locally
                self._drop_if_dead()
                raise ConnectionLost("%s: writing %s failed: %s"
                                     % (self.name, target, exc or type(exc).__name__)) from None

    def read_bytes(self, path: str, offset: int = 0, max_bytes: Optional[int] = None) -> bytes:
        """Read from ``offset`` (at most ``max_bytes``); FileNotFoundError when missing."""
        target = self.expand(path)
        sftp = self._sftp_client()
        with self._sftp_lock:
            try:
                try:
                    handle = sftp.open(target, "rb")
                except FileNotFoundError:
                    raise FileNotFoundError(
                        errno.ENOENT, "%s: no such file on the board" % self.name, target) from None
                with handle:
                    handle.seek(offset)
                    size = handle.stat().st_size
                    end = size if max_bytes is None else min(size, offset + max_bytes)
                    if 0 < size <= offset:
                        # a journal polled with nothing new: no read round trip (a file that
                        # reports size 0, as /proc does, is still read until EOF below)
                        return b""
                    if end - offset > _CHUNK:
                        # queue the reads concurrently instead of one round trip per 32 KiB; the
                        # file is read as it was at stat() time (a growing journal is read again)
                        handle.prefetch(end)
                    elif size == 0:
                        # size-less files (/proc reports 0) are read until EOF below; others up
                        # to their size at stat() time, so a small read is one round trip
                        end = -1
                    chunks = []
                    got = 0
                    while max_bytes is None or got < max_bytes:
                        want = _CHUNK * 16 if max_bytes is None else min(_CHUNK * 16, max_bytes - got)
                        data = handle.read(want)
                        if not data:
                            break
                        chunks.append(data)
                        got += len(data)
                        if end >= 0 and offset + got >= end:
                            break
                    return b"".join(chunks)
            except (paramiko.SSHException, socket.error, EOFError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise
                self._drop_if_dead()
                raise ConnectionLost("%s: reading %s failed: %s"
                                     % (self.name, target, exc or type(exc).__name__)) from None


def _quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _describe(what: Optional[Sequence[str]], command: str) -> str:
    if what:
        return " ".join(shlex.quote(str(a)) for a in list(what)[:3])
    return command[:60]


def _short_type(key: paramiko.PKey) -> str:
    name = key.get_name()
    if "ed25519" in name:
        return "ed25519"
    if "ecdsa" in name:
        return "ecdsa"
    return "rsa"
