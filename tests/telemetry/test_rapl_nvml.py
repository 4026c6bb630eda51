"""RAPL on a fake powercap tree (wrap-around, permissions) and NVML through a fake pynvml."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from harness.runner.telemetry import build_sources, rapl
from harness.runner.telemetry.nvml import NvmlSource
from harness.runner.telemetry.rapl import RaplSource

from .helpers import write_tree

PC = "/sys/class/powercap"


def rapl_tree(root: Path, package_uj: int = 999_000, max_uj: int = 1_000_000) -> Path:
    return write_tree(root, {
        PC + "/intel-rapl:0/name": "package-0\n",
        PC + "/intel-rapl:0/energy_uj": "%d\n" % package_uj,
        PC + "/intel-rapl:0/max_energy_range_uj": "%d\n" % max_uj,
        PC + "/intel-rapl:0:0/name": "core\n",
        PC + "/intel-rapl:0:0/energy_uj": "400000\n",
        PC + "/intel-rapl:0:0/max_energy_range_uj": "262143328850\n",
        PC + "/intel-rapl:0:1/name": "uncore\n",
        PC + "/intel-rapl:0:1/energy_uj": "100000\n",
        PC + "/intel-rapl:0:1/max_energy_range_uj": "262143328850\n",
        PC + "/intel-rapl:1/name": "psys\n",
        PC + "/intel-rapl:1/energy_uj": "5000000\n",
        PC + "/intel-rapl:1/max_energy_range_uj": "262143328850\n",
        PC + "/intel-rapl-mmio:0/name": "package-0\n",  # MMIO duplicate of the package: ignored
        PC + "/intel-rapl-mmio:0/energy_uj": "123\n",
    })


def test_rapl_zones_are_reported_apart(tmp_path: Path) -> None:
    src = RaplSource({}, root=str(rapl_tree(tmp_path)))
    assert src.counter is True
    values = src.read()
    assert values == {"energy_j": pytest.approx(0.999), "energy_j:core": pytest.approx(0.4),
                      "energy_j:uncore": pytest.approx(0.1), "energy_j:psys": pytest.approx(5.0)}
    assert "package-0" in src.covers and "core, uncore" in src.covers
    zones = {z["name"]: z for z in src.describe()["zones"]}
    assert zones["package-0"]["max_energy_range_uj"] == 1_000_000


def test_rapl_wrap_around_between_two_reads(tmp_path: Path) -> None:
    root = rapl_tree(tmp_path, package_uj=999_000, max_uj=1_000_000)
    src = RaplSource({}, root=str(root))
    first = src.read()["energy_j"]
    (root / "sys/class/powercap/intel-rapl:0/energy_uj").write_text("1500\n")  # wrapped past 1 J
    second = src.read()["energy_j"]
    assert second - first == pytest.approx(0.0025)  # (1_000_000 - 999_000 + 1500) uJ
    assert src.describe()["zones"][0]["wraps_seen"] == 1


def test_rapl_permission_error_says_how_to_grant_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = rapl_tree(tmp_path)
    real = rapl.read_text

    def deny(path: str) -> str:
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(rapl, "read_text", deny)  # the tests run as root: simulate a normal user
    sources, warnings = build_sources([{"source": "rapl"}], root=str(root))
    assert sources == []
    assert "Linux 5.10" in warnings[0] and "udev" in warnings[0] and "chmod" in warnings[0]


def test_rapl_absent_or_bad_zone(tmp_path: Path) -> None:
    sources, warnings = build_sources([{"source": "rapl"}], root=str(tmp_path))
    assert sources == [] and "no intel-rapl zones" in warnings[0]
    sources, warnings = build_sources([{"source": "rapl", "zone": "dram"}], root=str(rapl_tree(tmp_path)))
    assert sources == [] and "misconfigured" in warnings[0] and "package-0" in warnings[0]


def test_rapl_malformed_counter_is_none_with_warning(tmp_path: Path) -> None:
    root = rapl_tree(tmp_path)
    src = RaplSource({}, root=str(root))
    (root / "sys/class/powercap/intel-rapl:0:0/energy_uj").write_text("oops\n")
    values = src.read()
    assert values["energy_j:core"] is None and values["energy_j"] == pytest.approx(0.999)
    assert "intel-rapl:0:0/energy_uj unreadable" in src.drain_warnings()[0]


class NVMLError(Exception):
    pass


def fake_pynvml(energy_supported: bool = True, init_fails: bool = False) -> Any:
    mod = types.ModuleType("pynvml")
    state = {"energy_mj": 1_000_000, "power_mw": 245_500}

    def init() -> None:
        if init_fails:
            raise NVMLError("Driver Not Loaded")

    def energy(_h: Any) -> int:
        if not energy_supported:
            raise NVMLError("Not Supported")
        return state["energy_mj"]

    mod.NVMLError = NVMLError
    mod.NVML_CLOCK_SM, mod.NVML_CLOCK_MEM, mod.NVML_TEMPERATURE_GPU = 1, 2, 0
    mod.nvmlInit = init
    mod.nvmlShutdown = lambda: state.__setitem__("shutdown", True)
    mod.nvmlDeviceGetHandleByIndex = lambda i: "gpu%d" % i
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA GeForce RTX 4090"
    mod.nvmlSystemGetDriverVersion = lambda: "560.35.03"
    mod.nvmlDeviceGetTotalEnergyConsumption = energy
    mod.nvmlDeviceGetPowerUsage = lambda h: state["power_mw"]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=3 * 2 ** 30, total=24 * 2 ** 30)
    mod.nvmlDeviceGetClockInfo = lambda h, kind: {1: 2520, 2: 10501}[kind]
    mod.nvmlDeviceGetMaxClockInfo = lambda h, kind: {1: 3105, 2: 10501}[kind]
    mod.nvmlDeviceGetTemperature = lambda h, kind: 61
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=97, memory=40)
    mod.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x1 | 0x4 | 0x20
    mod.nvmlDeviceGetPowerManagementLimit = lambda h: 450_000
    mod.state = state
    return mod


def test_nvml_energy_counter_and_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    src = NvmlSource({"index": 0})
    assert src.counter is True and "RTX 4090" in src.covers and "counter" in src.covers
    first = src.read()
    assert first == {"energy_j": 1000.0, "power_w": 245.5, "mem_mb:gpu_used": 3072.0, "clock_mhz:sm": 2520.0,
                     "clock_mhz:mem": 10501.0, "temp_c:gpu": 61.0, "util_pct:gpu": 97.0}
    mod.state["energy_mj"] += 12_345
    assert src.read()["energy_j"] - first["energy_j"] == pytest.approx(12.345)
    snap = src.snapshot()
    assert snap["clock_hw_max_mhz:sm"] == 3105.0
    assert snap["throttle:gpu0"] == ["sw_power_cap", "sw_thermal_slowdown"]  # idle bit is not throttling
    info = src.describe()
    assert info["driver"] == "560.35.03" and info["power_limit_w"] == 450.0
    src.close()
    assert mod.state.get("shutdown") is True


def test_nvml_without_energy_counter_samples_power(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy_supported=False))
    sources, warnings = build_sources([{"source": "nvml"}])
    assert sources[0].counter is False
    assert "energy_j" not in sources[0].read()
    assert any("1 s average" in w for w in warnings)


def test_nvml_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    _, warnings = build_sources([{"source": "nvml"}])
    assert "pip install nvidia-ml-py" in warnings[0]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_fails=True))
    _, warnings = build_sources([{"source": "nvml"}])
    assert "Driver Not Loaded" in warnings[0] and "Jetson" in warnings[0]


def test_nvml_failing_call_gives_none_and_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    src = NvmlSource({})

    def gone(_h: Any) -> int:
        raise NVMLError("GPU is lost")

    mod.nvmlDeviceGetPowerUsage = gone
    values = src.read()
    assert values["power_w"] is None and values["energy_j"] == 1000.0
    assert any("GPU is lost" in w for w in src.drain_warnings())


def test_rapl_mmio_only_when_there_is_no_msr_zone(tmp_path: Path) -> None:
    # the int340x processor_thermal_rapl driver exposes the package counter also as intel-rapl-mmio:0
    # (powercap sysfs); without intel_rapl_msr it is the only zone
    root = write_tree(tmp_path, {
        PC + "/intel-rapl-mmio:0/name": "package-0\n",
        PC + "/intel-rapl-mmio:0/energy_uj": "5000000\n",
        PC + "/intel-rapl-mmio:0/max_energy_range_uj": "262143328850\n",
    })
    src = RaplSource({}, root=str(root))
    assert src.read()["energy_j"] == pytest.approx(5.0)
    assert src.describe()["zones"][0]["zone"] == "intel-rapl-mmio:0"


def test_rapl_name_with_spaces_and_bad_range(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        PC + "/intel-rapl:0/name": "package-0\n",
        PC + "/intel-rapl:0/energy_uj": "1000000\n",
        PC + "/intel-rapl:0/max_energy_range_uj": "0\n",
        PC + "/intel-rapl:0:0/name": "core die 0\n",
        PC + "/intel-rapl:0:0/energy_uj": "500000\n",
        PC + "/intel-rapl:0:0/max_energy_range_uj": "not a number\n",
    })
    src = RaplSource({}, root=str(root))
    values = src.read()
    assert values["energy_j"] == pytest.approx(1.0) and values["energy_j:core die 0"] == pytest.approx(0.5)
    assert sum("max_energy_range_uj" in w for w in src.setup_warnings) == 2
