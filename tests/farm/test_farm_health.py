"""Device checks over real sshd: every field filled where readable, failures as messages."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable

from harness.farm.health import DEFAULT_MODULES, HealthReport, check_device
from harness.farm.ssh import SSHTransport
from harness.farm.sshd_farm import FarmInfo

Connect = Callable[..., SSHTransport]


def test_health_report_fields(farm: FarmInfo, connect: Connect) -> None:
    board = farm.board("orin-nano")
    modules = ("json", "sqlite3", "no_such_module_xyz", "axengine")
    report = check_device(connect("orin-nano"), sys.executable, board.workdir + "/not/yet",
                          timeout_s=60, modules=modules)
    assert report.errors == [], report.errors
    assert report.reachable and report.ok
    assert report.host_key is not None and report.host_key.startswith("SHA256:")
    assert report.python_version == "%d.%d.%d" % sys.version_info[:3] and report.python_ok
    assert report.arch == platform.machine() and report.os == "Linux" and report.kernel == platform.release()
    assert report.disk_free_mb and report.disk_free_mb > 0
    assert report.mem_total_mb and report.mem_available_mb and 0 < report.mem_available_mb <= report.mem_total_mb
    assert report.modules["json"].ok and report.modules["sqlite3"].ok
    assert report.modules["sqlite3"].error is None
    assert not report.modules["no_such_module_xyz"].ok
    assert "No module named 'no_such_module_xyz'" in (report.modules["no_such_module_xyz"].error or "")
    assert set(report.modules) == set(modules)
    assert all(report.tools.values()) and set(report.tools) >= {"setsid", "flock", "nohup"}
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    assert report.governor == (governor.read_text().strip() if governor.exists() else None)
    data = json.loads(report.to_json())
    assert data["ok"] is True and data["modules"]["json"]["ok"] is True
    assert data["python_version"] == report.python_version and data["tools"]["flock"] is True
    assert isinstance(HealthReport(device="x", checked_at=0.0).to_dict()["ok"], bool)


def test_default_backend_modules_are_probed(farm: FarmInfo, connect: Connect) -> None:
    report = check_device(connect("rtx-pc"), sys.executable, farm.board("rtx-pc").workdir, timeout_s=90)
    assert set(report.modules) == set(DEFAULT_MODULES)
    for name, status in report.modules.items():
        assert status.ok or status.error, name  # either imported, or says why not
        if status.ok:
            assert status.error is None


def test_unreachable_board_is_a_report_not_a_crash(farm: FarmInfo, connect: Connect) -> None:
    unreachable = connect("ax650n", port=1, connect_timeout_s=1.0)
    report = check_device(unreachable, sys.executable, "/tmp", timeout_s=10)
    assert not report.reachable and not report.ok
    assert "cannot reach" in report.errors[0] and ":1 " in report.errors[0]


def test_missing_or_old_python_is_reported(farm: FarmInfo, connect: Connect, tmp_path: Path) -> None:
    transport = connect("agx-orin")
    report = check_device(transport, "/nonexistent/python3", farm.board("agx-orin").workdir,
                          timeout_s=30)
    assert report.reachable and not report.python_ok and not report.ok
    assert any("/nonexistent/python3" in e and "cannot start" in e for e in report.errors)
    fake = tmp_path / "python2.7"  # a Python too old for the probe's syntax still reports itself
    fake.write_text("#!/bin/sh\necho 'Python 2.7.18' >&2\nexit 1\n")
    os.chmod(fake, 0o755)
    report = check_device(transport, str(fake), "/tmp", timeout_s=30)
    assert report.python_version == "2.7.18" and not report.python_ok
    assert any("did not run the probe" in e for e in report.errors)
