"""Hostile text through the installed `bench`: shown literally, one-line errors, nothing overwritten.

Reproducers from issue 13: ``host: "[/x]127.0.0.9"`` or ``python: "/opt/py[/x]/python3"`` crashed
list, check and run with rich's MarkupError (leaving the run "running"); a corrupt
results/bench.sqlite gave a DatabaseError traceback; ``--resume`` with a different devices file
silently mixed backend settings in one run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from harness.store.sqlite import RunRecord, Store

from .helpers import DEVICE, bench, one_line_error

pytestmark = pytest.mark.journey

SSH_DEVICE = """\
  - name: board
    type: orin-nano
    host: "[/x]127.0.0.9"
    port: 2
    backend: reference
    timeouts: {connect_s: 1}
    models:
      - variant: fp16
        path: /models/x
"""


def quick_suite(project: Path) -> None:
    text = (project / "suites" / "image.yaml").read_text().replace("name: image\n", "name: quick\n", 1)
    text = text.replace("output_tokens: 32", "output_tokens: 4").replace("repetitions: 5", "repetitions: 1")
    (project / "suites" / "quick.yaml").write_text(text)


def test_markup_in_devices_yaml_is_shown_literally(project: Path) -> None:
    python = "/opt/py[/x]/python3"
    (project / "devices.yaml").write_text(
        DEVICE.format(name="emu", workdir="results/work", options="{profile: rtx}")
        + "    python: %s\n" % python + SSH_DEVICE)
    listed = bench(project, "devices", "list")
    assert listed.returncode == 0, listed.stderr
    assert "[/x]127.0.0.9:2" in listed.stdout and "MarkupError" not in listed.stderr
    checked = bench(project, "devices", "check", timeout=120)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert "MarkupError" not in checked.stdout + checked.stderr
    assert "[/x]" in checked.stdout  # the board's and the file's text, as it is


def test_markup_in_python_path_fails_the_run_not_the_cli(project: Path) -> None:
    quick_suite(project)
    (project / "devices.yaml").write_text(
        DEVICE.format(name="emu", workdir="results/work", options="{profile: rtx}")
        + "    python: /opt/py[/x]/python3\n")
    started = time.monotonic()
    proc = bench(project, "run", "--suite", "quick", "--devices", "emu", "--json", timeout=300)
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    payload = json.loads(proc.stdout)
    [device] = payload["devices"]
    assert device["state"] == "failed" and "/opt/py[/x]/python3" in device["error"]
    # a python that does not exist cannot heal: no minutes of retries
    assert time.monotonic() - started < 60
    runs = Store(project / "results" / "bench.sqlite").list_runs()
    assert [r.status for r in runs] == ["failed"]  # not left "running"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["random", "pages"])
def test_corrupt_store_is_one_line_and_never_overwritten(project: Path, damage: str) -> None:
    path = project / "results" / "bench.sqlite"
    path.parent.mkdir()
    if damage == "random":
        path.write_bytes(bytes(range(256)) * 20)
    else:  # a real store whose pages after the header were overwritten
        store = Store(path)
        store.create_run(RunRecord("r1", "", "image", ["emu"], "finished"))
        store.close()
        sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        data = bytearray(path.read_bytes())
        data[100:] = b"\xa5" * (len(data) - 100)
        path.write_bytes(bytes(data))
    before = _sha(path)
    (project / "devices.yaml").write_text(DEVICE.format(name="emu", workdir="results/work", options="{}"))
    for args in (["results", "list"], ["run", "--suite", "image", "--devices", "emu"], ["report"]):
        proc = bench(project, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        line = one_line_error(proc)
        assert "bench.sqlite: not a readable results database" in line and "left untouched" in line
        assert _sha(path) == before


def test_resume_with_changed_device_settings_is_refused(project: Path) -> None:
    quick_suite(project)
    (project / "devices.yaml").write_text(DEVICE.format(name="emu", workdir="results/work",
                                                        options="{profile: rtx, time_scale: 0.1}"))
    first = bench(project, "run", "--suite", "quick", "--devices", "emu", "--json", timeout=300)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    (project / "other.yaml").write_text(DEVICE.format(name="emu", workdir="results/work",
                                                      options="{profile: jetson, time_scale: 0.1}"))
    proc = bench(project, "--devices-file", "other.yaml", "run", "--resume", run_id)
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "run %s was started with other settings than other.yaml now gives" % run_id in line
    assert "emu: backend_options: {'profile': 'rtx', 'time_scale': 0.1} -> {'profile': 'jetson'" in line
    assert "devices.yaml" in line
    # the same settings (a changed description or timeout is no measurement setting) resume
    (project / "same.yaml").write_text(DEVICE.format(name="emu", workdir="results/work",
                                                     options="{profile: rtx, time_scale: 0.1}")
                                       + "    description: relabelled\n")
    again = bench(project, "--devices-file", "same.yaml", "run", "--resume", run_id, timeout=300)
    assert again.returncode == 0, again.stderr


def test_markup_in_host_fails_the_device_not_the_run(project: Path) -> None:
    quick_suite(project)
    (project / "devices.yaml").write_text("devices:\n" + SSH_DEVICE)
    proc = bench(project, "run", "--suite", "quick", "--devices", "board", "--json", timeout=300)
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    [device] = json.loads(proc.stdout)["devices"]
    assert device["state"] == "failed" and "[/x]127.0.0.9" in device["error"]
    assert "[/x]127.0.0.9" in proc.stderr  # the progress and outcome tables show it as it is
    assert [r.status for r in Store(project / "results" / "bench.sqlite").list_runs()] == ["failed"]


@pytest.mark.parametrize("args, message", [
    (["results", "export", "--out", "/nonexistent/dir/x.csv"], "/nonexistent/dir is not a directory this user can write to"),
    (["--store", "sqlite:////proc/x/y.sqlite", "results", "list"], "/proc/x/y.sqlite: cannot open the results database"),
    (["--devices-file", "/etc", "devices", "list"], "/etc: cannot read"),
])
def test_unusable_paths_are_one_line(project: Path, args: list, message: str) -> None:
    proc = bench(project, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in one_line_error(proc)
