"""The project's known_hosts: fingerprints like ssh-keygen, trust, [host]:port, changed keys."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from harness.farm.known_hosts import (
    HostKeyMismatch,
    KnownHosts,
    fetch_host_key,
    fingerprint,
    host_entry_name,
    trust,
)
from harness.farm.ssh import SSHTransport
from harness.farm.sshd_farm import FarmInfo, generate_ed25519


def _key(pub_line: str) -> paramiko.PKey:
    kind, blob = pub_line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    line = generate_ed25519(tmp_path / "k", "comment")
    mine = fingerprint(_key(line))
    assert mine.startswith("SHA256:") and not mine.endswith("=")
    if shutil.which("ssh-keygen"):
        out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True).stdout
        assert out.split()[1] == mine


def test_trust_records_and_is_idempotent(farm: FarmInfo, tmp_path: Path) -> None:
    board = farm.board("ax650n")
    path = tmp_path / "results" / "known_hosts"
    path.parent.mkdir()
    path.write_text("# a user's comment\nother.host ssh-ed25519 %s\n" % _key(
        generate_ed25519(tmp_path / "other", "x")).get_base64())
    fp, added = trust("ax650n", board.host, board.port, path, timeout=5)
    assert added and fp == fingerprint(fetch_host_key(board.host, board.port, 5))
    text = path.read_text()
    assert text.startswith("# a user's comment\nother.host ")  # other lines kept
    assert "[%s]:%d ssh-ed25519 " % (board.host, board.port) in text and text.rstrip().endswith("bench:ax650n")
    assert trust("ax650n", board.host, board.port, path, timeout=5) == (fp, False)
    # and the transport now accepts the board with this file alone
    with SSHTransport(board.host, board.port, farm.user, farm.client_key, known_hosts_path=path, name="ax650n") as t:
        assert t.run(["true"], timeout_s=20).ok and t.host_key_fingerprint == fp


def test_trust_refuses_a_changed_key_unless_replace(farm: FarmInfo, tmp_path: Path) -> None:
    board = farm.board("orin-nano")
    path = tmp_path / "known_hosts"
    old = _key(generate_ed25519(tmp_path / "old", "x"))
    known = KnownHosts.load(path)
    known.set_key(board.host, board.port, old)
    known.save()
    with pytest.raises(HostKeyMismatch) as info:
        trust("orin-nano", board.host, board.port, path, timeout=5)
    assert fingerprint(old) in str(info.value) and "--replace" in str(info.value)
    fp, added = trust("orin-nano", board.host, board.port, path, timeout=5, replace=True)
    assert added and [l.entry.key for l in KnownHosts.load(path).lookup(board.host, board.port)] == [
        fetch_host_key(board.host, board.port, 5)]


def test_lookup_handles_port_22_and_hashed_names(tmp_path: Path) -> None:
    key = _key(generate_ed25519(tmp_path / "k", "x"))
    hashed = paramiko.HostKeys.hash_host("[10.0.0.5]:2222")
    path = tmp_path / "known_hosts"
    path.write_text(
        "board.lan ssh-ed25519 %s\n%s ssh-ed25519 %s\n@cert-authority * ssh-ed25519 %s\nbroken line\n"
        % (key.get_base64(), hashed, key.get_base64(), key.get_base64())
    )
    known = KnownHosts.load(path)
    assert [l.line_no for l in known.lookup("board.lan", 22)] == [1]
    assert known.lookup("board.lan", 2222) == []
    assert [l.line_no for l in known.lookup("10.0.0.5", 2222)] == [2]
    assert host_entry_name("10.0.0.5", 2222) == "[10.0.0.5]:2222"
    known.save()
    assert path.read_text().splitlines()[2:] == ["@cert-authority * ssh-ed25519 %s" % key.get_base64(), "broken line"]


def test_fetch_host_key_unreachable_is_clear() -> None:
    from harness.farm.known_hosts import HostKeyError
    with pytest.raises(HostKeyError, match=r"cannot reach 127\.0\.0\.1:1 within 2 s"):
        fetch_host_key("127.0.0.1", 1, timeout=2)
