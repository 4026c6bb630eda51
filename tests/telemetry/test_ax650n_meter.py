"""AX650N CMM/NPU/temperature on a fake procfs, and the external power meters."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runner.telemetry import build_sources
from harness.runner.telemetry.ax650n import Ax650nSource, parse_cmm_info, parse_npu_top, parse_npu_top_cores
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


def test_cmm_summary_ignores_block_names_and_takes_the_last_summary() -> None:
    # a block's name="..." is free text: it must not be read as the summary
    text = fixture_text("mem_cmm_info_ax650n.txt").replace(
        'name="npu_model"', 'name="total size=1KB,used=1KB,remain=0KB"').replace("\n", "\r\n")
    info = parse_cmm_info(text)
    assert info.warnings == [] and info.total_mb == 3072.0 and info.used_mb == pytest.approx(18876 / 1024)
    # summary line with a leading space, 10 GiB CMM (quoted in a public ax-llm-based service's source)
    info = parse_cmm_info(" total size=10485760KB(10240MB),used=283228KB(276MB + 604KB),"
                          "remain=10202532KB(9963MB + 420KB),partition_number=1,block_number=41\n")
    assert (info.total_mb, info.used_mb, info.remain_mb) == (10240.0, 283228 / 1024, 10202532 / 1024)
    assert parse_cmm_info("").warnings and parse_cmm_info(" total size=12").used_mb is None


def test_npu_top_real_formats() -> None:
    # AXERA NPU docs, AX8850N board: "echo 1 > /proc/ax_proc/npu/enable; cat /proc/ax_proc/npu/top"
    assert parse_npu_top("core:vnpu-Non\ntime:568387\nperiod:1000000\nutilization:96%\n") == 96.0
    # NPU split into three virtual NPUs: one block per core (a public AI-box MQTT client reads
    # core:vnpu_stdd_1..3 this way); the NPU figure is their mean, the cores are kept too
    three = ("core:vnpu_stdd_1\ntime:1\nperiod:1000000\nutilization:30%\n"
             "core:vnpu_stdd_2\ntime:1\nperiod:1000000\nutilization:60%\n"
             "core:vnpu_stdd_3\ntime:1\nperiod:1000000\nutilization:0%\r\n")
    assert parse_npu_top_cores(three) == {"vnpu_stdd_1": 30.0, "vnpu_stdd_2": 60.0, "vnpu_stdd_3": 0.0}
    assert parse_npu_top(three) == pytest.approx(30.0)
    # AXCL FAQ: an idle NPU reads as one of these messages
    assert parse_npu_top("nputop info is empty!\n") == 0.0
    assert parse_npu_top("nputop info not updated over 1000 ms!\n") == 0.0
    assert parse_npu_top("utilization:bad\n") is None


def test_ax650n_source_reports_npu_cores_and_survives_bad_thermal(tmp_path: Path) -> None:
    root = ax_tree(tmp_path, npu="core:vnpu_stdd_1\nutilization:30%\ncore:vnpu_stdd_2\nutilization:50%\n")
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("garbage\n")
    src = Ax650nSource({}, root=str(root))
    values = src.read()
    assert values["util_pct:npu"] == 40.0
    assert values["util_pct:npu_vnpu_stdd_1"] == 30.0 and values["util_pct:npu_vnpu_stdd_2"] == 50.0
    assert values["temp_c:soc"] is None and src.drain_warnings()
