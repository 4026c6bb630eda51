"""Jetson sources on fake sysfs trees, a fake jtop client, recorded tegrastats/nvpmodel output."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from harness.runner.telemetry import build_sources
from harness.runner.telemetry.base import TIMESTAMP_KEY, SourceUnavailable
from harness.runner.telemetry.jetson import Ina3221Source, JetsonModeSource, JtopSource, TegrastatsSource

from .helpers import FakeClock, FakeRunner, fixture_text, write_tree

ORIN_NANO_INA = {
    # hwmon numbers are not stable across boots: the source globs for them
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/name": "ina3221\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in1_label": "VDD_IN\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in1_input": "5072\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/curr1_input": "1124\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in2_label": "VDD_CPU_GPU_CV\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in2_input": "5064\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/curr2_input": "164\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in3_label": "VDD_SOC\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in3_input": "5064\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/curr3_input": "320\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in7_label": "sum of shunt voltages\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/in7_input": "2840\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/curr4_input": "1608\n",
}

AGX_ORIN_INA = {
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/in1_label": "VDD_GPU_SOC\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/in1_input": "19952\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/curr1_input": "176\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/in2_label": "VDD_CPU_CV\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/in2_input": "19952\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/curr2_input": "30\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/in3_label": "VIN_SYS_5V0\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/in3_input": "4992\n",
    "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2/curr3_input": "525\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/in1_label": "NC\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/in1_input": "0\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/curr1_input": "0\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/in2_label": "VDDQ_VDD2_1V8AO\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/in2_input": "4992\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/curr2_input": "80\n",
    "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon3/in3_label": "NC\n",
}


def test_ina3221_orin_nano(tmp_path: Path) -> None:
    root = write_tree(tmp_path, ORIN_NANO_INA)
    src = Ina3221Source({"module": "orin-nano"}, root=str(root))
    assert sorted(src.channels) == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"]  # shunt sum skipped
    values = src.read()
    assert values["power_w"] == pytest.approx(5.072 * 1.124)
    assert values["power_w:VDD_SOC"] == pytest.approx(5.064 * 0.320)
    info = src.describe()
    assert info["rails_summed"] == ["VDD_IN"]
    assert any("sum of shunt" in s for s in info["skipped"])
    assert "hwmon5" in info["rails"]["VDD_IN"]["volt_mV"]
    assert src.drain_warnings() == []


def test_ina3221_agx_orin_sums_and_records_the_caveat(tmp_path: Path) -> None:
    root = write_tree(tmp_path, AGX_ORIN_INA)
    src = Ina3221Source({}, root=str(root))
    values = src.read()
    expected = 19.952 * 0.176 + 19.952 * 0.030 + 4.992 * 0.525
    assert values["power_w"] == pytest.approx(expected)
    assert values["power_w:VDDQ_VDD2_1V8AO"] == pytest.approx(4.992 * 0.080)
    assert not any(k.startswith("power_w:NC") for k in values)
    info = src.describe()
    assert info["rails_summed"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert "VDDQ_VDD2_1V8AO" in info["caveat"]
    assert len([s for s in info["skipped"] if "not connected" in s]) == 2
    assert "VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0" in src.covers


def test_ina3221_unreadable_rail_gives_none_and_warning(tmp_path: Path) -> None:
    root = write_tree(tmp_path, ORIN_NANO_INA)
    (root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5/curr1_input").write_text("garbage\n")
    src = Ina3221Source({}, root=str(root))
    values = src.read()
    assert values["power_w"] is None and values["power_w:VDD_IN"] is None
    assert values["power_w:VDD_SOC"] == pytest.approx(5.064 * 0.320)
    warnings = src.drain_warnings()
    assert any("VDD_IN unreadable" in w for w in warnings)


def test_ina3221_absent(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="jtop or tegrastats"):
        Ina3221Source({}, root=str(tmp_path))


class FakeNvp:
    name = "MAXN_SUPER"


class FakeJtop:
    """What jtop's client exposes, at the adapter level (values as in jetson-stats 4.x)."""

    def __init__(self) -> None:
        self.interval = 0.5
        self.power = {
            "rail": {
                "VDD_CPU_GPU_CV": {"volt": 5064, "curr": 164, "power": 830, "avg": 700, "online": True},
                "VDD_SOC": {"volt": 5064, "curr": 320, "power": 1620, "avg": 1500, "online": True},
            },
            # jtop moves VDD_IN out of 'rail' into 'tot'; 'avg' is a moving average and must be ignored
            "tot": {"volt": 5072, "curr": 1124, "power": 5700, "avg": 9999, "online": True, "name": "VDD_IN"},
        }
        self.memory = {"RAM": {"tot": 7799000, "used": 2519040, "free": 3000000, "shared": 524288},
                       "EMC": {"cur": 2133000, "max": 3199000, "online": True}}
        self.temperature = {"cpu": {"temp": 46.5, "online": True}, "cv0": {"temp": -256.0, "online": False},
                            "tj": {"temp": 48.8, "online": True}}
        self.gpu = {"ga10b": {"type": "integrated", "status": {"load": 37.5},
                              "freq": {"cur": 624750, "max": 1020000, "min": 306000}}}
        self.nvpmodel = FakeNvp()
        self.jetson_clocks = True
        self.callbacks = []
        self.closed = False

    def attach(self, callback) -> None:
        self.callbacks.append(callback)

    def close(self) -> None:
        self.closed = True


def test_jtop_adapter_uses_instantaneous_power_and_nvmap(fake_clock: FakeClock) -> None:
    client = FakeJtop()
    src = JtopSource({"module": "orin-nano"}, client=client)
    src.clock = fake_clock
    assert "jtop updates every 0.5 s" in src.setup_warnings[0]
    values = src.read()
    assert values["power_w"] == pytest.approx(5.7)
    assert values["power_w:VDD_SOC"] == pytest.approx(1.62)
    assert values["mem_mb:nvmap"] == pytest.approx(512.0)
    assert values["mem_mb:ram_used"] == pytest.approx(2519040 / 1024)
    assert values["clock_mhz:gpu_ga10b"] == pytest.approx(624.75)
    assert values["clock_mhz:emc"] == pytest.approx(2133.0)
    assert values["util_pct:gpu_ga10b"] == 37.5
    assert values["temp_c:cpu"] == 46.5 and "temp_c:cv0" not in values
    assert TIMESTAMP_KEY not in values  # no update seen yet
    client.callbacks[0](client)  # jtop delivers new data
    assert src.read()[TIMESTAMP_KEY] == fake_clock()
    snap = src.snapshot()
    assert snap["power_mode:nvpmodel"] == "MAXN_SUPER" and snap["power_mode:jetson_clocks"] is True
    assert snap["clock_max_mhz:gpu_ga10b"] == pytest.approx(1020.0)
    info = src.describe()
    assert info["rails_summed"] == ["VDD_IN"] and info["jtop_interval_s"] == 0.5
    src.close()
    assert client.closed is False  # the caller's client is not ours to close


def test_jtop_agx_orin_rails_without_total(fake_clock: FakeClock) -> None:
    client = FakeJtop()
    client.power = {"rail": {"VDD_GPU_SOC": {"power": 3565}, "VDD_CPU_CV": {"power": 594},
                             "VIN_SYS_5V0": {"power": 2619}, "VDDQ_VDD2_1V8AO": {"power": 402}},
                    "tot": {"power": 7180, "avg": 7180}}  # jtop's blind sum of every rail: not used
    src = JtopSource({}, client=client)
    values = src.read()
    assert values["power_w"] == pytest.approx(3.565 + 0.594 + 2.619)
    assert "VDDQ_VDD2_1V8AO" in src.describe()["caveat"]


def test_jtop_malformed_rail_warns(fake_clock: FakeClock) -> None:
    client = FakeJtop()
    client.power["tot"] = {"name": "VDD_IN", "avg": 5000}  # no instantaneous 'power'
    src = JtopSource({}, client=client)
    src.drain_warnings()
    values = src.read()
    assert values["power_w"] is None
    assert any("no instantaneous 'power'" in w for w in src.drain_warnings())


def test_jtop_missing_or_service_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", None)  # not installed
    sources, warnings = build_sources([{"source": "jtop"}])
    assert sources == [] and "pip install -U jetson-stats" in warnings[0]

    class JtopException(Exception):
        pass

    def jtop(**_kwargs):
        raise JtopException("The jtop.service is not active. Please run: sudo systemctl restart jtop.service")

    fake = types.ModuleType("jtop")
    fake.jtop = jtop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jtop", fake)
    sources, warnings = build_sources([{"source": "jtop"}])
    assert sources == []
    assert "not active" in warnings[0] and "group jtop" in warnings[0]


def test_jtop_through_a_fake_module(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeJtop()
    client.start = lambda: None  # type: ignore[attr-defined]
    fake = types.ModuleType("jtop")
    fake.jtop = lambda **kwargs: client  # type: ignore[attr-defined]
    fake.__version__ = "4.3.2"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jtop", fake)
    sources, warnings = build_sources([{"source": "jtop", "fallback": ["ina3221"]}])
    assert [s.name for s in sources] == ["jtop"]
    assert sources[0].describe()["jetson_stats_version"] == "4.3.2"
    sources[0].close()
    assert client.closed is True


def test_jtop_falls_back_to_ina3221(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", None)
    root = write_tree(tmp_path, ORIN_NANO_INA)
    sources, warnings = build_sources([{"source": "jtop", "module": "orin-nano",
                                        "fallback": ["ina3221", "tegrastats"]}], root=str(root))
    assert [s.name for s in sources] == ["ina3221"]
    assert sources[0].module == "orin-nano"  # inherited option
    assert any("instead" in w and "jetson-stats" in w for w in warnings)


def test_tegrastats_source_from_lines(fake_clock: FakeClock) -> None:
    src = TegrastatsSource({}, lines=[])
    src.clock = fake_clock
    assert src.read() == {"power_w": None}
    assert "no tegrastats line" in src.drain_warnings()[0]
    src.feed_line(fixture_text("tegrastats_agx_orin_jp5.txt"), t_ns=fake_clock())
    fake_clock.advance(0.05)
    values = src.read()
    assert values[TIMESTAMP_KEY] == fake_clock() - 50_000_000  # timed when the line arrived
    assert values["power_w"] == pytest.approx(6.778)
    assert src.describe()["rails_summed"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    fake_clock.advance(5.0)
    assert src.read() == {"power_w": None}
    assert "old" in src.drain_warnings()[0]


def test_jetson_mode_from_recorded_commands() -> None:
    runner = FakeRunner({
        "nvpmodel": (0, fixture_text("nvpmodel_q_orin_nano.txt"), ""),
        "jetson_clocks": (0, fixture_text("jetson_clocks_show_locked.txt"), ""),
    })
    src = JetsonModeSource({}, command_runner=runner)
    assert src.read() == {}
    snap = src.snapshot()
    assert snap["power_mode:nvpmodel"] == "MAXN_SUPER" and snap["power_mode:nvpmodel_id"] == 2
    assert snap["power_mode:jetson_clocks"] is True
    assert snap["clock_mhz:gpu"] == 1020.0 and snap["clock_max_mhz:cpu0"] == 1728.0
    assert ["jetson_clocks", "--show"] in runner.calls


def test_jetson_mode_without_root_or_nvpmodel() -> None:
    runner = FakeRunner({"nvpmodel": (0, fixture_text("nvpmodel_q_orin_nano.txt"), ""),
                         "jetson_clocks": (1, "", "Error: permission denied")})
    src = JetsonModeSource({}, command_runner=runner)
    snap = src.snapshot()
    assert "power_mode:jetson_clocks" not in snap
    assert "needs root" in src.drain_warnings()[0]
    with pytest.raises(SourceUnavailable, match="nvpmodel not found"):
        JetsonModeSource({}, command_runner=FakeRunner({}))


# JetPack 4 (L4T 32.x) NVIDIA iio driver: /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:deviceN/ with
# rail_name_<ch> (ch 0..2), in_power<ch>_input (mW), in_voltage<ch>_input (mV), in_current<ch>_input (mA).
# File names: energymon/energymon jetson/ina3221x.c, rbonghi/jetson_stats jtop/core/power.py; Nano rails
# (0x40 on bus 6: POM_5V_IN, POM_5V_GPU, POM_5V_CPU): energymon jetson/JetsonPowerRails.md and
# rverdile/nano-temp-monitor power.py (ina3221x/6-0040/iio:device0/in_power0_input = total).
NANO_JP4_INA = {
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_0": "POM_5V_IN\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input": "2371\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_voltage0_input": "5040\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_current0_input": "472\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_1": "POM_5V_GPU\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power1_input": "39\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_voltage1_input": "5016\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_current1_input": "8\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_2": "POM_5V_CPU\n",
    # no in_power2_input on this channel: V x I is used
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_voltage2_input": "5016\n",
    "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_current2_input": "95\n",
}

# AGX Xavier JetPack 4: two devices, 1-0040 (GPU, CPU, SOC) and 1-0041 (CV, VDDRQ, SYS5V), per
# oscarferraz/ICASSP23 jetson_inference_xavier/.../power_loop.sh and energymon's JetsonPowerRails.md.
XAVIER_JP4_INA = {}
for _dev, _addr, _names, _mw in (("iio:device0", "1-0040", ("GPU", "CPU", "SOC"), ("463", "618", "2936")),
                                 ("iio:device1", "1-0041", ("CV", "VDDRQ", "SYS5V"), ("0", "309", "3306"))):
    for _ch, (_name, _p) in enumerate(zip(_names, _mw)):
        XAVIER_JP4_INA["/sys/bus/i2c/drivers/ina3221x/%s/%s/rail_name_%d" % (_addr, _dev, _ch)] = _name + "\n"
        XAVIER_JP4_INA["/sys/bus/i2c/drivers/ina3221x/%s/%s/in_power%d_input" % (_addr, _dev, _ch)] = _p + "\n"


def test_ina3221_jetpack4_iio_form(tmp_path: Path) -> None:
    root = write_tree(tmp_path, NANO_JP4_INA)
    src = Ina3221Source({}, root=str(root))
    assert sorted(src.channels) == ["POM_5V_CPU", "POM_5V_GPU", "POM_5V_IN"]
    values = src.read()
    assert values["power_w"] == pytest.approx(2.371)  # in_power0_input, mW
    assert values["power_w:POM_5V_GPU"] == pytest.approx(0.039)
    assert values["power_w:POM_5V_CPU"] == pytest.approx(5.016 * 0.095)  # V x I without a power file
    info = src.describe()
    assert info["interface"].startswith("iio") and info["rails_summed"] == ["POM_5V_IN"]
    assert info["rails"]["POM_5V_IN"]["power_mW"].endswith("iio:device0/in_power0_input")
    assert src.drain_warnings() == []


def test_ina3221_jetpack4_agx_xavier_sums_six_rails(tmp_path: Path) -> None:
    root = write_tree(tmp_path, XAVIER_JP4_INA)
    src = Ina3221Source({}, root=str(root))
    values = src.read()
    assert values["power_w"] == pytest.approx((463 + 618 + 2936 + 0 + 309 + 3306) / 1000.0)
    assert src.describe()["rails_summed"] == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]


def test_ina3221_labels_with_spaces_unicode_and_duplicates(tmp_path: Path) -> None:
    files = dict(ORIN_NANO_INA)
    base = "/sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon7/"
    files.update({base + "in1_label": "VDD IN ünicode rail\r\n", base + "in1_input": "5000\n",
                  base + "curr1_input": "100\n", base + "in2_label": "VDD_IN\n", base + "in2_input": "5000\n",
                  base + "curr2_input": "200\n", base + "in3_label": "\n", base + "in3_input": "0\n",
                  base + "curr3_input": "0\n"})
    root = write_tree(tmp_path, files)
    src = Ina3221Source({}, root=str(root))
    values = src.read()
    assert values["power_w:VDD IN ünicode rail"] == pytest.approx(0.5)
    assert values["power_w:VDD_IN@1-0041"] == pytest.approx(1.0)  # a second VDD_IN is kept apart
    assert values["power_w"] == pytest.approx(5.072 * 1.124)  # the first VDD_IN is the module total
    assert any("empty label" in s for s in src.describe()["skipped"])


def test_tegrastats_source_survives_garbage_lines() -> None:
    src = TegrastatsSource({}, lines=["\x00\xff garbage " * 1000])
    values = src.read()
    assert values["power_w"] is None and src.drain_warnings()
