"""`bench devices trust NAME` shows the fingerprint before recording anything, and asks.

Issue 13: trust recorded a host key before the user saw it. Now the key is shown, then confirmed
(typer.confirm), compared with --expect SHA256:..., or taken with --yes; with no answer on stdin
and neither flag, nothing is recorded and the message says what to pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.farm.known_hosts import fetch_host_key, fingerprint
from harness.farm.sshd_farm import FarmInfo

from ..safety.helpers import bench, one_line_error

DEVICES = """\
known_hosts: kh
devices:
  - name: board
    type: orin-nano
    host: {host}
    port: {port}
    user: {user}
    key_file: {key}
    backend: reference
    models:
      - variant: fp16
        path: /models/x
"""

pytestmark = pytest.mark.journey


@pytest.fixture
def trust_project(farm: FarmInfo, tmp_path: Path) -> tuple:
    board = farm.board("agx-orin")
    (tmp_path / "devices.yaml").write_text(DEVICES.format(host=board.host, port=board.port, user=farm.user,
                                                          key=farm.client_key))
    return tmp_path, fingerprint(fetch_host_key(board.host, board.port, 5))


def test_no_stdin_and_no_flag_records_nothing(trust_project: tuple) -> None:
    project, fp = trust_project
    proc = bench(project, "devices", "trust", "board")
    assert proc.returncode == 2
    assert "presents ssh-ed25519 key %s" % fp in proc.stderr  # shown first
    assert "no answer on stdin" in one_line_error(proc) and "--expect SHA256:" in proc.stderr
    assert not (project / "kh").exists()


def test_declined_answer_records_nothing_and_yes_records(trust_project: tuple) -> None:
    project, fp = trust_project
    proc = bench(project, "devices", "trust", "board", stdin="n\n")
    assert proc.returncode == 1 and "not approved, nothing recorded" in one_line_error(proc)
    assert fp in proc.stderr and "Record it in" in proc.stderr and not (project / "kh").exists()
    proc = bench(project, "devices", "trust", "board", stdin="y\n")
    assert proc.returncode == 0, proc.stderr
    assert "recorded in" in proc.stderr and "bench:board" in (project / "kh").read_text()
    # already on record: nothing to ask
    proc = bench(project, "devices", "trust", "board")
    assert proc.returncode == 0 and "already in" in proc.stderr


def test_expect_compares_before_recording(trust_project: tuple) -> None:
    project, fp = trust_project
    wrong = "SHA256:" + "A" * 43
    proc = bench(project, "devices", "trust", "board", "--expect", wrong)
    assert proc.returncode == 1
    assert "not the expected %s; nothing recorded" % wrong in one_line_error(proc)
    assert not (project / "kh").exists()
    assert bench(project, "devices", "trust", "board", "--expect", "md5:xx").returncode == 2
    proc = bench(project, "devices", "trust", "board", "--expect", fp)
    assert proc.returncode == 0 and (project / "kh").exists(), proc.stderr


def test_yes_records_without_asking(trust_project: tuple) -> None:
    project, fp = trust_project
    proc = bench(project, "devices", "trust", "board", "--yes")
    assert proc.returncode == 0 and fp in proc.stderr and "Record it" not in proc.stderr
    assert (project / "kh").exists()
