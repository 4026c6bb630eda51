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
