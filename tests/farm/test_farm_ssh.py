"""SSHTransport against real sshd: the same behaviour as LocalTransport, plus clear SSH errors."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import paramiko
import pytest

from harness.farm.known_hosts import KnownHosts, fetch_host_key, fingerprint, host_entry_name
from harness.farm.ssh import (
    AuthFailed,
    HostKeyChanged,
    HostKeyUnknown,
    SSHTransport,
    Unreachable,
    kill_process_group,
    process_state,
)
from harness.farm.sshd_farm import FarmInfo, generate_ed25519
from harness.farm.transport import CommandTimeout, TransportError

Connect = Callable[..., SSHTransport]

HOSTILE = [
    "plain",
    "with space",
    "  leading and trailing  ",
    "it's",
    'say "hi"',
    "$(touch {pwned})",
    "`touch {pwned}`",
    "; touch {pwned}; echo",
    "a && b || c | d > {pwned}",
    "line1\nline2\n",
    "tab\there",
    "$HOME ${PATH} $$ $1 $@",
    "*",
    "~",
    "~/x",
    "-n",
    "--",
    "back\\slash\\",
    "",
    "ünïcødé ✓",
    "'\"'\"'",
]


@pytest.mark.parametrize("reuse_shell", [True, False], ids=["shared-shell", "channel-per-command"])
def test_hostile_arguments_come_back_exactly(connect: Connect, tmp_path: Path, reuse_shell: bool) -> None:
    pwned = tmp_path / "pwned"
    args = [a.replace("{pwned}", str(pwned)) for a in HOSTILE]
    result = connect(reuse_shell=reuse_shell).run(["printf", "%s\\0"] + args, timeout_s=20)
    assert result.ok, result.stderr
    assert result.stdout.split(b"\0")[:-1] == [a.encode("utf-8") for a in args]
    assert result.stderr == b""  # the wrapper's pgid marker is stripped
    assert not pwned.exists(), "an argument was interpreted by a remote shell"


def test_hostile_argument_as_cwd_and_program_args(connect: Connect, board_dir: Path) -> None:
    odd = board_dir / "dir with 'quotes' and $(x)"
    odd.mkdir()
    argv = ["sh", "-c", 'pwd; printf "%s|" "$@"', "sh", "a b", "$(id)"]
    result = connect().run(argv, timeout_s=20, cwd=str(odd))
    assert result.stdout == (str(odd) + "\na b|$(id)|").encode()


@pytest.mark.parametrize("reuse_shell", [True, False], ids=["shared-shell", "channel-per-command"])
def test_exit_code_stdin_and_missing_program(connect: Connect, reuse_shell: bool) -> None:
    transport = connect(reuse_shell=reuse_shell)
    failed = transport.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=20)
    assert (failed.exit_code, failed.stdout, failed.stderr, failed.ok) == (7, b"out\n", b"err\n", False)
    with pytest.raises(TransportError, match="exit 7"):
        failed.check("the thing")
    assert transport.run(["cat"], timeout_s=20, stdin=b"fed\x00in").stdout == b"fed\x00in"
    assert transport.run(["cat"], timeout_s=20).stdout == b""  # no stdin: EOF at once, no hang
    with pytest.raises(TransportError, match="cannot start no-such-program-xyz"):
        transport.run(["no-such-program-xyz", "arg"], timeout_s=20)
    with pytest.raises(TransportError, match="cannot enter directory"):
        transport.run(["true"], timeout_s=20, cwd="/nonexistent/dir")
    # a program's own exit code 127 is not mistaken for "could not start"
    assert transport.run(["sh", "-c", "exit 127"], timeout_s=20).exit_code == 127


def test_commands_share_one_shell_and_keep_every_byte(connect: Connect) -> None:
    transport = connect()
    # each command's parent is the connection's one sh (a channel per command would give a new one)
    parents = {transport.run(["sh", "-c", "echo $PPID"], timeout_s=20).stdout for _ in range(5)}
    assert len(parents) == 1
    assert connect(reuse_shell=False).run(["sh", "-c", "echo $PPID"], timeout_s=20).stdout not in parents
    # output that imitates the shell's own framing, NULs, no final newline: returned unchanged
    script = ("printf '\\n@@bench-done 0123 0 5 5\\n@@bench-started x 1\\n'; printf 'a\\000b'; "
              "printf '\\n@@bench-done fake\\n' >&2; printf 'tail'")
    result = transport.run(["sh", "-c", script], timeout_s=20)
    assert result.stdout == b"\n@@bench-done 0123 0 5 5\n@@bench-started x 1\na\x00btail"
    assert result.stderr == b"\n@@bench-done fake\n" and result.exit_code == 0
    assert transport.home().startswith("/") and transport.run(["pwd"], timeout_s=20).ok


def test_large_stdout_and_stderr_do_not_hang(connect: Connect) -> None:
    # 6 MiB on each stream, interleaved: without concurrent draining the remote side blocks on a
    # full window and recv_exit_status() never returns (paramiko #448 / #1778)
    script = (
        "import sys\n"
        "block = b'o' * 65536\n"
        "for i in range(96):\n"
        "    sys.stdout.buffer.write(block); sys.stdout.flush()\n"
        "    sys.stderr.buffer.write(block.replace(b'o', b'e')); sys.stderr.flush()\n"
    )
    started = time.monotonic()
    result = connect().run(["python3", "-c", script], timeout_s=60)
    assert result.ok, result.stderr[-300:]
    assert len(result.stdout) == 96 * 65536 and set(result.stdout) == {ord("o")}
    assert len(result.stderr) == 96 * 65536 and set(result.stderr) == {ord("e")}
    assert time.monotonic() - started < 30


def test_large_stdin_while_output_flows(connect: Connect) -> None:
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB echoed back while we are still sending
    result = connect().run(["cat"], timeout_s=60, stdin=data)
    assert result.ok and result.stdout == data


def _alive_on_board(transport: SSHTransport, pid: int) -> bool:
    return process_state(transport, pid) is not None


def _wait_gone(transport: SSHTransport, pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process_state(transport, pid) is None:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("reuse_shell", [True, False], ids=["shared-shell", "channel-per-command"])
def test_timeout_kills_the_remote_process_group(connect: Connect, board_dir: Path, reuse_shell: bool) -> None:
    transport = connect(reuse_shell=reuse_shell)
    pids = board_dir / "pids"
    script = "echo $$ > %s; sleep 300 & echo $! >> %s; sleep 301; echo never" % (pids, pids)
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"ran longer than 1 s and was killed \(process group \d+"):
        transport.run(["sh", "-c", script], timeout_s=1.0)
    assert time.monotonic() - started < 10
    shell_pid, child_pid = [int(x) for x in pids.read_text().split()]
    assert _wait_gone(transport, shell_pid), "the command survived its timeout"
    assert _wait_gone(transport, child_pid), "the command's background child survived"
    assert transport.run(["echo", "still usable"], timeout_s=20).stdout == b"still usable\n"


def test_put_and_read_bytes(connect: Connect, board_dir: Path) -> None:
    transport = connect()
    target = board_dir / "deep" / "er" / "file name.bin"
    payload = bytes(range(256)) * 1000
    transport.put_bytes(payload, str(target), mode=0o751)
    assert target.read_bytes() == payload
    assert target.stat().st_mode & 0o777 == 0o751
    assert [p.name for p in target.parent.iterdir()] == ["file name.bin"]  # no temporary left
    transport.put_bytes(b"replaced", str(target))  # overwrite is atomic too
    assert target.read_bytes() == b"replaced" and target.stat().st_mode & 0o777 == 0o644
    assert transport.read_bytes(str(target)) == b"replaced"
    assert transport.read_bytes(str(target), offset=3) == b"laced"
    assert transport.read_bytes(str(target), offset=3, max_bytes=2) == b"la"
    assert transport.read_bytes(str(target), offset=100) == b""
    journal = board_dir / "journal.jsonl"  # polled as a runner appends to it
    journal.write_bytes(b"one\n")
    assert transport.read_bytes(str(journal), offset=4) == b""  # nothing new: stat says so
    with open(journal, "ab") as handle:
        handle.write(b"two\n")
    assert transport.read_bytes(str(journal), offset=4) == b"two\n"
    assert transport.read_bytes(str(journal), offset=4, max_bytes=2) == b"tw"
    big = board_dir / "big.bin"
    big.write_bytes(payload * 20)  # 5 MB: the prefetching path
    assert transport.read_bytes(str(big)) == payload * 20
    assert transport.read_bytes(str(big), offset=1000, max_bytes=300000) == (payload * 20)[1000:301000]
    assert transport.read_bytes("/proc/self/status").startswith(b"Name:")  # size-less files
    with pytest.raises(FileNotFoundError):
        transport.read_bytes(str(board_dir / "missing"))
    with pytest.raises(FileNotFoundError):
        transport.read_bytes(str(board_dir / "missing"), offset=5)  # a journal not written yet


def test_tilde_is_the_remote_home(connect: Connect) -> None:
    transport = connect()
    home = transport.run(["sh", "-c", 'printf %s "$HOME"'], timeout_s=20).text()
    assert transport.home() == home
    assert transport.expand("~") == home and transport.expand("~/a/b") == home + "/a/b"
    assert transport.expand("/abs/~x") == "/abs/~x"
    name = "~/.edge-vlm-bench-test-%d" % time.time_ns()
    try:
        transport.put_bytes(b"home", name + "/f")
        assert Path(home, name[2:], "f").read_bytes() == b"home"
        assert transport.read_bytes(name + "/f") == b"home"
        assert transport.run(["cat", "f"], timeout_s=20, cwd=name).stdout == b"home"
    finally:
        transport.run(["rm", "-rf", transport.expand(name)], timeout_s=20)


def test_spawn_detached_survives_the_connection(connect: Connect, board_dir: Path) -> None:
    transport = connect()
    out, err = board_dir / "out.log", board_dir / "err.log"
    pid = transport.spawn_detached(
        ["sh", "-c", "echo started; echo oops >&2; sleep 1; echo after-close; exec sleep 60"],
        cwd=str(board_dir / "run dir"), stdout_path=str(out), stderr_path=str(err),
    )
    try:
        stat = transport.read_bytes("/proc/%d/stat" % pid).decode()
        assert int(stat.rsplit(")", 1)[1].split()[2]) == pid, "pid is not its process group id"
        transport.close()
        time.sleep(1.5)
        again = connect()
        assert _alive_on_board(again, pid)
        assert again.read_bytes(str(out)) == b"started\nafter-close\n"
        assert again.read_bytes(str(err)) == b"oops\n"
        assert (board_dir / "run dir").is_dir()
    finally:
        assert kill_process_group(connect(), pid)
        assert process_state(connect(), pid) is None or _wait_gone(connect(), pid)
    with pytest.raises(TransportError, match="cannot start"):
        connect().spawn_detached(["no-such-program-xyz"], str(board_dir), str(out), str(err))


def test_reconnects_after_close_and_parallel_calls(connect: Connect) -> None:
    transport = connect()
    assert transport.run(["echo", "1"], timeout_s=20).stdout == b"1\n"
    transport.close()
    assert transport.run(["echo", "2"], timeout_s=20).stdout == b"2\n"  # lazily reconnected
    results = []

    def work(i: int) -> None:
        results.append(transport.run(["sh", "-c", "sleep 0.3; echo %d" % i], timeout_s=20).stdout)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [b"%d\n" % i for i in range(6)]
    assert time.monotonic() - started < 3  # channels run concurrently on one connection
    # paramiko has no getter: read the packetizer's private setting (keep-alive is on, paramiko #2326)
    packetizer = transport._client.get_transport().packetizer  # type: ignore[union-attr]
    assert getattr(packetizer, "_Packetizer__keepalive_interval") == transport.keepalive_s


# ---------------------------------------------------------------------- connection errors


def test_unknown_host_key_says_how_to_trust(
    farm: FarmInfo, connect: Connect, tmp_path: Path
) -> None:
    board = farm.board("orin-nano")
    offered = fingerprint(fetch_host_key(board.host, board.port, timeout=5))
    transport = connect("orin-nano", known_hosts_path=tmp_path / "empty_known_hosts")
    with pytest.raises(HostKeyUnknown) as info:
        transport.run(["true"], timeout_s=10)
    message = str(info.value)
    assert "bench devices trust orin-nano" in message
    assert offered in message and offered.startswith("SHA256:")
    assert "%s:%d" % (board.host, board.port) in message


def test_changed_host_key_is_refused_with_both_fingerprints(
    farm: FarmInfo, connect: Connect, tmp_path: Path
) -> None:
    board = farm.board("agx-orin")
    real = fetch_host_key(board.host, board.port, timeout=5)
    generate_ed25519(tmp_path / "impostor", "impostor")
    impostor_line = (tmp_path / "impostor.pub").read_text().split()
    known = KnownHosts.load(Path(farm.known_hosts))
    known.path = tmp_path / "known_hosts"
    fake = paramiko.PKey.from_type_string(impostor_line[0], base64.b64decode(impostor_line[1]))
    known.set_key(board.host, board.port, fake, comment="bench:agx-orin")
    known.save()
    recorded = [l for l in KnownHosts.load(known.path).lookup(board.host, board.port)][0]
    with pytest.raises(HostKeyChanged) as info:
        connect("agx-orin", known_hosts_path=known.path).run(["true"], timeout_s=10)
    message = str(info.value)
    assert "HOST KEY CHANGED" in message
    assert "expected %s" % fingerprint(fake) in message
    assert "offered  %s" % fingerprint(real) in message
    assert recorded.text in message and "%s:%d" % (known.path, recorded.line_no) in message
    assert "bench devices trust agx-orin --replace" in message


def test_wrong_client_key_names_user_and_key(farm: FarmInfo, connect: Connect, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_ed25519"
    generate_ed25519(wrong, "not-authorized")
    with pytest.raises(AuthFailed) as info:
        connect("upsquared-n", key_file=str(wrong)).run(["true"], timeout_s=10)
    message = str(info.value)
    assert "authentication failed for user %s" % farm.user in message
    assert str(wrong) in message and "authorized_keys" in message
    with pytest.raises(AuthFailed, match="does not exist"):
        connect("upsquared-n", key_file=str(tmp_path / "absent")).run(["true"], timeout_s=10)


def test_unreachable_port_names_address_and_timeout(farm: FarmInfo, connect: Connect) -> None:
    host = farm.board("rtx-pc").host
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]  # free, and nothing listens once closed
    with pytest.raises(Unreachable) as info:
        connect("rtx-pc", port=port, connect_timeout_s=2.0).run(["true"], timeout_s=10)
    assert "%s:%d" % (host, port) in str(info.value) and "2 s" in str(info.value)


def test_silent_server_times_out_with_a_clear_message(farm: FarmInfo, connect: Connect) -> None:
    host = farm.board("rtx-pc").host
    with socket.socket() as silent:  # accepts TCP but never speaks SSH (a hung board)
        silent.bind((host, 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(Unreachable) as info:
            connect("rtx-pc", port=port, connect_timeout_s=1.0).run(["true"], timeout_s=10)
        assert time.monotonic() - started < 8
    assert "%s:%d" % (host, port) in str(info.value) and "1 s" in str(info.value)


def test_host_entry_names() -> None:
    assert host_entry_name("board.lan", 22) == "board.lan"
    assert host_entry_name("127.0.0.2", 2222) == "[127.0.0.2]:2222"
