"""A worker prepares what its jobs read alike once: the devices file is parsed again only when it
changed on disk (a 10,000-board inventory takes seconds to parse: per job, that is the worker's
whole CPU), and the runner artifact is built once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from harness.config.yaml_lines import ConfigError
from harness.farm.deploy import build_runner
from harness.queue import execute
from harness.queue.execute import JobInputs

DEVICE = """\
  - name: %s
    type: local
    transport: local
    backend: reference
    models:
      - {variant: emulated, path: .}
"""


def write_devices(path: Path, names: list) -> None:
    path.write_text("devices:\n" + "".join(DEVICE % n for n in names))


def test_the_devices_file_is_parsed_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = execute.load_devices
    monkeypatch.setattr(execute, "load_devices", lambda path: calls.append(path) or real(path))
    devices = tmp_path / "devices.yaml"
    write_devices(devices, ["a", "b"])
    inputs = JobInputs()
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(inputs.inventory(devices))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(i) for i in seen}) == 1  # eight jobs at once: one parse
    assert [d.name for d in seen[0].devices] == ["a", "b"]

    write_devices(devices, ["a", "b", "c"])  # a team adds a board while the worker runs
    assert [d.name for d in inputs.inventory(devices).devices] == ["a", "b", "c"]
    assert len(calls) == 2

    stat = devices.stat()  # same size, same mtime: only ctime and the content tell
    devices.write_text(devices.read_text().replace("name: c", "name: d"))
    os.utime(devices, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert [d.name for d in inputs.inventory(devices).devices] == ["a", "b", "d"]

    devices.write_text("devices: [\n")  # broken: every job says so, nothing stale is used
    for _ in range(2):
        with pytest.raises(ConfigError):
            inputs.inventory(devices)
    write_devices(devices, ["e"])
    assert [d.name for d in inputs.inventory(devices).devices] == ["e"]


def test_a_missing_devices_file_fails_as_load_devices_says(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        JobInputs().inventory(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in str(caught.value)


def test_the_runner_is_built_once_and_is_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = JobInputs()
    first = inputs.runner()
    assert first.sha256 == build_runner().sha256
    monkeypatch.setattr("harness.farm.deploy.build_runner", lambda: pytest.fail("built twice"))
    assert inputs.runner() is first
