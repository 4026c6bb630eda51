"""Generic sources on a fake procfs/sysfs tree; the registry and build_sources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runner import telemetry
from harness.runner.telemetry import (
    TelemetrySource,
    available_sources,
    build_sources,
    default_configs,
    register_source,
)
from harness.runner.telemetry.base import _REGISTRY, CounterUnwrapper, parse_number
from harness.runner.telemetry.generic import (
    CpufreqSource,
    DevfreqSource,
    HwmonSource,
    MemorySource,
    ThermalSource,
    parse_kb_fields,
)

from .helpers import write_tree

REPO = Path(__file__).resolve().parents[2]

PROC = {
    "/proc/self/status": "Name:\tpython3\nVmPeak:\t  912340 kB\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\n"
                         "Threads:\t4\n",
    "/proc/meminfo": "MemTotal:        7799000 kB\nMemFree:          600000 kB\nMemAvailable:    5751000 kB\n"
                     "Buffers:           10000 kB\nNvMapMemUsed:     524288 kB\n",
}

SYS = {
    "/sys/class/thermal/thermal_zone0/type": "acpitz\n",
    "/sys/class/thermal/thermal_zone0/temp": "45000\n",
    "/sys/class/thermal/thermal_zone1/type": "x86_pkg_temp\n",
    "/sys/class/thermal/thermal_zone1/temp": "52500\n",
    "/sys/class/thermal/thermal_zone2/type": "acpitz\n",
    "/sys/class/thermal/thermal_zone2/temp": "44000\n",
    "/sys/class/thermal/thermal_zone3/type": "cv0-thermal\n",
    "/sys/class/thermal/thermal_zone3/temp": "-256000\n",  # Jetson zone that is off
    "/sys/class/thermal/thermal_zone10/type": "broken\n",
    "/sys/class/thermal/thermal_zone10/temp": "N/A\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1190400\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq": "1728000\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "1728000\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance\n",
    "/sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": "1728000\n",
    "/sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq": "1728000\n",
    "/sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq": "1728000\n",
    "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance\n",
    "/sys/class/devfreq/17000000.ga10b/cur_freq": "624750000\n",
    "/sys/class/devfreq/17000000.ga10b/max_freq": "1020000000\n",
    "/sys/class/devfreq/17000000.ga10b/governor": "nvhost_podgov\n",
    "/sys/class/hwmon/hwmon0/name": "coretemp\n",
    "/sys/class/hwmon/hwmon0/temp1_input": "61000\n",
    "/sys/class/hwmon/hwmon0/temp1_label": "Package id 0\n",
    "/sys/class/hwmon/hwmon0/temp2_input": "58000\n",
    "/sys/class/hwmon/hwmon1/name": "nvme\n",
    "/sys/class/hwmon/hwmon1/temp1_input": "38850\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path, PROC)
    return write_tree(tmp_path, SYS)


def test_memory_from_procfs(tree: Path) -> None:
    src = MemorySource({}, root=str(tree))
    values = src.read()
    assert values == {"mem_mb:rss": 256.0, "mem_mb:rss_hwm": 512.0,
                      "mem_mb:system_used": pytest.approx((7799000 - 5751000) / 1024)}
    (tree / "proc/self/status").write_text("VmRSS:\t 300000 kB\nVmHWM:\t 600000 kB\n")
    src.read()
    (tree / "proc/self/status").write_text("VmRSS:\t 100000 kB\n")
    src.read()
    assert src.describe()["high_water_mb"]["mem_mb:rss"] == pytest.approx(300000 / 1024)
    assert src.describe()["backend"] == "procfs"


def test_memory_malformed_procfs(tree: Path) -> None:
    src = MemorySource({}, root=str(tree))
    (tree / "proc/meminfo").write_text("MemTotal: 7799000 kB\n")  # no MemAvailable (kernel < 3.14)
    (tree / "proc/self/status").write_text("Name: x\n")
    values = src.read()
    assert values["mem_mb:rss"] is None and values["mem_mb:system_used"] is None
    warnings = " | ".join(src.drain_warnings())
    assert "VmRSS" in warnings and "MemAvailable" in warnings


def test_memory_on_this_machine_procfs_and_psutil_agree() -> None:
    pytest.importorskip("psutil")
    fast = MemorySource({})  # auto: /proc when present
    assert fast.describe()["backend"] == "procfs"
    own = MemorySource({"backend": "psutil"})
    tree = MemorySource({"backend": "psutil", "include_children": True})
    assert tree.describe()["backend"].startswith("psutil")
    a, b, c = fast.read(), own.read(), tree.read()
    assert 5 < a["mem_mb:rss"] < 100_000 and a["mem_mb:system_used"] > 0
    # the same process read two ways agrees; with children (a session's servers, in CI) it is larger
    assert b["mem_mb:rss"] == pytest.approx(a["mem_mb:rss"], rel=0.2)
    assert c["mem_mb:rss"] >= b["mem_mb:rss"] * 0.8
    assert b["mem_mb:system_used"] == pytest.approx(a["mem_mb:system_used"], rel=0.2)
    assert a["mem_mb:rss_hwm"] >= a["mem_mb:rss"]


def test_parse_kb_fields() -> None:
    assert parse_kb_fields("MemTotal:  10 kB\nHugePages_Total:  0\nbad line\n") == {"MemTotal": 10.0,
                                                                                  "HugePages_Total": 0.0}


def test_thermal_zones(tree: Path) -> None:
    src = ThermalSource({}, root=str(tree))
    assert src.interval_s == 1.0
    values = src.read()
    assert values["temp_c:acpitz"] == 45.0 and values["temp_c:acpitz.thermal_zone2"] == 44.0
    assert values["temp_c:x86_pkg_temp"] == 52.5
    assert values["temp_c:cv0-thermal"] is None  # -256 C: zone off, no number
    assert values["temp_c:broken"] is None
    assert "thermal_zone10/temp unreadable" in src.drain_warnings()[0]


def test_cpufreq_devfreq_hwmon(tree: Path) -> None:
    cpu = CpufreqSource({}, root=str(tree))
    assert cpu.read() == {"clock_mhz:cpu0": pytest.approx(1190.4), "clock_mhz:cpu1": 1728.0}
    snap = cpu.snapshot()
    assert snap["clock_max_mhz:cpu0"] == 1728.0 and snap["clock_hw_max_mhz:cpu0"] == 1728.0
    assert snap["governor:cpu1"] == "performance"
    dev = DevfreqSource({}, root=str(tree))
    assert dev.read() == {"clock_mhz:17000000.ga10b": pytest.approx(624.75)}
    assert dev.snapshot()["clock_max_mhz:17000000.ga10b"] == 1020.0
    hw = HwmonSource({}, root=str(tree))
    assert hw.read() == {"temp_c:coretemp/Package id 0": 61.0, "temp_c:coretemp/temp2": 58.0,
                         "temp_c:nvme/temp1": pytest.approx(38.85)}


def test_build_sources_never_raises(tree: Path) -> None:
    configs = [
        {"source": "thermal"}, {"source": "thermal"}, {"source": "nonexistent"}, {"nosource": 1}, "junk",
        {"source": "cpufreq", "bogus_option": 1}, {"source": "memory", "interval_s": -1},
        {"source": "rapl"},
    ]
    sources, warnings = build_sources(configs, root=str(tree))  # type: ignore[arg-type]
    assert [s.label for s in sources] == ["thermal", "thermal#2"]
    text = "\n".join(warnings)
    assert "unknown telemetry source 'nonexistent'" in text and "known: " in text
    assert "has no 'source' name" in text
    assert "unknown option(s) bogus_option" in text
    assert "interval_s must be > 0" in text
    assert "'rapl' unavailable" in text


def test_registry() -> None:
    assert {"jtop", "ina3221", "tegrastats", "jetson_mode", "rapl", "nvml", "ax650n", "meter_command",
            "meter_serial", "memory", "thermal", "cpufreq", "devfreq", "hwmon"} <= set(available_sources())

    @register_source("test_constant")
    class Constant(TelemetrySource):
        kinds = ("power",)
        options = {"watts": 1.0}

        def read(self):
            return {"power_w": float(self.config["watts"])}

    try:
        sources, warnings = build_sources([{"source": "test_constant", "watts": 3.5}])
        assert warnings == [] and sources[0].read() == {"power_w": 3.5}
        with pytest.raises(ValueError):
            register_source("test_constant")(type("Other", (TelemetrySource,), {}))
    finally:
        _REGISTRY.pop("test_constant", None)


def test_default_configs_build_everywhere(tree: Path) -> None:
    for kind in ("local", "ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc"):
        configs = default_configs(kind)
        assert configs and all("source" in c for c in configs)
        sources, warnings = build_sources(configs, root=str(tree), command_runner=lambda a, t: (127, "", "nf"))
        assert all(isinstance(w, str) for w in warnings)
    assert default_configs("orin-nano")[0]["fallback"] == ["ina3221", "tegrastats"]


def test_counter_unwrapper_and_parse_number() -> None:
    unwrap = CounterUnwrapper(100.0)
    assert [unwrap.update(v) for v in (90.0, 99.0, 5.0, 50.0, 1.0)] == [90.0, 99.0, 105.0, 150.0, 201.0]
    no_range = CounterUnwrapper(None)
    assert no_range.update(10.0) == 10.0 and no_range.update(5.0) is None
    assert parse_number("48843\n") == 48843.0 and parse_number("3.5 W") == 3.5
    for bad in ("", "inf", "nan", "N/A"):
        with pytest.raises(ValueError):
            parse_number(bad)


def test_import_is_stdlib_only_and_py38_compatible() -> None:
    code = ("import sys; import harness.runner.telemetry as t; "
            "print([m for m in ('psutil', 'jtop', 'pynvml', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == []
    assert telemetry.Sampler is not None
    vermin = Path(sys.executable).parent / "vermin"
    if not vermin.exists():
        pytest.skip("vermin not installed (pip install vermin): Python 3.8 compatibility not checked")
    check = subprocess.run([str(vermin), "--target=3.8-", "--violations", "--no-tips",
                            "--eval-annotations", str(REPO / "harness/runner/telemetry")],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
