"""AX650N CMM/NPU/temperature on a fake procfs, and the external power meters."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner.telemetry import build_sources
from harness.runner.telemetry.ax650n import Ax650nSource, parse_cmm_info, parse_npu_top
from harness.runner.telemetry.meter import MeterCommandSource, MeterSerialSource, parse_watts

from .helpers import FakeRunner, fixture_text, write_tree


def ax_tree(root: Path, npu: str = "utilization:37%\n") -> Path:
    return write_tree(root, {
        "/proc/ax_proc/mem_cmm_info": fixture_text("mem_cmm_info_ax650n.txt"),
        "/proc/ax_proc/npu/top": npu,
        "/proc/ax_proc/npu/enable": "0\n",
        "/sys/class/thermal/thermal_zone0/temp": "52375\n",
    })


def test_parse_cmm_summary_line() -> None:
    info = parse_cmm_info(fixture_text("mem_cmm_info_ax650n.txt"))
    assert info.warnings == []
    assert info.total_mb == pytest.approx(3072.0)
    assert info.used_mb == pytest.approx(18876 / 1024)
    assert info.remain_mb == pytest.approx(3126852 / 1024)
    bad = parse_cmm_info("total size=garbage")
    assert bad.used_mb is None and bad.warnings


def test_parse_npu_top() -> None:
    assert parse_npu_top("npu core0\nutilization:37%\n") == 37.0
    assert parse_npu_top("statistics disabled") is None


def test_ax650n_source(tmp_path: Path) -> None:
    root = ax_tree(tmp_path)
    src = Ax650nSource({}, root=str(root))
    values = src.read()
    assert values["mem_mb:cmm_used"] == pytest.approx(18876 / 1024)
    assert values["util_pct:npu"] == 37.0
    assert values["temp_c:soc"] == pytest.approx(52.375)
    assert src.drain_warnings() == []
    assert (root / "proc/ax_proc/npu/enable").read_text() == "0\n"  # not enabled unless configured
    assert "no power sensor" in src.covers


def test_ax650n_enables_npu_stats_only_when_configured(tmp_path: Path) -> None:
    root = ax_tree(tmp_path, npu="")
    src = Ax650nSource({"enable_npu_top": True}, root=str(root))
    assert (root / "proc/ax_proc/npu/enable").read_text() == "1"
    assert src.describe()["npu_stats_enabled_by_runner"] is True
    values = src.read()
    assert values["util_pct:npu"] is None
    assert "enable_npu_top" in src.drain_warnings()[0]


def test_ax650n_malformed_and_missing(tmp_path: Path) -> None:
    root = ax_tree(tmp_path)
    src = Ax650nSource({}, root=str(root))
    (root / "proc/ax_proc/mem_cmm_info").write_text("---CMM_USE_INFO:\n truncated\n")
    (root / "sys/class/thermal/thermal_zone0/temp").unlink()
    values = src.read()
    assert values["mem_mb:cmm_used"] is None and values["temp_c:soc"] is None
    warnings = " | ".join(src.drain_warnings())
    assert "no 'total size=" in warnings and "thermal_zone0/temp unreadable" in warnings
    sources, problems = build_sources([{"source": "ax650n"}], root=str(tmp_path / "empty"))
    assert sources == [] and "AXERA BSP" in problems[0]


@pytest.mark.parametrize("text, watts", [
    ("12.3\n", 12.3), ("12.3 W", 12.3), ("12300 mW\n", 12.3), ("P=4.1W I=0.8A U=5.1V", 4.1),
    ("CH1: 5.02V 0.81A 4.07W", 4.07), ("power_w 1.5e1", 15.0), ("0.012 kW", 12.0),
])
def test_parse_watts(text: str, watts: float) -> None:
    value, problem = parse_watts(text)
    assert problem is None and value == pytest.approx(watts)


@pytest.mark.parametrize("text", ["", "   ", "no reading", "-3 W", "nan W"])
def test_parse_watts_rejects(text: str) -> None:
    value, problem = parse_watts(text)
    assert value is None and problem


def test_parse_watts_default_unit() -> None:
    assert parse_watts("4100", default_unit="mW") == (pytest.approx(4.1), None)


def test_meter_command_source() -> None:
    outputs = iter(["7.25 W\n", "7.5 W\n", "ERR\n"])
    runner = FakeRunner({"read-meter": lambda: (0, next(outputs), "")})
    src = MeterCommandSource({"command": "read-meter --port /dev/ttyACM0", "covers": "board DC input"},
                             command_runner=runner)
    assert src.covers == "board DC input"
    assert src.interval_s == 0.5  # a process per reading: twice a second unless configured
    assert src.read() == {"power_w": 7.5}
    assert src.read() == {"power_w": None}
    assert "no number" in src.drain_warnings()[0]
    assert runner.calls[0] == ["read-meter", "--port", "/dev/ttyACM0"]


def test_meter_command_failures() -> None:
    sources, warnings = build_sources([{"source": "meter_command", "command": "nope"}], command_runner=FakeRunner({}))
    assert sources == [] and "cannot run" in warnings[0]
    sources, warnings = build_sources([{"source": "meter_command"}])
    assert sources == [] and "needs 'command'" in warnings[0]
    src = MeterCommandSource({"command": ["m"]}, command_runner=FakeRunner({"m": (2, "", "usb timeout")}))
    assert src.read() == {"power_w": None}
    assert "usb timeout" in src.drain_warnings()[0]


def test_meter_serial_reads_lines_from_a_device_file(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    device.write_text("UM25C boot\n5.07V 0.410A 2.08W\n5.06V 0.520A 2.63W\n5.0")  # last line incomplete
    src = MeterSerialSource({"device": str(device)})
    assert src.read() == {"power_w": 2.63}  # the newest complete line
    assert src.read() == {}  # nothing new: no sample
    with device.open("a") as handle:
        handle.write("5V 0.600A 3.03W\n")
    assert src.read() == {"power_w": 3.03}
    with device.open("a") as handle:
        handle.write("checksum error\n")
    assert src.read() == {"power_w": None}
    assert "no line matched" in src.drain_warnings()[0]
    src.close()


def test_meter_serial_custom_pattern_and_missing_device(tmp_path: Path) -> None:
    device = tmp_path / "meter.log"
    device.write_text("t=1 mw=4100\n")
    src = MeterSerialSource({"device": str(device), "pattern": r"mw=(\d+)", "unit": "mW"})
    assert src.read() == {"power_w": pytest.approx(4.1)}
    src.close()
    sources, warnings = build_sources([{"source": "meter_serial", "device": str(tmp_path / "ttyUSB9")}])
    assert sources == [] and "not found" in warnings[0]
