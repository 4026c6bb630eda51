"""An emulated device farm: real OpenSSH sshd processes on 127.0.0.x, one per "board".

`bench farm up` lets a user (and the tests) exercise the whole SSH path - host keys, auth,
deploy, detached runs, leases, dropped connections - without owning a single board. Each sshd
gets its own loopback address, a free port and a generated ed25519 host key; one generated client
key logs in to all of them as the current user. The boards run the `reference` backend with the
emulated profile of the board type they stand in for, and their devices file says so (tag
`emulated`), so reports can never pass them off as real hardware.
"""

from __future__ import annotations

import base64
import getpass
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import paramiko
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..errors import MissingError
from .known_hosts import KnownHosts, host_entry_name

# (board type in devices.yaml, reference-backend profile, extra tags, memory bandwidth GB/s
# where FACTS.md gives one) - in the order boards are handed out.
BOARD_KINDS: Tuple[Tuple[str, str, Tuple[str, ...], Optional[float]], ...] = (
    ("ax650n", "ax650n", ("axera", "npu"), None),
    ("orin-nano", "orin-nano", ("jetson", "gpu"), 68.0),
    ("agx-orin", "agx-orin", ("jetson", "gpu"), 204.8),
    ("upsquared-n", "upsquared-n", ("intel", "x86"), None),
    ("rtx-pc", "rtx", ("nvidia", "gpu", "x86"), 1008.0),
)

# Prices for the procurement demo: the list prices devices.yaml gives the real boards (assumed
# street prices in USD; check your supplier). The report says where each price came from.
BOARD_PRICES_USD: Dict[str, float] = {"ax650n": 260.0, "orin-nano": 249.0, "agx-orin": 1999.0,
                                      "upsquared-n": 400.0, "rtx-pc": 2500.0}

FARM_FILE = "farm.json"
DEVICES_FILE = "devices.emulated.yaml"
_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


class FarmError(MissingError, RuntimeError):
    """The emulated farm could not be started or stopped; the message says why."""


@dataclass
class FarmBoard:
    name: str
    type: str
    profile: str
    host: str
    port: int
    workdir: str
    sshd_config: str
    pid_file: str
    log_file: str
    host_key: str

    def pid(self) -> Optional[int]:
        try:
            return int(Path(self.pid_file).read_text().strip())
        except (OSError, ValueError):
            return None


@dataclass
class FarmInfo:
    state_dir: str
    user: str
    client_key: str
    known_hosts: str
    devices_yaml: str
    python: str
    sshd: str
    boards: List[FarmBoard] = field(default_factory=list)

    def board(self, name: str) -> FarmBoard:
        for board in self.boards:
            if board.name == name:
                return board
        raise FarmError("no board %r in the farm at %s; boards: %s"
                        % (name, self.state_dir, ", ".join(b.name for b in self.boards)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "FarmInfo":
        data = json.loads(text)
        boards = [FarmBoard(**b) for b in data.pop("boards")]
        return cls(boards=boards, **data)


def find_sshd() -> Optional[str]:
    """Absolute path of sshd (it refuses to re-exec from a relative one), or None."""
    found = shutil.which("sshd")
    if found:
        return os.path.abspath(found)
    for candidate in _SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_sshd(timeout_s: float = 600.0) -> Optional[str]:
    """Install openssh-server with apt-get when we are root on a Debian-like system; the path of
    sshd afterwards, or None when that is not possible here."""
    if find_sshd():
        return find_sshd()
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-qq", "openssh-server"],
                    ["sh", "-c", "apt-get update -qq && apt-get install -y -qq openssh-server"]):
        try:
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if find_sshd():
            return find_sshd()
    return None


def generate_ed25519(private_path: Path, comment: str) -> str:
    """Write an unencrypted OpenSSH ed25519 key pair (mode 0600: sshd rejects readable host
    keys); returns the public line. An existing key is kept, so known_hosts stays valid."""
    public_path = private_path.with_name(private_path.name + ".pub")
    if private_path.exists() and public_path.exists():
        return public_path.read_text().strip()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(private_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    os.chmod(private_path, 0o600)
    line = "%s %s" % (public.decode("ascii"), comment)
    public_path.write_text(line + "\n")
    return line


def board_names(n: int) -> List[Tuple[str, str, str, Tuple[str, ...], Optional[float]]]:
    """(name, type, profile, tags, bandwidth) for n boards: the five kinds, then ax650n-2, ..."""
    result = []
    for i in range(n):
        kind, profile, tags, bandwidth = BOARD_KINDS[i % len(BOARD_KINDS)]
        copy = i // len(BOARD_KINDS)
        name = kind if copy == 0 else "%s-%d" % (kind, copy + 1)
        result.append((name, kind, profile, tags, bandwidth))
    return result


def _addresses(base_ip: str, n: int) -> List[str]:
    try:
        base = ipaddress.ip_address(base_ip)
    except ValueError:
        raise FarmError("base_ip %r is not an IP address" % base_ip) from None
    network = ipaddress.ip_network("127.0.0.0/24")
    addresses = [base + i for i in range(n)]
    for address in addresses:
        # only 127.0.0.x: nothing the farm does may be reachable from outside this machine
        if address not in network or int(str(address).rsplit(".", 1)[1]) in (0, 255):
            raise FarmError("%d boards from %s would leave 127.0.0.1-254" % (n, base_ip))
    return [str(a) for a in addresses]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _sshd_config(board: FarmBoard, authorized_keys: Path, user: str, login_rc: bool = True) -> str:
    lines = [
        "# written by harness.farm.sshd_farm - an emulated board, loopback only",
        "ListenAddress %s" % board.host,
        "Port %d" % board.port,
        "HostKey %s" % board.host_key,
        "PidFile %s" % board.pid_file,
        "AuthorizedKeysFile %s" % authorized_keys,
        "AllowUsers %s" % user,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        # the keys live in a temporary state directory whose modes sshd would otherwise reject
        "StrictModes no",
        "Subsystem sftp internal-sftp",
        # parallel controller tests open many channels and connections at once
        "MaxSessions 64",
        "MaxStartups 100:30:200",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "PrintMotd no",
        "LogLevel VERBOSE",
    ]
    if not login_rc:
        # bash sources ~/.bashrc for a command sent over ssh only when it is the top-level shell
        # (SHLVL below 1 on entry). A board whose login shell is this machine's bash would pay
        # this user's rc files on every session: with pyenv's init that is ~0.13 s of CPU and a
        # global rehash lock, which 64 boards logging in at once queue on for tens of seconds.
        lines.append("SetEnv SHLVL=1")
    return "\n".join(lines + [""])


def _wait_accepting(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.settimeout(1.0)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _start_sshd(sshd: str, board: FarmBoard, timeout_s: float) -> None:
    Path(board.pid_file).unlink(missing_ok=True)
    try:
        # without -D sshd daemonises: the farm outlives `bench farm up`, and stops by PidFile
        proc = subprocess.run(
            [sshd, "-f", board.sshd_config, "-E", board.log_file],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FarmError("cannot start %s for board %s: %s" % (sshd, board.name, exc)) from None
    if proc.returncode != 0:
        raise FarmError("sshd for board %s exited with %d: %s%s" % (
            board.name, proc.returncode, proc.stdout.decode(errors="replace").strip(), _log_tail(board)))
    if not _wait_accepting(board.host, board.port, time.monotonic() + timeout_s):
        raise FarmError("sshd for board %s does not accept connections on %s:%d after %.0f s%s"
                        % (board.name, board.host, board.port, timeout_s, _log_tail(board)))


def _log_tail(board: FarmBoard) -> str:
    try:
        lines = Path(board.log_file).read_text(errors="replace").strip().splitlines()[-8:]
    except OSError:
        return ""
    return ("\n  log %s:\n    " % board.log_file + "\n    ".join(lines)) if lines else ""


def farm_up(
    n: int,
    state_dir: Path,
    base_ip: str = "127.0.0.2",
    python: str = sys.executable,
    known_hosts_path: Optional[Path] = None,
    start_timeout_s: float = 10.0,
    login_rc: bool = True,
) -> FarmInfo:
    """Start n sshd "boards" on base_ip, base_ip+1, ...; write known_hosts, devices.emulated.yaml
    and farm.json into state_dir. A farm already running there is stopped first.

    ``login_rc=False``: the boards' sessions skip the user's ~/.bashrc (a real board's login does
    not run this machine's rc files; a scale benchmark must not measure them)."""
    if n < 1:
        raise FarmError("a farm needs at least one board")
    sshd = find_sshd()
    if sshd is None:
        raise FarmError("OpenSSH sshd not found; install it with `apt-get install -y openssh-server`")
    state = Path(state_dir).resolve()
    if (state / FARM_FILE).exists():
        farm_down(state)
    addresses = _addresses(base_ip, n)
    if os.geteuid() == 0:
        # sshd running as root chroots its privilege-separated child here
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    user = getpass.getuser()
    keys = state / "keys"
    client_key = keys / "client_ed25519"
    client_pub = generate_ed25519(client_key, "edge-vlm-bench-farm@%s" % socket.gethostname())
    authorized = keys / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    known_path = Path(known_hosts_path).resolve() if known_hosts_path else state / "known_hosts"
    known = KnownHosts.load(known_path)

    info = FarmInfo(
        state_dir=str(state), user=user, client_key=str(client_key), known_hosts=str(known_path),
        devices_yaml=str(state / DEVICES_FILE), python=python, sshd=sshd,
    )
    try:
        for (name, kind, profile, _tags, _bw), host in zip(board_names(n), addresses):
            board_dir = state / "sshd" / name
            board_dir.mkdir(parents=True, exist_ok=True)
            host_key = board_dir / "ssh_host_ed25519_key"
            generate_ed25519(host_key, "farm-board-%s" % name)
            workdir = state / "boards" / name
            workdir.mkdir(parents=True, exist_ok=True)
            board = FarmBoard(
                name=name, type=kind, profile=profile, host=host, port=0, workdir=str(workdir),
                sshd_config=str(board_dir / "sshd_config"), pid_file=str(board_dir / "sshd.pid"),
                log_file=str(board_dir / "sshd.log"), host_key=str(host_key),
            )
            last_error: Optional[FarmError] = None
            for _attempt in range(3):  # a free port can be taken between probing and binding
                board.port = _free_port(host)
                Path(board.sshd_config).write_text(_sshd_config(board, authorized, user, login_rc))
                try:
                    _start_sshd(sshd, board, start_timeout_s)
                    last_error = None
                    break
                except FarmError as exc:
                    last_error = exc
                    _stop_board_processes(board)
            if last_error is not None:
                raise last_error
            info.boards.append(board)
            _record_host_key(known, board)
    except BaseException:
        for board in info.boards:
            _stop_board_processes(board)
        raise
    known.save()
    (state / FARM_FILE).write_text(info.to_json())
    _write_devices_yaml(info, n)
    return info


def _record_host_key(known: KnownHosts, board: FarmBoard) -> None:
    tag = "bench-farm:%s" % board.name
    # a previous farm in this state dir used other ports: forget its lines for this board
    known.lines = [l for l in known.lines if not l.text.endswith(" " + tag)]
    public = Path(board.host_key + ".pub").read_text().split()
    key = paramiko.PKey.from_type_string(public[0], base64.b64decode(public[1]))
    known.set_key(board.host, board.port, key, comment=tag)


def _write_devices_yaml(info: FarmInfo, n: int) -> None:
    devices: List[Dict[str, Any]] = []
    kinds = {name: (tags, bw) for name, _k, _p, tags, bw in board_names(n)}
    for board in info.boards:
        tags, bandwidth = kinds[board.name]
        entry: Dict[str, Any] = {
            "name": board.name,
            "type": board.type,
            "transport": "ssh",
            "host": board.host,
            "port": board.port,
            "user": info.user,
            "key_file": info.client_key,
            "python": info.python,
            "workdir": board.workdir,
            "tags": ["emulated"] + list(tags),
            "backend": "reference",
            "backend_options": {"profile": board.profile},
            "models": [{"variant": "emulated", "path": "emulated"}],
            # no sensor can read an emulated board: its power is emulated per phase from the
            # board's published (or assumed) power budget, and labelled so (telemetry/emulated.py)
            "telemetry": [{"source": "emulated_power", "profile": board.profile}, {"source": "memory"}],
            "price_usd": BOARD_PRICES_USD[board.type],
            "timeouts": {"connect_s": 5.0, "command_s": 60.0},
            "description": "emulated %s: local sshd on %s (bench farm up), reference backend, emulated power"
            % (board.type, host_entry_name(board.host, board.port)),
        }
        if bandwidth is not None:
            entry["memory_bandwidth_gbps"] = bandwidth
        devices.append(entry)
    header = (
        "# Emulated boards written by `bench farm up` (harness/farm/sshd_farm.py).\n"
        "# Their host keys are in %s (known_hosts below).\n" % info.known_hosts
    )
    document = {"known_hosts": info.known_hosts, "devices": devices}
    Path(info.devices_yaml).write_text(header + yaml.safe_dump(document, sort_keys=False))


def load_farm(state_dir: Path) -> FarmInfo:
    path = Path(state_dir) / FARM_FILE
    try:
        return FarmInfo.from_json(path.read_text())
    except FileNotFoundError:
        raise FarmError("no farm in %s (run `bench farm up`)" % state_dir) from None


# ---------------------------------------------------------------------- stopping


def _cmdline(pid: int) -> str:
    try:
        return Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: parse after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _signal_and_wait(pids: List[int], timeout_s: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)
        if not any(_alive(p) for p in pids):
            return


def _session_pids(listener: int) -> List[int]:
    """sshd's per-connection processes below the listener (not the users' own commands)."""
    result: List[int] = []
    todo = [listener]
    while todo:
        for child in _children(todo.pop()):
            if _cmdline(child).startswith("sshd"):
                result.append(child)
                todo.append(child)
    return result


def _stop_board_processes(board: FarmBoard, sessions: bool = True) -> bool:
    pid = board.pid()
    # only a process that is this board's sshd (its config path on the command line): a pid file
    # left from an earlier boot may name an unrelated process by now
    if pid is None or not _alive(pid) or board.sshd_config not in _cmdline(pid):
        Path(board.pid_file).unlink(missing_ok=True)
        return False
    victims = _session_pids(pid) if sessions else []
    _signal_and_wait(victims + [pid])
    Path(board.pid_file).unlink(missing_ok=True)
    return True


def stop_board(state_dir: Path, name: str, sessions: bool = True) -> bool:
    """Kill one board's sshd (and, by default, its open SSH sessions: a dropped connection)."""
    return _stop_board_processes(load_farm(state_dir).board(name), sessions)


def start_board(state_dir: Path, name: str, timeout_s: float = 10.0) -> None:
    """Start one board's sshd again, on the same address, port and host key."""
    info = load_farm(state_dir)
    board = info.board(name)
    pid = board.pid()
    if pid is not None and _alive(pid) and board.sshd_config in _cmdline(pid):
        return  # already running
    _start_sshd(info.sshd, board, timeout_s)


def farm_down(state_dir: Path) -> List[str]:
    """Stop every board of the farm in state_dir by the pids in their PidFiles; the names stopped."""
    state = Path(state_dir).resolve()
    try:
        boards = load_farm(state).boards
    except FarmError:
        boards = []
        # farm.json lost: fall back to the pid files the configs point at
        for config in sorted((state / "sshd").glob("*/sshd_config")):
            boards.append(FarmBoard(
                name=config.parent.name, type="", profile="", host="", port=0, workdir="",
                sshd_config=str(config), pid_file=str(config.parent / "sshd.pid"),
                log_file=str(config.parent / "sshd.log"), host_key="",
            ))
    stopped = [b.name for b in boards if _stop_board_processes(b)]
    (state / FARM_FILE).unlink(missing_ok=True)
    return stopped


@contextmanager
def running_farm(n: int, state_dir: Path, base_ip: str = "127.0.0.2",
                 python: str = sys.executable) -> Iterator[FarmInfo]:
    """farm_up ... farm_down, for tests and benchmarks."""
    info = farm_up(n, state_dir, base_ip=base_ip, python=python)
    try:
        yield info
    finally:
        farm_down(state_dir)
