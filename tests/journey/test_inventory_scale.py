"""A 10,000-device inventory (issue 14): `bench devices list` and `--json` list every board, a file past
the devices caps and an error in a late device are refused in one line naming it, `bench devices
check` checks a large farm with a bounded pool and keeps the inventory's order. Timings are
benchmarks/inventory_scale.py's business: nothing here asserts a duration."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from rich.console import Console
from typer.testing import CliRunner

from benchmarks.inventory_scale import device_name, devices_yaml
from harness.cli import app
from harness.cli import devices_cmd
from harness.config.yaml_lines import DEVICES_LIMITS
from harness.terminal import TerminalTable, _pipe_lines, num_col, show, text_col

from .conftest import Bench

DEVICES = 10_000


@pytest.fixture(scope="module")
def big_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "devices.yaml"
    path.write_text(devices_yaml(DEVICES))
    return path


@pytest.mark.journey
def test_devices_list_shows_all_10000_devices(big_inventory: Path) -> None:
    proc = Bench()(big_inventory.parent, "--devices-file", str(big_inventory), "devices", "list")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("\u2502 ")]
    assert len(rows) == DEVICES
    names = [row.split("\u2502")[1].strip() for row in rows]
    assert names == [device_name(index) for index in range(DEVICES)]
    assert rows[0].split("\u2502")[4].strip() == "10.0.0.0:22"
    assert names[0] == "ax650n-00000" and names[-1] == "rtx-pc-09999"


@pytest.mark.journey
def test_devices_list_json_has_all_10000_devices(big_inventory: Path) -> None:
    proc = Bench()(big_inventory.parent, "--devices-file", str(big_inventory), "devices", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    devices = json.loads(proc.stdout)
    assert len(devices) == DEVICES
    assert devices[0]["name"] == "ax650n-00000" and devices[-1]["name"] == "rtx-pc-09999"
    assert devices[9876]["host"] == "10.0.38.148" and devices[9876]["models"][1]["quantization"] == "int4"
    assert all("password_env" not in device for device in devices)
    assert list(devices[0]) == sorted(devices[0])  # keys sorted, as before


@pytest.mark.journey
def test_an_error_in_device_9876_names_its_line(tmp_path: Path) -> None:
    lines = devices_yaml(DEVICES).splitlines()
    index = lines.index("  - name: orin-nano-09876") + 1  # its type line, 0-based
    lines[index] = "    type: orin-mega"
    (tmp_path / "devices.yaml").write_text("\n".join(lines) + "\n")
    proc = Bench()(tmp_path, "devices", "list")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    error = " ".join(proc.stderr.split())
    assert error.startswith("error: devices.yaml:%d: devices.9876.type: Input should be 'ax650n'" % (index + 1))


@pytest.mark.journey
def test_a_devices_file_past_the_caps_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "devices.yaml").write_bytes(b"# " + b"x" * DEVICES_LIMITS.max_bytes)
    proc = Bench()(tmp_path, "devices", "list", "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["message"] == (
        "devices.yaml: larger than 33554432 bytes; this is not a devices file")
    # the values cap, through aliases: 1 + 2 keys + 1,000 anchored values, 3,000 copies of them
    (tmp_path / "devices.yaml").write_text("a: &a [%s]\nb: [%s]\n" % (", ".join(["1"] * 999),
                                                                     ", ".join(["*a"] * 3000)))
    proc = Bench()(tmp_path, "devices", "list")
    assert proc.returncode == 2
    assert " ".join(proc.stderr.split()) == ("error: devices.yaml:2: more than 3000000 values (aliases expanded): "
                                             "too large for a devices file (an alias bomb?)")


def _local_devices(count: int) -> str:
    return "devices:\n" + "".join(
        "  - {name: local-%04d, type: local, transport: local, backend: reference, idle_s: 0,\n"
        "     models: [{variant: emulated, path: .}]}\n" % index for index in range(count))


class _FakeReport:
    def __init__(self, name: str) -> None:
        self.ok = not name.endswith("7")
        self.name = name

    def to_dict(self) -> Dict[str, Any]:
        return {"reachable": True, "python_version": "3.11", "board": self.name}


def _patch_checks(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Dict[str, int]:
    """check_device that takes ``seconds`` and counts how many run at once."""
    from harness.farm import health

    seen = {"now": 0, "most": 0, "calls": 0}
    lock = threading.Lock()

    def check_device(transport: Any, python: str, workdir: str, timeout_s: float = 60.0) -> _FakeReport:
        with lock:
            seen["now"] += 1
            seen["calls"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        time.sleep(seconds)
        with lock:
            seen["now"] -= 1
        return _FakeReport(transport.name)

    monkeypatch.setattr(health, "check_device", check_device)
    return seen


def test_devices_check_runs_a_bounded_pool_in_inventory_order(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devices.yaml").write_text(_local_devices(200))
    seen = _patch_checks(monkeypatch, 0.02)
    monkeypatch.setattr(devices_cmd, "MAX_CONCURRENT_CHECKS", 5)  # the bound, whatever its value
    result = CliRunner().invoke(app, ["--devices-file", str(tmp_path / "devices.yaml"), "devices", "check",
                                      "--json"])
    assert result.exit_code == 1, result.output  # the boards whose name ends in 7 are not ok
    reports = json.loads(result.stdout)
    assert [r["device"] for r in reports] == ["local-%04d" % index for index in range(200)]
    assert [r["board"] for r in reports] == [r["device"] for r in reports]
    assert seen["calls"] == 200
    assert 1 < seen["most"] <= 5
    assert "checked" not in result.output  # no terminal: no progress


def test_devices_check_shows_progress_on_a_terminal_only_on_stderr(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devices.yaml").write_text(_local_devices(40))
    _patch_checks(monkeypatch, 0.01)
    screen = io.StringIO()
    monkeypatch.setattr(devices_cmd, "err", Console(file=screen, force_terminal=True, width=100))
    result = CliRunner().invoke(app, ["--devices-file", str(tmp_path / "devices.yaml"), "devices", "check",
                                      "--json"])
    assert result.exit_code == 1, result.output
    assert "checked 40 of 40 boards" in screen.getvalue()
    assert len(json.loads(result.stdout)) == 40  # stdout is the JSON alone


def _rich_pipe_text(table: TerminalTable) -> str:
    """What rich itself prints for ``table`` through a pipe (harness/terminal.py's layout before issue 14)."""
    console = Console(file=io.StringIO())
    rendered = table.table()
    needed = rendered.__rich_measure__(console, console.options.update_width(100_000)).maximum
    out = io.StringIO()
    Console(file=out, width=max(needed, 20), color_system=None, force_terminal=False).print(rendered)
    return out.getvalue()


def _tables() -> List[TerminalTable]:
    check = TerminalTable(["device", "ok", num_col("disk free MB"), text_col("errors")], title="device check",
                          caption="2 boards")
    check.add_row("emu-with-a-long-name-local-3b", "yes", "1234", "")
    check.add_row("b", "NO", "7", "no host in devices.yaml:12; ssh: timed out")
    listing = TerminalTable(["name", "type", "host", text_col("tags")])
    listing.add_row("\u65e5\u672c-board", "rtx-pc", "10.0.0.1:22", "a, b")
    listing.add_row("caf\u00e9", "local", "", "")
    return [check, listing]


@pytest.mark.parametrize("table", _tables(), ids=["check", "listing"])
def test_a_table_through_a_pipe_is_what_rich_prints(table: TerminalTable) -> None:
    assert _pipe_lines(table) is not None  # the direct layout, not rich's
    out = io.StringIO()
    show(Console(file=out), table)
    assert out.getvalue() == _rich_pipe_text(table)


def test_a_cell_of_several_lines_is_left_to_rich() -> None:
    table = TerminalTable(["device", text_col("errors")])
    table.add_row("a-board", "first line\nsecond line")
    assert _pipe_lines(table) is None
    out = io.StringIO()
    show(Console(file=out), table)
    assert out.getvalue() == _rich_pipe_text(table) and "second line" in out.getvalue()
