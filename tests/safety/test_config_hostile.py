"""Hostile and broken configuration files: one ConfigError naming file, line and field, at once.

Reproducers from issue 13 (fuzzing the loaders): "["*494 and a self-referencing alias raised
RecursionError; a ~350-byte alias bomb took 32 s and 4.4 GB before it was refused; a 4,300-digit
integer raised ValueError; a 300-character `source:` raised OSError (name too long).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from harness.config import yaml_lines
from harness.config.devices import load_devices
from harness.config.suites import load_suite
from harness.config.yaml_lines import ConfigError
from harness.errors import UsageError

from .helpers import ALIAS_BOMB, DEVICE, bench, one_line_error

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "devices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(loader, path: Path) -> str:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        loader(path)
    # "at once": the bomb took 32 s before; a refusal on the event stream takes milliseconds
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert message.startswith(str(path)), message
    return message


@pytest.mark.parametrize("loader", [load_devices, load_suite])
def test_deep_nesting_is_refused_with_its_line(tmp_path: Path, loader) -> None:
    assert "nested more than 64 levels" in refused(loader, write(tmp_path, "[" * 494))
    # block style goes through the other branch of the scanner
    block = "".join("%sk%d:\n" % ("  " * i, i) for i in range(100))
    assert ":65: nested more than 64 levels" in refused(loader, write(tmp_path, block))


@pytest.mark.parametrize("loader", [load_devices, load_suite])
def test_self_referencing_alias_is_refused(tmp_path: Path, loader) -> None:
    message = refused(loader, write(tmp_path, "devices: &a\n  - *a\n"))
    assert ":2: alias *a refers to a value that contains it" in message
    assert "alias *x refers" in refused(loader, write(tmp_path, "a: &x {b: [1, {c: *x}]}\n"))


def test_alias_bomb_is_refused_at_once_in_bounded_memory(tmp_path: Path) -> None:
    path = write(tmp_path, ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 400
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    message = refused(load_devices, path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "more than 3000000 values (aliases expanded)" in message and "alias bomb" in message
    assert grown_mb < 50  # it grew 4.4 GB before


def test_aliases_that_stay_small_still_work(tmp_path: Path) -> None:
    text = (DEVICE.format(name="a", workdir="results/work", options="&opts {profile: rtx}")
            + DEVICE.format(name="b", workdir="results/work", options="*opts").replace("devices:\n", ""))
    inventory = load_devices(write(tmp_path, text))
    assert [d.backend_options for d in inventory.devices] == [{"profile": "rtx"}] * 2


def test_huge_integer_names_its_line(tmp_path: Path) -> None:
    text = DEVICE.format(name="a", workdir="w", options="{}").replace("idle_s: 0.2", "port: " + "9" * 4300)
    message = refused(load_devices, write(tmp_path, text))
    assert ":6: a number of 4300 characters" in message
    # a long number that is meant as text is fine quoted
    quoted = text.replace("port: " + "9" * 4300, 'description: "%s"' % ("9" * 4300))
    assert load_devices(write(tmp_path, quoted)).devices[0].description == "9" * 4300


def test_bad_timestamp_and_bad_bytes_are_config_errors(tmp_path: Path) -> None:
    message = refused(load_devices, write(tmp_path, "devices: 2024-13-45\n"))
    assert "a value YAML cannot build" in message and "month" in message
    path = tmp_path / "devices.yaml"
    path.write_bytes(b"devices:\n  - name: \xff\xfe\n")
    assert ":2: not UTF-8 text (byte 0xff" in refused(load_devices, path)


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * yaml_lines.DEVICES_MAX_BYTES)
    assert "larger than 33554432 bytes" in refused(load_devices, path)


def test_long_source_name_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    text = (REPO / "suites" / "image.yaml").read_text()
    line = text.splitlines().index("    source: media/grace_hopper.jpg") + 1
    path = write(tmp_path, text.replace("media/grace_hopper.jpg", "x" * 300), "image.yaml")
    message = refused(load_suite, path)
    assert ":%d: workloads.0.source: not a usable file name: File name too long" % line in message


def test_config_error_is_a_usage_error() -> None:
    assert issubclass(ConfigError, UsageError) and ConfigError("x").exit_code == 2


@pytest.mark.parametrize("workdir", ['"results/work/../../../x"', '"/tmp/bench dir/../../etc"', "'..'",
                                     '"~/../root"'])
def test_workdir_with_dotdot_is_refused_and_says_why(tmp_path: Path, workdir: str) -> None:
    message = refused(load_devices, write(tmp_path, DEVICE.format(name="a", workdir=workdir, options="{}")))
    assert ":5: devices.0.workdir: '..' is refused: the runner, runs/ and the lease file" in message
    assert "Value error" not in message


def test_workdir_without_dotdot_is_kept(tmp_path: Path) -> None:
    for workdir in ("results/work", "/tmp/bench dir/x..y", "~/.edge-vlm-bench"):
        text = DEVICE.format(name="a", workdir='"%s"' % workdir, options="{}")
        assert load_devices(write(tmp_path, text)).devices[0].workdir == workdir


@pytest.mark.journey
@pytest.mark.parametrize("text", ["[" * 494, "devices: &a [*a]\n", ALIAS_BOMB])
def test_bench_devices_list_refuses_hostile_file_in_one_line(project: Path, text: str) -> None:
    (project / "devices.yaml").write_text(text)
    started = time.perf_counter()
    proc = bench(project, "devices", "list")
    assert time.perf_counter() - started < 20  # the bomb alone took 32 s
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert "devices.yaml:1:" in line or "devices.yaml:" in line


@pytest.mark.journey
def test_debug_shows_the_traceback(project: Path) -> None:
    (project / "devices.yaml").write_text("[" * 494)
    proc = bench(project, "--debug", "devices", "list")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert "nested more than 64 levels" in proc.stderr


@pytest.mark.journey
def test_bench_run_refuses_workdir_outside(project: Path) -> None:
    (project / "devices.yaml").write_text(DEVICE.format(name="emu", workdir='"results/work/../../../x"',
                                                        options="{}"))
    proc = bench(project, "run", "--suite", "image", "--devices", "emu")
    assert proc.returncode == 2
    assert "devices.0.workdir: '..' is refused" in one_line_error(proc)
    assert not (project.parent.parent / "x").exists() and not (project / "results" / "work").exists()
