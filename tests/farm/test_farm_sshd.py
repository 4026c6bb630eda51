"""The emulated farm itself: distinct boards, a valid devices file, clean start and stop."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from harness.config.devices import load_devices
from harness.farm.known_hosts import KnownHosts
from harness.farm.sshd_farm import (
    FarmError,
    FarmInfo,
    board_names,
    farm_down,
    farm_up,
    load_farm,
    start_board,
    stop_board,
)
from harness.farm.ssh import ConnectionLost, SSHTransport, Unreachable



def test_devices_file_validates_and_describes_the_five_types(farm: FarmInfo) -> None:
    inventory = load_devices(Path(farm.devices_yaml))
    assert inventory.names() == ["ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc"]
    profiles = {d.name: d.backend_options["profile"] for d in inventory.devices}
    assert profiles == {"ax650n": "ax650n", "orin-nano": "orin-nano", "agx-orin": "agx-orin",
                        "upsquared-n": "upsquared-n", "rtx-pc": "rtx"}
    hosts = {d.host for d in inventory.devices}
    assert len(hosts) == 5 and all(h.startswith("127.0.0.") for h in hosts)
    assert len({d.workdir for d in inventory.devices}) == 5
    for device in inventory.devices:
        assert device.transport == "ssh" and device.backend == "reference" and device.user == farm.user
        assert device.python == sys.executable and "emulated" in device.tags
        assert [(m.variant, m.path) for m in device.models] == [("emulated", "emulated")]
        assert Path(device.workdir).is_dir() and device.key_file == farm.client_key
        assert KnownHosts.load(Path(farm.known_hosts)).lookup(device.host, device.port)
    assert [d.name for d in inventory.select("tag:jetson")] == ["orin-nano", "agx-orin"]
    # every board answers through the generated key and known_hosts
    for device in inventory.devices:
        with SSHTransport.from_device(device, Path(farm.known_hosts)) as transport:
            echoed = transport.run(["echo", device.name], timeout_s=20).stdout
            assert echoed == device.name.encode() + b"\n"


def test_more_than_five_boards_get_numbered_names() -> None:
    names = [n for n, *_ in board_names(8)]
    assert names == ["ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc",
                     "ax650n-2", "orin-nano-2", "agx-orin-2"]


def test_only_loopback_addresses(tmp_path: Path) -> None:
    with pytest.raises(FarmError, match="127.0.0.1-254"):
        farm_up(3, tmp_path, base_ip="127.0.0.253")
    with pytest.raises(FarmError, match="127.0.0.1-254"):
        farm_up(1, tmp_path, base_ip="10.0.0.2")


def test_board_restart_and_farm_down(
    sshd: str, transport_for: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    info = farm_up(2, tmp_path / "small", base_ip="127.0.0.40")
    try:
        board = info.board("orin-nano")
        transport = transport_for(info, board, connect_timeout_s=2.0)
        assert transport.run(["true"], timeout_s=20).ok
        caught: List[BaseException] = []

        def long_command() -> None:
            try:
                transport.run(["sleep", "8"], timeout_s=60)
            except BaseException as exc:  # collected for the assertion below
                caught.append(exc)

        worker = threading.Thread(target=long_command)
        worker.start()
        time.sleep(0.5)
        started = time.monotonic()
        assert stop_board(tmp_path / "small", "orin-nano")  # sshd and its sessions: a dropped link
        worker.join(20)
        # the drop is noticed at once, not after the command's 60 s timeout
        assert time.monotonic() - started < 5
        assert len(caught) == 1 and isinstance(caught[0], ConnectionLost), caught
        with pytest.raises(Unreachable):
            transport.run(["true"], timeout_s=20)
        start_board(tmp_path / "small", "orin-nano")  # same address, port and host key
        assert transport.run(["echo", "back"], timeout_s=20).stdout == b"back\n"
        transport.close()
        pids = [b.pid() for b in load_farm(tmp_path / "small").boards]
        assert all(pids)
    finally:
        stopped = farm_down(tmp_path / "small")
    assert sorted(stopped) == ["ax650n", "orin-nano"]
    for pid in pids:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _running(pid):  # type: ignore[arg-type]
            time.sleep(0.05)
        assert not _running(pid)  # type: ignore[arg-type]
    assert farm_down(tmp_path / "small") == []  # idempotent


def _running(pid: int) -> bool:
    try:
        state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and os.path.exists("/proc/%d" % pid)


def _bash_sources_rc(home: Path, extra_env: dict) -> bool:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SSH_CLIENT": "127.0.0.1 40000 22"}
    env.update(extra_env)
    out = subprocess.run(["bash", "-c", "echo ${BENCH_RC_MARK-none}"], env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=30).stdout.strip()
    return out == "sourced"


def test_boards_without_login_rc_skip_the_users_bashrc(
    sshd: str, transport_for: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    # bash's own rule, checked outside our code: a command that sshd hands to bash (SSH_CLIENT set)
    # sources ~/.bashrc only when bash is the top-level shell, i.e. SHLVL was unset or 0 on entry
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export BENCH_RC_MARK=sourced\n")
    if not _bash_sources_rc(home, {}):
        pytest.skip("this bash does not source ~/.bashrc for commands run by sshd (no SSH_SOURCE_BASHRC)")
    assert not _bash_sources_rc(home, {"SHLVL": "1"})
    # ...and a farm started with login_rc=False hands its sessions exactly that
    info = farm_up(1, tmp_path / "norc", base_ip="127.0.0.46", login_rc=False)
    try:
        config = Path(info.boards[0].sshd_config).read_text()
        assert "SetEnv SHLVL=1" in config.splitlines()
        with transport_for(info, info.boards[0]) as transport:
            level = transport.run(["sh", "-c", "echo ${SHLVL-unset}"], timeout_s=30).text().strip()
        # bash counts itself in (2), then hands its -c command over with its own level taken off
        assert level == "1"
    finally:
        farm_down(tmp_path / "norc")


def test_boards_keep_the_users_login_by_default(farm: FarmInfo, connect: Callable[..., SSHTransport]) -> None:
    config = Path(farm.boards[0].sshd_config).read_text()
    assert "SetEnv" not in config  # a user's farm logs in as the user's own shell does
    level = connect().run(["sh", "-c", "echo ${SHLVL-unset}"], timeout_s=30).text().strip()
    assert level in ("0", "unset")  # the login shell started as the top level: rc files are read
