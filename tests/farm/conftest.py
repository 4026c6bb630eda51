"""A real emulated farm for the transport-level tests: OpenSSH sshd processes on 127.0.0.x."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from harness.farm.ssh import SSHTransport
from harness.farm.sshd_farm import FarmBoard, FarmInfo, farm_down, farm_up, find_sshd, install_sshd

N_BOARDS = 5  # all five board types, >= 4 distinct loopback addresses
BASE_IP = "127.0.0.20"  # away from the default 127.0.0.2 a user's own `bench farm up` takes


def require_sshd() -> str:
    """sshd's path; installs it with apt-get when we are root, else skips with the reason -
    except in CI (CI=true), where missing sshd is a failure: these tests must not vanish there."""
    path = find_sshd()
    if path is None and os.environ.get("BENCH_FARM_NO_INSTALL") != "1":
        path = install_sshd()
    if path is not None:
        return path
    reason = (
        "OpenSSH sshd is not installed (apt-get install -y openssh-server); the farm tests run "
        "real sshd processes on 127.0.0.x"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " - in CI this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sshd() -> str:
    """sshd's path (skip or, in CI, fail when it cannot be had)."""
    return require_sshd()


@pytest.fixture(scope="session")
def farm(sshd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmInfo]:
    state = tmp_path_factory.mktemp("farm")
    info = farm_up(N_BOARDS, state, base_ip=BASE_IP)
    try:
        yield info
    finally:
        farm_down(state)


def make_transport(farm: FarmInfo, board: FarmBoard, **overrides: object) -> SSHTransport:
    options = dict(
        host=board.host, port=board.port, user=farm.user, key_file=farm.client_key,
        known_hosts_path=Path(farm.known_hosts), connect_timeout_s=5.0, command_timeout_s=30.0,
        name=board.name,
    )
    options.update(overrides)
    return SSHTransport(**options)  # type: ignore[arg-type]


@pytest.fixture
def transport_for() -> Callable[..., SSHTransport]:
    """transport_for(farm_info, board, **overrides): an SSHTransport the test closes itself."""
    return make_transport


@pytest.fixture
def connect(farm: FarmInfo) -> Iterator[Callable[..., SSHTransport]]:
    """connect(board_name, **SSHTransport overrides) -> a transport closed after the test."""
    opened: List[SSHTransport] = []

    def _connect(name: str = "ax650n", **overrides: object) -> SSHTransport:
        transport = make_transport(farm, farm.board(name), **overrides)
        opened.append(transport)
        return transport

    yield _connect
    for transport in opened:
        transport.close()


@pytest.fixture
def board_dir(farm: FarmInfo, request: pytest.FixtureRequest) -> Path:
    """A fresh directory inside the ax650n board's workdir, per test."""
    path = Path(farm.board("ax650n").workdir) / request.node.name.replace("[", "_").replace("]", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path
