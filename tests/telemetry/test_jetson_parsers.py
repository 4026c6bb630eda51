"""tegrastats lines of several JetPack releases and modules, rail summing, nvpmodel, jetson_clocks."""

from __future__ import annotations

import pytest

from harness.runner.telemetry.jetson_parsers import (
    AGX_ORIN_CAVEAT,
    parse_jetson_clocks_show,
    parse_nvpmodel_q,
    parse_tegrastats,
    sum_rails,
)

from .helpers import fixture_text


def test_orin_nano_jp6_line() -> None:
    rec = parse_tegrastats(fixture_text("tegrastats_orin_nano_jp6.txt"))
    assert rec.warnings == []
    assert (rec.ram_used_mb, rec.ram_total_mb) == (2461, 7620)
    assert (rec.swap_used_mb, rec.swap_total_mb) == (1243, 3810)
    assert rec.cpu_load_pct == [19, 7, 12, 4, 0, 3]
    assert rec.cpu_freq_mhz == [729] * 6
    assert (rec.emc_load_pct, rec.emc_freq_mhz) == (4, 2133)
    assert (rec.gpu_load_pct, rec.gpu_freq_mhz) == (0, 305)
    assert rec.temps_c == {"cpu": 46.531, "soc2": 47.312, "soc0": 47.156, "gpu": 48.218, "tj": 48.843,
                           "soc1": 48.843}
    # the first figure (instantaneous), not the running average
    assert rec.rails_w == {"VDD_IN": 5.704, "VDD_CPU_GPU_CV": 0.831, "VDD_SOC": 1.624}
    values, total = rec.values("orin-nano")
    assert values["power_w"] == pytest.approx(5.704)
    assert total.rails_summed == ["VDD_IN"]
    assert values["mem_mb:ram_used"] == 2461
    assert values["clock_mhz:gpu"] == 305
    assert values["clock_mhz:cpu5"] == 729
    assert values["temp_c:tj"] == 48.843


def test_agx_orin_line_sums_three_rails_and_drops_offline_zones() -> None:
    rec = parse_tegrastats(fixture_text("tegrastats_agx_orin_jp5.txt"))
    assert rec.warnings == []
    assert rec.cpu_load_pct[8:] == [None, None, None, None]
    assert rec.gpu_freq_mhz == 0
    # CV0/CV1/CV2/GPU report -256 C when off: no number for them
    assert "CV0" not in rec.temps_c and "GPU" not in rec.temps_c
    assert rec.temps_c["CPU"] == 44.218 and rec.temps_c["Tboard"] == 33.0
    assert "NC" not in rec.rails_w
    assert rec.rails_w["VDDQ_VDD2_1V8AO"] == 0.402
    values, total = rec.values("auto")
    assert total.rails_summed == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert values["power_w"] == pytest.approx(3.565 + 0.594 + 2.619)
    assert total.caveat == AGX_ORIN_CAVEAT
    assert values["power_w:VDDQ_VDD2_1V8AO"] == 0.402  # reported, never added


def test_older_jetpack_formats() -> None:
    nano = parse_tegrastats(fixture_text("tegrastats_nano_jp4.txt"))
    assert nano.warnings == []
    assert nano.rails_w == {"POM_5V_IN": 1.188, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.157}
    assert nano.gpu_freq_mhz == 76 and nano.emc_freq_mhz == 1600
    assert nano.cpu_freq_mhz == [102, 102, None, None]
    values, total = nano.values()
    assert values["power_w"] == pytest.approx(1.188) and total.rails_summed == ["POM_5V_IN"]

    nx = parse_tegrastats(fixture_text("tegrastats_xavier_nx_jp44.txt"))
    assert nx.emc_load_pct == 0 and nx.emc_freq_mhz is None  # "EMC_FREQ 0%": no clock in this format
    assert nx.gpu_freq_mhz is None
    assert nx.values()[0]["power_w"] == pytest.approx(3.595)

    tx1 = parse_tegrastats(fixture_text("tegrastats_tx1_jp3.txt"))
    assert tx1.cpu_load_pct == [11, 4, 9, 1] and tx1.cpu_freq_mhz == [1734] * 4
    assert (tx1.emc_load_pct, tx1.emc_freq_mhz, tx1.gpu_freq_mhz) == (9, 1600, 998)
    assert tx1.rails_w == {}
    values, total = tx1.values()
    assert values["power_w"] is None
    assert "no power rails" in " ".join(tx1.warnings)


@pytest.mark.parametrize("line", ["", "garbage that is not tegrastats", "RAM 2461/76", "VDD_IN 57x4mW/"])
def test_malformed_lines_give_warnings_and_no_numbers(line: str) -> None:
    rec = parse_tegrastats(line)
    assert rec.warnings
    values, total = rec.values()
    assert values["power_w"] is None
    assert values["mem_mb:ram_used"] is None
    assert total.total_w is None


def test_sum_rails_rules() -> None:
    nano = sum_rails({"VDD_IN": 5.0, "VDD_SOC": 1.0})
    assert nano.total_w == 5.0 and nano.rails_summed == ["VDD_IN"]
    # module says AGX Orin but a rail is missing: no total, and the warning names it
    missing = sum_rails({"VDD_GPU_SOC": 3.0, "VDD_CPU_CV": 0.5}, "agx-orin")
    assert missing.total_w is None and "VIN_SYS_5V0" in missing.warnings[0]
    unknown = sum_rails({"GPU": 1.0, "CPU": 2.0})
    assert unknown.total_w is None and "rails" in unknown.warnings[0]
    forced = sum_rails({"GPU": 1.0, "CPU": 2.0}, rails=["GPU", "CPU"])
    assert forced.total_w == 3.0 and forced.method == "configured rails"
    unread = sum_rails({"VDD_IN": None})
    assert unread.total_w is None and "unreadable" in unread.warnings[0]


def test_nvpmodel_q() -> None:
    mode = parse_nvpmodel_q(fixture_text("nvpmodel_q_orin_nano.txt"))
    assert (mode.name, mode.mode_id, mode.warnings) == ("MAXN_SUPER", 2, [])
    bad = parse_nvpmodel_q("nvpmodel: command failed")
    assert bad.name is None and bad.warnings


def test_jetson_clocks_show() -> None:
    state = parse_jetson_clocks_show(fixture_text("jetson_clocks_show_agx_orin.txt"))
    assert state.power_mode == "MAXN"
    assert state.cpus["cpu0"].max_mhz == pytest.approx(2201.6)
    assert state.cpus["cpu1"].cur_mhz == pytest.approx(1728.0)
    assert state.cpus["cpu0"].governor == "schedutil"
    assert state.cpus["cpu8"].online is False
    assert (state.gpu.min_mhz, state.gpu.max_mhz, state.gpu.cur_mhz) == (306.0, 1300.5, 306.0)
    assert state.emc.max_mhz == 3199.0
    assert state.locked is False
    locked = parse_jetson_clocks_show(fixture_text("jetson_clocks_show_locked.txt"))
    assert locked.locked is True and locked.gpu.cur_mhz == 1020.0
    empty = parse_jetson_clocks_show("sudo: a password is required")
    assert empty.warnings and empty.locked is None


# -- real lines posted in public issues (each names its source) ----------------------------------

# TX2, JetPack 4.2: FindHao/tx-utils issue #3 (2019-09-05). Power without units, no SWAP, no clocks on EMC/GR3D.
TX2_JP42 = ("RAM 2020/7852MB (lfb 1164x4MB) CPU [9%@345,21%@345,25%@345,3%@345,1%@345,1%@345] EMC_FREQ 0% "
            "GR3D_FREQ 0% PLL@42.5C MCPU@42.5C PMIC@100C Tboard@40C GPU@41C BCPU@42.5C thermal@41.9C "
            "Tdiode@41.25C VDD_SYS_GPU 153/158 VDD_SYS_SOC 536/547 VDD_4V0_WIFI 633/527 VDD_IN 3140/3208 "
            "VDD_SYS_CPU 536/590 VDD_SYS_DDR 557/601")
# TX2, JetPack 3.x: gustavz/realtime_object_detection issue #24 (2018-06-15). MTS fg/bg, APE, VDD_* rails.
TX2_JP3 = ("RAM 1685/7854MB (lfb 1044x4MB) SWAP 278/8192MB (cached 23MB) CPU [0%@1303,0%@345,0%@345,0%@1419,"
           "0%@1420,0%@1421] EMC_FREQ 0%@1866 GR3D_FREQ 0%@140 APE 150 MTS fg 1% bg 8% BCPU@41C MCPU@41C GPU@39C "
           "PLL@41C Tboard@37C Tdiode@37.25C PMIC@100C thermal@39.9C VDD_IN 1931/1931 VDD_CPU 231/231 "
           "VDD_GPU 154/154 VDD_SOC 385/385 VDD_WIFI 38/38 VDD_DDR 326/326")
# AGX Xavier, JetPack 4.2: martinkersner/gtop pull request #7 (2019-06-17). Rails named GPU/CPU/SOC like the
# temperatures, no VDD_IN.
XAVIER_AGX_JP42 = ("RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,"
                   "0%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C Tboard@31C "
                   "Tdiode@32C AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 SOC 2936/2936 "
                   "CV 0/0 VDDRQ 309/309 SYS5V 3306/3306")
# AGX Orin 64GB, JetPack 5/6 (12 cores online, timestamp): GDWR/jetson_exporter issue #14 (2025-04-11).
AGX_ORIN_64 = ("04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) CPU [0%@729,"
               "0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 "
               "GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.562C Tboard@32C SOC2@40.093C Tdiode@33C "
               "SOC0@41.093C CV1@-256C GPU@-256C tj@44.343C SOC1@41.25C CV2@-256C VDD_GPU_SOC 2340mW/2340mW "
               "VDD_CPU_CV 390mW/390mW VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW")
# Orin Nano 8GB under load, JetPack 6: rbonghi/jetson_stats issue #624 (2025-05-16). Engines with load%@clock,
# lowercase temperatures, "(lfb 5x1MB)".
ORIN_NANO_LOAD = ("05-15-2025 18:30:28 RAM 6982/7620MB (lfb 5x1MB) SWAP 2640/16384MB (cached 202MB) CPU "
                  "[97%@1984,95%@1984,95%@1984,91%@1984,88%@1984,93%@247] EMC_FREQ 18%@3199 GR3D_FREQ 84%@[713] "
                  "NVENC 1%@115 NVDEC 40%@115 NVJPG off NVJPG1 off VIC 31%@115 OFA off NVDLA0 off PVA0_FREQ off "
                  "APE 174 cv0@63.031C cpu@65.562C soc2@64.156C soc0@63.031C cv1@62.937C gpu@63.5C tj@65.562C "
                  "soc1@64.718C cv2@60.875C VDD_IN 17946mW/15710mW VDD_CPU_GPU_CV 8896mW/7585mW VDD_SOC 3923mW/3515mW")
# TX2, JetPack 4 (PMIC@50C): henrygd/beszel pull request #1631 (2026-01-12).
TX2_BESZEL = ("RAM 3276/7859MB (lfb 5x4MB) SWAP 1626/12122MB (cached 181MB) CPU [44%@1421,49%@2031,67%@2034,"
              "17%@1420,25%@1419,8%@1420] EMC_FREQ 1%@1866 GR3D_FREQ 0%@114 APE 150 MTS fg 1% bg 1% PLL@42.5C "
              "MCPU@42.5C PMIC@50C Tboard@38C GPU@39.5C BCPU@42.5C thermal@41.3C Tdiode@39.25C VDD_SYS_GPU 182/182 "
              "VDD_SYS_SOC 730/730 VDD_4V0_WIFI 0/0 VDD_IN 5297/5297 VDD_SYS_CPU 1917/1917 VDD_SYS_DDR 1241/1241")


def test_real_tx2_lines() -> None:
    rec = parse_tegrastats(TX2_JP42)
    assert rec.warnings == []
    assert (rec.ram_used_mb, rec.ram_total_mb, rec.ram_lfb_blocks, rec.ram_lfb_block_mb) == (2020, 7852, 1164, 4)
    assert rec.swap_used_mb is None
    assert rec.cpu_load_pct == [9, 21, 25, 3, 1, 1] and rec.cpu_freq_mhz == [345] * 6
    assert (rec.emc_load_pct, rec.emc_freq_mhz, rec.gpu_load_pct, rec.gpu_freq_mhz) == (0, None, 0, None)
    # PMIC@100C is JetPack 4's fixed placeholder, not a reading: kept apart, never a temperature
    assert rec.temps_c == {"PLL": 42.5, "MCPU": 42.5, "Tboard": 40.0, "GPU": 41.0, "BCPU": 42.5,
                           "thermal": 41.9, "Tdiode": 41.25}
    assert rec.temps_placeholder == {"PMIC": 100.0}
    assert rec.rails_w == {"VDD_SYS_GPU": 0.153, "VDD_SYS_SOC": 0.536, "VDD_4V0_WIFI": 0.633, "VDD_IN": 3.14,
                           "VDD_SYS_CPU": 0.536, "VDD_SYS_DDR": 0.557}
    assert rec.rails_avg_w["VDD_IN"] == 3.208
    values, total = rec.values()
    assert values["power_w"] == 3.14 and total.rails_summed == ["VDD_IN"]

    old = parse_tegrastats(TX2_JP3)
    assert old.warnings == []
    assert (old.swap_used_mb, old.swap_total_mb, old.swap_cached_mb) == (278, 8192, 23)
    assert old.cpu_freq_mhz == [1303, 345, 345, 1419, 1420, 1421]
    assert (old.emc_freq_mhz, old.gpu_freq_mhz) == (1866, 140)
    assert (old.mts_fg_pct, old.mts_bg_pct) == (1, 8)
    assert old.engines == {"APE": {"load_pct": None, "freq_mhz": 150.0}}
    assert old.values()[0]["power_w"] == 1.931

    b = parse_tegrastats(TX2_BESZEL)
    assert b.warnings == [] and "PMIC" not in b.temps_c and b.temps_placeholder == {"PMIC": 50.0}
    assert b.temps_c["GPU"] == 39.5
    assert b.rails_w["VDD_SYS_GPU"] == 0.182 and b.values()[0]["power_w"] == 5.297


def test_real_agx_xavier_line_sums_its_six_rails() -> None:
    rec = parse_tegrastats(XAVIER_AGX_JP42)
    assert rec.warnings == []
    # the rails GPU/CPU are not the temperatures GPU@/CPU@
    assert rec.rails_w == {"GPU": 0.463, "CPU": 0.618, "SOC": 2.936, "CV": 0.0, "VDDRQ": 0.309, "SYS5V": 3.306}
    assert rec.temps_c["GPU"] == 30.5 and rec.temps_c["CPU"] == 31.5
    for module in ("auto", "agx-xavier"):
        values, total = rec.values(module)
        assert total.rails_summed == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]
        assert values["power_w"] == pytest.approx(0.463 + 0.618 + 2.936 + 0.0 + 0.309 + 3.306)
        assert "AGX Xavier" in total.caveat
    # a board with only some of those names is not taken for an AGX Xavier
    assert sum_rails({"GPU": 1.0, "CPU": 2.0}).total_w is None


def test_real_agx_orin_64gb_line() -> None:
    rec = parse_tegrastats(AGX_ORIN_64)
    assert rec.warnings == []
    assert rec.timestamp == "04-11-2025 10:36:27"
    assert (rec.ram_used_mb, rec.ram_total_mb, rec.swap_used_mb, rec.swap_cached_mb) == (4321, 62801, 19, 0)
    assert rec.cpu_freq_mhz == [729] * 12
    assert (rec.gpu_freq_mhz, rec.gpu_freqs_mhz) == (0, [0, 0])
    assert rec.engines == {"VIC_FREQ": {"load_pct": None, "freq_mhz": 729.0},
                           "APE": {"load_pct": None, "freq_mhz": 174.0}}
    assert sorted(rec.temps_offline) == ["CV0", "CV1", "CV2", "GPU"]
    assert rec.temps_c == {"CPU": 44.562, "Tboard": 32.0, "SOC2": 40.093, "Tdiode": 33.0, "SOC0": 41.093,
                           "tj": 44.343, "SOC1": 41.25}
    values, total = rec.values()
    assert total.rails_summed == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert values["power_w"] == pytest.approx(2.340 + 0.390 + 4.025)
    assert "power_w:NC" not in values and values["power_w:VDDQ_VDD2_1V8AO"] == 0.301


def test_real_orin_nano_line_under_load() -> None:
    rec = parse_tegrastats(ORIN_NANO_LOAD)
    assert rec.warnings == []
    assert (rec.ram_lfb_blocks, rec.ram_lfb_block_mb) == (5, 1)
    assert rec.cpu_load_pct == [97, 95, 95, 91, 88, 93] and rec.cpu_freq_mhz == [1984] * 5 + [247]
    assert (rec.emc_load_pct, rec.emc_freq_mhz, rec.gpu_load_pct, rec.gpu_freq_mhz) == (18, 3199, 84, 713)
    assert rec.engines["NVENC"] == {"load_pct": 1.0, "freq_mhz": 115.0}
    assert rec.engines["NVDEC"] == {"load_pct": 40.0, "freq_mhz": 115.0}
    assert rec.engines["VIC"] == {"load_pct": 31.0, "freq_mhz": 115.0}
    assert rec.engines["NVJPG"] == {"load_pct": None, "freq_mhz": None} and "PVA0_FREQ" in rec.engines
    assert rec.temps_c["cv0"] == 63.031 and rec.temps_c["tj"] == 65.562 and len(rec.temps_c) == 9
    # instantaneous, not the running average
    assert rec.rails_w == {"VDD_IN": 17.946, "VDD_CPU_GPU_CV": 8.896, "VDD_SOC": 3.923}
    assert rec.rails_avg_w == {"VDD_IN": 15.71, "VDD_CPU_GPU_CV": 7.585, "VDD_SOC": 3.515}
    assert rec.values("orin-nano")[0]["power_w"] == 17.946


@pytest.mark.parametrize("line", [ORIN_NANO_LOAD + "\r\n", "\r" + ORIN_NANO_LOAD, ORIN_NANO_LOAD + "\n\n",
                                  "RAM 1/2MB\r" + ORIN_NANO_LOAD])
def test_line_endings_and_overwritten_lines(line: str) -> None:
    rec = parse_tegrastats(line)
    assert rec.warnings == [] and rec.rails_w["VDD_IN"] == 17.946 and rec.ram_used_mb == 6982


def test_hostile_text_does_not_break_the_known_fields() -> None:
    # unknown fields (future engines, unicode, odd tokens) are skipped; the known ones still parse
    line = ("RAM 2461/7620MB (lfb 3x2MB) FOO_BAR 12%@x ÜBER@ NEWENG 5%@300 CPU [19%@729,off,bogus,7%@729] "
            "GR3D_FREQ 3%@[305,off] cpu@46.5C VDD_IN 5704mW/5704mW VDD_SOC 1624mW/1624mW tempé@-3.5C")
    rec = parse_tegrastats(line)
    assert rec.ram_used_mb == 2461
    assert rec.cpu_load_pct == [19, None, None, 7] and rec.cpu_freq_mhz == [729, None, None, 729]
    assert (rec.gpu_load_pct, rec.gpu_freq_mhz, rec.gpu_freqs_mhz) == (3, 305, [305, None])
    assert rec.engines["NEWENG"] == {"load_pct": 5.0, "freq_mhz": 300.0}
    assert rec.temps_c["cpu"] == 46.5 and rec.temps_c["tempé"] == -3.5  # negative, still a temperature
    assert rec.rails_w == {"VDD_IN": 5.704, "VDD_SOC": 1.624}
    assert any("bogus" in w for w in rec.warnings)
    # a very long line is cut, not choked on
    long = parse_tegrastats(ORIN_NANO_LOAD + " X" * 100000)
    assert long.rails_w["VDD_IN"] == 17.946 and any("cut" in w for w in long.warnings)
    # a partial last line (tegrastats killed mid-write) gives what it has
    part = parse_tegrastats(ORIN_NANO_LOAD[:ORIN_NANO_LOAD.index("VDD_SOC") + 10])
    assert part.rails_w == {"VDD_IN": 17.946, "VDD_CPU_GPU_CV": 8.896} and part.ram_used_mb == 6982
    # bytes and non-strings do not raise
    assert parse_tegrastats(ORIN_NANO_LOAD.encode()).rails_w["VDD_IN"] == 17.946
