"""tegrastats on JetPack 6/7 and Jetson Thor: real lines from public material, parsed by the format's rules.

Sources (each line below names its own):
- lesomnus/tegra-exporter, stats/parse_test.go: lines captured on AGX Orin (L4T R36.4.4, JetPack 6), AGX Thor
  (L4T R38.4.0, JetPack 7.1; L4T R39.2.0, JetPack 7.2) and AGX Orin on JetPack 7.2 (kernel 6.8.12-1021-tegra).
- a Thor capture note (L4T R38.4, "tegrastats foreground sample (~idle system)") in a public repository,
  search-index file id 54612712197: the line with the VIN rail.
- rbonghi/jetson_stats pull request #900: VIN (INA238 on the carrier) is reported by jtop as the total.
- rbonghi/jetson_stats pull request #894: JetPack 7.2 AGX Orin prints "GR3D_FREQ 0%@[1300,1300]".
"""

from __future__ import annotations

import pytest

from harness.runner.telemetry.jetson_parsers import parse_tegrastats, sum_rails

# AGX Orin 64GB, L4T R36.4.4 (JetPack 6.2.1): lesomnus/tegra-exporter stats/parse_test.go
AGX_ORIN_JP6 = (
    "05-09-2026 18:42:07 RAM 18202/62841MB (lfb 466x4MB) SWAP 86/31420MB (cached 0MB) CPU [16%@1949,6%@1761,"
    "4%@1222,4%@2201,4%@1036,33%@1036,0%@1036,40%@1036,3%@1190,46%@1190,6%@1190,2%@1190] EMC_FREQ 3%@2133 "
    "GR3D_FREQ 0%@[0,0] NVENC 78%@166 NVDEC off NVJPG off NVJPG1 off VIC 32%@115 OFA off NVDLA0 off NVDLA1 off "
    "PVA0_FREQ off APE 174 cpu@52.343C soc2@48.343C soc0@49.062C tj@52.343C soc1@49.531C VDD_GPU_SOC 2412mW/2412mW "
    "VDD_CPU_CV 1607mW/1607mW VIN_SYS_5V0 4607mW/4657mW")
# AGX Thor, L4T R38.4.0 (JetPack 7.1), no VIN rail: lesomnus/tegra-exporter stats/parse_test.go
THOR_R38 = (
    "05-17-2026 10:00:33 RAM 4280/125773MB (lfb 29x4MB) SWAP 0/2048MB (cached 0MB) CPU [0%@972,0%@972,0%@972,"
    "0%@972,1%@972,0%@972,1%@972,0%@972,0%@2601,17%@2601,1%@972,9%@972,0%@972,1%@972] EMC_FREQ 0%@665 "
    "GR3D_FREQ @[0,0,0] NVENC0_FREQ @0 NVENC1_FREQ @0 NVDEC0_FREQ @0 NVDEC1_FREQ @0 NVJPG0_FREQ @0 VIC off "
    "OFA_FREQ @0 PVA0_FREQ off APE 300 cpu@35.25C tj@36.031C soc012@36.062C soc345@34.5C VDD_GPU 0mW/0mW "
    "VDD_CPU_SOC_MSS 4923mW/4544mW VIN_SYS_5V0 4327mW/4227mW")
# AGX Thor, L4T R39.2.0 (JetPack 7.2): three figures per rail, two per temperature
THOR_R39 = (
    "07-23-2026 15:29:27 RAM 9091/125811MB (lfb 19x4MB) SWAP 0/2048MB (cached 0MB) CPU [40%@972,16%@972,18%@972,"
    "20%@972,13%@972,11%@972,15%@972,19%@972,10%@972,15%@972,28%@972,11%@972,11%@972,15%@972] EMC_FREQ 7%@3200 "
    "GR3D_FREQ @[314,314,314] NVENC0_FREQ @1556 NVENC1_FREQ @1556 NVDEC0_FREQ @1556 NVDEC1_FREQ @1556 "
    "NVJPG0_FREQ @1556 VIC 59%@423 OFA_FREQ @1556 PVA0_FREQ off APE 300 cpu@34.312C/34.843C tj@35.906C/35.906C "
    "soc012@34.093C/34.437C gpu@35.906C/35.906C soc345@34.437C/34.437C VDD_GPU 4925mW/4925mW/4925mW "
    "VDD_CPU_SOC_MSS 7953mW/8332mW/8710mW VIN_SYS_5V0 6667mW/6717mW/6767mW")
# AGX Orin on JetPack 7.2 (R39.2, 4 cores off): lesomnus/tegra-exporter stats/parse_test.go
AGX_ORIN_JP7 = (
    "07-31-2026 14:58:05 RAM 4714/62878MB (lfb 7x4MB) SWAP 0/2048MB (cached 0MB) CPU [78%@1728,33%@1728,46%@1728,"
    "55%@1728,49%@729,48%@729,37%@729,57%@729,off,off,off,off] EMC_FREQ 2%@2133 GR3D_FREQ 0%@[0,0] NVENC0 off "
    "NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 "
    "cpu@50.718C/50.718C soc2@47.656C/47.656C soc0@47.156C/47.156C tj@50.718C/50.718C soc1@49C/49C "
    "VDD_GPU_SOC 2265mW/2265mW/2265mW VDD_CPU_CV 2643mW/2643mW/2643mW VIN_SYS_5V0 4722mW/4722mW/4722mW")
# AGX Thor, L4T R38.4, with the board-input rail VIN (search-index file id 54612712197)
THOR_VIN = (
    "04-21-2026 15:50:52 RAM 105265/125772MB (lfb 34x4MB) CPU [0%@972,0%@972,0%@972,0%@972,0%@972,0%@972,1%@972,"
    "0%@972,0%@972,0%@972,0%@972,8%@972,0%@972,0%@972] EMC_FREQ 0%@2750 GR3D_FREQ @[314,314,314] NVENC0_FREQ @314 "
    "NVENC1_FREQ @314 NVDEC0_FREQ @314 NVDEC1_FREQ @314 NVJPG0_FREQ @314 VIC off OFA_FREQ @315 PVA0_FREQ off "
    "APE 300 cpu@37.343C tj@38.875C soc012@37.468C gpu@38.875C soc345@37.406C VDD_GPU 1962mW/1962mW "
    "VDD_CPU_SOC_MSS 5887mW/5887mW VIN_SYS_5V0 5635mW/5635mW VIN 19780mW/19780mW")


def test_agx_orin_jetpack6() -> None:
    rec = parse_tegrastats(AGX_ORIN_JP6)
    assert rec.warnings == []
    values, total = rec.values()
    assert values["power_w"] == pytest.approx(2.412 + 1.607 + 4.607)
    assert total.rails_summed == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert rec.temps_c == {"cpu": 52.343, "soc2": 48.343, "soc0": 49.062, "tj": 52.343, "soc1": 49.531}
    assert rec.gpu_freqs_mhz == [0.0, 0.0] and rec.engines["NVENC"] == {"load_pct": 78.0, "freq_mhz": 166.0}


def test_thor_r38_without_vin_sums_the_module_rails() -> None:
    rec = parse_tegrastats(THOR_R38)
    assert rec.warnings == []
    assert rec.rails_w == {"VDD_GPU": 0.0, "VDD_CPU_SOC_MSS": 4.923, "VIN_SYS_5V0": 4.327}
    assert rec.rails_avg_w["VDD_CPU_SOC_MSS"] == 4.544
    for module in ("auto", "thor"):
        values, total = rec.values(module)
        assert values["power_w"] == pytest.approx(4.923 + 4.327)
        assert total.rails_summed == ["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"] and "Thor" in total.caveat
    # "GR3D_FREQ @[0,0,0]": clocks and no load; "NVENC0_FREQ @0": a clock
    assert rec.gpu_load_pct is None and rec.gpu_freqs_mhz == [0.0, 0.0, 0.0]
    assert rec.engines["NVENC0_FREQ"] == {"load_pct": None, "freq_mhz": 0.0}
    assert rec.engines["VIC"] == {"load_pct": None, "freq_mhz": None}
    assert len(rec.cpu_load_pct) == 14 and rec.cpu_freq_mhz[8] == 2601.0


def test_thor_r39_three_figure_rails_and_two_figure_temperatures() -> None:
    rec = parse_tegrastats(THOR_R39)
    assert rec.warnings == []
    # instantaneous / average / maximum: the first is the reading
    assert rec.rails_w == {"VDD_GPU": 4.925, "VDD_CPU_SOC_MSS": 7.953, "VIN_SYS_5V0": 6.667}
    assert rec.rails_avg_w == {"VDD_GPU": 4.925, "VDD_CPU_SOC_MSS": 8.332, "VIN_SYS_5V0": 6.717}
    assert rec.rails_max_w == {"VDD_GPU": 4.925, "VDD_CPU_SOC_MSS": 8.71, "VIN_SYS_5V0": 6.767}
    values, total = rec.values("thor")
    assert values["power_w"] == pytest.approx(4.925 + 7.953 + 6.667)
    # current / maximum: the first is the temperature
    assert rec.temps_c == {"cpu": 34.312, "tj": 35.906, "soc012": 34.093, "gpu": 35.906, "soc345": 34.437}
    assert rec.temps_max_c["cpu"] == 34.843 and values["temp_c:cpu"] == 34.312
    assert rec.gpu_load_pct is None and rec.gpu_freq_mhz == 314.0
    assert rec.engines["NVENC0_FREQ"]["freq_mhz"] == 1556.0 and rec.engines["VIC"] == {"load_pct": 59.0,
                                                                                        "freq_mhz": 423.0}
    assert (rec.emc_load_pct, rec.emc_freq_mhz) == (7.0, 3200.0)


def test_agx_orin_on_jetpack7() -> None:
    rec = parse_tegrastats(AGX_ORIN_JP7)
    assert rec.warnings == []
    values, total = rec.values()
    assert values["power_w"] == pytest.approx(2.265 + 2.643 + 4.722)
    assert total.method == "AGX Orin rail sum"
    assert rec.temps_c["soc1"] == 49.0 and rec.temps_max_c["soc1"] == 49.0 and rec.temps_c["tj"] == 50.718
    assert rec.cpu_load_pct[8:] == [None] * 4 and (rec.gpu_load_pct, rec.gpu_freqs_mhz) == (0.0, [0.0, 0.0])


def test_thor_vin_is_the_total() -> None:
    rec = parse_tegrastats(THOR_VIN)
    assert rec.warnings == [] and rec.swap_used_mb is None
    for module in ("auto", "thor"):
        values, total = rec.values(module)
        assert values["power_w"] == 19.78 and total.rails_summed == ["VIN"]
        assert "board input" in total.caveat
    assert values["power_w:VDD_CPU_SOC_MSS"] == 5.887


@pytest.mark.parametrize("line,load,clock", [
    ("RAM 3429/125749MB (lfb 120x4MB) CPU [0%,5%,off]@2601 GR3D_FREQ 32% cpu@49.75C/49.75C VIN 28906mW/14453mW/28906mW",
     32.0, None),  # JetPack 7.2 lines without SWAP/EMC, load without a clock
    ("RAM 20642/62817MB (lfb 1x2MB) EMC_FREQ 3%@3199 GR3D_FREQ 0%@[1300,1300] cpu@52.968C/52.968C "
     "VIN_SYS_5V0 1mW/1mW/1mW", 0.0, 1300.0),  # jetson_stats PR #894's load%@[clocks] form
])
def test_gr3d_forms(line: str, load: object, clock: object) -> None:
    rec = parse_tegrastats(line)
    assert (rec.gpu_load_pct, rec.gpu_freq_mhz) == (load, clock)
    assert rec.emc_load_pct is None or rec.emc_load_pct == 3.0


def test_emc_clock_without_load() -> None:
    rec = parse_tegrastats("RAM 264/28409MB (lfb 7004x4MB) EMC_FREQ @2133 GR3D_FREQ 0%@1109 tj@41C VDD_IN 1mW/1mW")
    assert (rec.emc_load_pct, rec.emc_freq_mhz) == (None, 2133.0)


def test_unknown_rail_format_is_not_blamed_on_root() -> None:
    # a rail printed in a form the parser does not know: say so, do not blame permissions
    rec = parse_tegrastats("RAM 1/2MB cpu@40C VDD_GPU 1mW/2mW/3mW/4mW VIN 5mW/6mW/7mW/8mW")
    assert rec.rails_w == {}
    text = " ".join(rec.warnings)
    assert "format this parser does not know" in text and "root" not in text
    # no rail at all (tegrastats without root on some releases): the permission hint is right
    bare = parse_tegrastats("RAM 2461/7620MB (lfb 3x2MB) CPU [1%@729] cpu@46C")
    assert any("root" in w for w in bare.warnings)


def test_pmic_placeholder_is_not_a_temperature_and_does_not_trip_the_guard() -> None:
    from harness.runner.telemetry.jetson import TegrastatsSource
    from harness.runner.telemetry.sampler import throttle_flags

    # Nano, JetPack 4 (a public parser's docstring example line; PMIC@100C on every Nano)
    nano = ("RAM 1766/3964MB (lfb 197x4MB) SWAP 0/2048MB (cached 0MB) CPU [24%@1224,15%@1224,13%@1224,10%@1224] "
            "EMC_FREQ 0% GR3D_FREQ 0% PLL@21C CPU@25C PMIC@100C GPU@23.5C AO@33.5C thermal@24.5C POM_5V_IN 2545/2547 "
            "POM_5V_GPU 0/0 POM_5V_CPU 549/529")
    rec = parse_tegrastats(nano)
    values, _ = rec.values()
    assert "temp_c:PMIC" not in values and max(v for k, v in values.items() if k.startswith("temp_c:")) == 33.5
    assert rec.temps_placeholder == {"PMIC": 100.0} and values["power_w"] == 2.545
    snap = TegrastatsSource({}, lines=[nano]).snapshot()
    temps = {k.split(":", 1)[1]: v for k, v in snap.items() if k.startswith("temp_c:")}
    assert throttle_flags({"temps_c": temps}, {"temps_c": temps}) == []
    # the guard itself still flags a real 100 C zone (the test would catch PMIC stored as a reading)
    assert throttle_flags({"temps_c": dict(temps, PMIC=100.0)}, {"temps_c": temps})


def test_thor_is_a_known_module() -> None:
    from harness.runner.telemetry.jetson import TegrastatsSource

    src = TegrastatsSource({"module": "thor"}, lines=[THOR_R39])
    values = src.read()
    assert values["power_w"] == pytest.approx(19.545)
    assert "Thor" in src.describe()["caveat"]
    total = sum_rails({"VDD_GPU": 1.0, "VDD_CPU_SOC_MSS": 2.0}, "thor")
    assert total.total_w is None and "VIN_SYS_5V0" in total.warnings[0]


def test_pmic_placeholder_through_jtop_and_sysfs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.runner.telemetry.generic import ThermalSource
    from harness.runner.telemetry.jetson import JtopSource
    from tests.telemetry.helpers import write_tree

    # Jetson Nano thermal zones (L4T 32.x): PMIC-Die reads a constant 100000
    root = write_tree(tmp_path, {"/sys/class/thermal/thermal_zone0/type": "AO-therm\n",
                                 "/sys/class/thermal/thermal_zone0/temp": "33500\n",
                                 "/sys/class/thermal/thermal_zone4/type": "PMIC-Die\n",
                                 "/sys/class/thermal/thermal_zone4/temp": "100000\n"})
    values = ThermalSource({}, root=str(root)).read()
    assert values == {"temp_c:AO-therm": 33.5}

    class Client:  # jtop's temperature dict for the same board
        power = {"rail": {"POM_5V_IN": {"power": 2545}}}
        memory = {}
        temperature = {"AO": {"temp": 33.5, "online": True}, "PMIC": {"temp": 100.0, "online": True}}
        gpu = {}

    read = JtopSource({}, client=Client()).read()
    assert "temp_c:PMIC" not in read and read["temp_c:AO"] == 33.5 and read["power_w"] == 2.545


def test_thor_sysfs_rails_and_the_ina238_board_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.runner.telemetry.jetson import Ina3221Source
    from tests.telemetry.helpers import write_tree

    # Thor's INA3221 labels (VDD_GPU, VDD_CPU_SOC_MSS, VIN_SYS_5V0) and the carrier's INA238 (power1_input, uW)
    hw = "/sys/bus/i2c/drivers/ina3221/2-0040/hwmon/hwmon1/"
    files = {hw + "in1_label": "VDD_GPU\n", hw + "in1_input": "12040\n", hw + "curr1_input": "640\n",
             hw + "in2_label": "VDD_CPU_SOC_MSS\n", hw + "in2_input": "12040\n", hw + "curr2_input": "960\n",
             hw + "in3_label": "VIN_SYS_5V0\n", hw + "in3_input": "5088\n", hw + "curr3_input": "1740\n",
             hw + "in7_label": "sum of shunt voltages\n", hw + "in7_input": "1\n"}
    no_vin = Ina3221Source({}, root=str(write_tree(tmp_path / "a", files))).read()
    assert no_vin["power_w"] == pytest.approx(12.04 * 0.64 + 12.04 * 0.96 + 5.088 * 1.74)
    files["/sys/bus/i2c/drivers/ina238/2-0044/hwmon/hwmon4/power1_input"] = "26686000\n"
    src = Ina3221Source({}, root=str(write_tree(tmp_path / "b", files)))
    values = src.read()
    assert values["power_w"] == pytest.approx(26.686) and values["power_w:VIN"] == pytest.approx(26.686)
    assert src.describe()["rails_summed"] == ["VIN"]


# jetson_clocks --show on AGX Orin, JetPack 5.0 (tegra234): rbonghi/jetson_stats issue #381 (2023-03-01)
ORIN_JP5_CLOCKS = (
    "SOC family:tegra234  Machine:NVIDIA Orin Jetson-Small Developer Kit\n"
    "Online CPUs: 0-11\n"
    "cpu0: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2112000 IdleStates: WFI=1 c7=1 \n"
    "cpu1: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1 \n"
    "cpu10: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1 \n"
    "cpu11: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1 \n")


def test_jetpack5_jetson_clocks_show() -> None:
    from harness.runner.telemetry.jetson_parsers import parse_jetson_clocks_show

    state = parse_jetson_clocks_show(ORIN_JP5_CLOCKS)
    assert sorted(state.cpus) == ["cpu0", "cpu1", "cpu10", "cpu11"] and state.warnings == []
    cpu11 = state.cpus["cpu11"]
    assert (cpu11.min_mhz, cpu11.max_mhz, cpu11.cur_mhz, cpu11.governor) == (115.2, 2201.6, 1190.4, "schedutil")
    assert state.locked is False  # min != max: jetson_clocks not applied
