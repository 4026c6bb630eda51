"""The project's own known_hosts file: which host key each board is trusted to present.

We never read or write ``~/.ssh/known_hosts``: the benchmark's trust decisions live beside its
results (default ``results/known_hosts``) so that they are explicit, reviewable and separate from
the user's interactive SSH habits. The file uses OpenSSH's format (``host`` for port 22,
``[host]:port`` otherwise, hashed ``|1|...`` names understood) so ``ssh -o
UserKnownHostsFile=results/known_hosts`` can share it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey

from ..errors import FailedError

DEFAULT_KNOWN_HOSTS = Path("results/known_hosts")


class HostKeyError(FailedError, RuntimeError):
    """Base for host-key trust problems (the message says what to do next)."""


class HostKeyMismatch(HostKeyError):
    """``trust`` found a different key already recorded for the host and was not told to replace it."""


class HostKeyNotApproved(HostKeyError):
    """The key the host presents was not approved (declined, or not the one expected): nothing recorded."""


def host_entry_name(host: str, port: int) -> str:
    """The name OpenSSH (and paramiko) look a host up by: bare for port 22, ``[host]:port`` else."""
    return host if port == 22 else "[%s]:%d" % (host, port)


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<unpadded base64>`` of the public key blob, exactly as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            return HostKeys.hash_host(name, pattern) == pattern
        except Exception:  # a malformed hashed entry simply does not match
            return False
    return pattern == name


@dataclass
class KnownHostLine:
    """One line of the file; ``entry`` is None for comments, blanks and lines we cannot parse
    (they are kept verbatim so saving never loses a user's lines)."""

    line_no: int
    text: str
    entry: Optional[HostKeyEntry] = None

    @property
    def key(self) -> Optional[paramiko.PKey]:
        return self.entry.key if self.entry is not None else None

    def matches(self, name: str) -> bool:
        return self.entry is not None and any(_name_matches(p, name) for p in self.entry.hostnames)


@dataclass
class KnownHosts:
    """The parsed file, line by line."""

    path: Path
    lines: List[KnownHostLine] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "KnownHosts":
        path = Path(path)
        result = cls(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return result
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            entry: Optional[HostKeyEntry] = None
            # '@cert-authority' / '@revoked' markers are OpenSSH features paramiko cannot check;
            # keep such lines but never treat them as a trusted key.
            if stripped and not stripped.startswith("#") and not stripped.startswith("@"):
                try:
                    entry = HostKeyEntry.from_line(stripped, number)
                except (InvalidHostKey, ValueError, paramiko.SSHException):
                    entry = None
            result.lines.append(KnownHostLine(number, raw, entry))
        return result

    def lookup(self, host: str, port: int) -> List[KnownHostLine]:
        """Every line whose key is recorded for host:port."""
        name = host_entry_name(host, port)
        return [line for line in self.lines if line.matches(name)]

    def to_paramiko(self, keys: Optional[HostKeys] = None) -> HostKeys:
        """The same keys as paramiko HostKeys (added to ``keys``, e.g. ``client.get_host_keys()``)."""
        keys = keys if keys is not None else HostKeys()
        for line in self.lines:
            if line.entry is not None and line.key is not None:
                for name in line.entry.hostnames:
                    keys.add(name, line.key.get_name(), line.key)
        return keys

    def set_key(self, host: str, port: int, key: paramiko.PKey, comment: str = "") -> None:
        """Record ``key`` for host:port, dropping any other key of the same type for that host."""
        name = host_entry_name(host, port)
        kept: List[KnownHostLine] = []
        for line in self.lines:
            if line.matches(name) and line.key is not None and line.key.get_name() == key.get_name():
                continue
            kept.append(line)
        text = "%s %s %s" % (name, key.get_name(), key.get_base64())
        if comment:
            # OpenSSH and paramiko both ignore fields after the key; we use it to say which
            # device the line belongs to.
            text += " " + comment
        kept.append(KnownHostLine(0, text, HostKeyEntry([name], key)))
        self.lines = kept

    def save(self) -> None:
        """Write atomically (temporary file + rename) so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(".%s.%d.tmp" % (self.path.name, os.getpid()))
        body = "".join(line.text + "\n" for line in self.lines)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        # renumber so later messages point at the right lines
        self.lines = [KnownHostLine(i, l.text, l.entry) for i, l in enumerate(self.lines, start=1)]


def load_known_hosts(path: Path = DEFAULT_KNOWN_HOSTS) -> KnownHosts:
    return KnownHosts.load(path)


def save_known_hosts(known: KnownHosts) -> None:
    known.save()


def fetch_host_key(host: str, port: int = 22, timeout: float = 10.0) -> paramiko.PKey:
    """Ask the server for its host key without authenticating (what ``ssh-keyscan`` does)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise HostKeyError(
            "cannot reach %s:%d within %.0f s to read its host key: %s" % (host, port, timeout, exc)
        ) from exc
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostKeyError(
            "%s:%d did not complete an SSH key exchange within %.0f s: %s"
            % (host, port, timeout, exc or type(exc).__name__)
        ) from exc
    finally:
        transport.close()
        sock.close()
    return key


def trust(
    name: str,
    host: str,
    port: int = 22,
    path: Path = DEFAULT_KNOWN_HOSTS,
    timeout: float = 10.0,
    replace: bool = False,
    approve: Optional[Callable[[str, str], bool]] = None,
) -> Tuple[str, bool]:
    """Record the key host:port presents now; returns (its fingerprint, whether the file changed).

    ``bench devices trust NAME`` shows the fingerprint so the user can compare it with the board's
    ``ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub``. A different key already on record is
    refused unless ``replace`` (a reinstalled board), because silently re-trusting is exactly what
    host-key checking exists to prevent. ``approve(key type, fingerprint)`` is asked before a key
    is written; when it says no, nothing is recorded (HostKeyNotApproved).
    """
    key = fetch_host_key(host, port, timeout)
    offered = fingerprint(key)
    known = KnownHosts.load(Path(path))
    same_type = [
        (line, line.key) for line in known.lookup(host, port)
        if line.key is not None and line.key.get_name() == key.get_name()
    ]
    if any(old_key == key for _, old_key in same_type):
        return offered, False
    if same_type and not replace:
        old, old_key = same_type[0]
        raise HostKeyMismatch(
            "device %s (%s:%d) now offers %s key %s but %s:%d records %s:\n  %s\n"
            "If the board was reinstalled, run `bench devices trust %s --replace`; otherwise "
            "someone may be intercepting the connection."
            % (
                name, host, port, key.get_name(), offered, known.path, old.line_no,
                fingerprint(old_key), old.text, name,
            )
        )
    if approve is not None and not approve(key.get_name(), offered):
        raise HostKeyNotApproved("device %s (%s:%d) presents %s key %s; not approved, nothing recorded in %s"
                                 % (name, host, port, key.get_name(), offered, known.path))
    known.set_key(host, port, key, comment="bench:%s" % name)
    known.save()
    return offered, True
