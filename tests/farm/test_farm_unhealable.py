"""Errors no retry can heal fail at once over SSH (issue 13: a mistyped `python:` path was retried
for ~2.5 minutes of silence before the device failed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.farm.sshd_farm import FarmInfo

from ..safety.helpers import bench
from .test_farm_run import device_entry, farm_devices, outcomes, project  # noqa: F401  (fixture)

pytestmark = pytest.mark.journey


def test_mistyped_python_over_ssh_fails_at_once_with_the_message(farm: FarmInfo, project: Path) -> None:  # noqa: F811
    def edit(data: dict) -> None:
        device_entry(data, "ax650n")["python"] = "/opt/nope/python3"

    devices_file = farm_devices(farm, project, edit)
    started = time.monotonic()
    proc = bench(project, "--devices-file", str(devices_file), "run", "--suite", "quick", "--devices", "ax650n",
                 "--json", timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    outcome = outcomes(json.loads(proc.stdout))["ax650n"]
    assert outcome["state"] == "failed"
    assert "cannot start /opt/nope/python3" in outcome["error"], outcome["error"]
    assert elapsed < 60, elapsed  # the retry window alone was 120 s
