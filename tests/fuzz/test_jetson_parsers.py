"""Fuzz: tegrastats, ``nvpmodel -q`` and ``jetson_clocks --show`` parsers (harness/runner/telemetry/jetson_parsers.py).

Properties: never an exception (warnings instead), every figure finite, linear time (CPU), bounded memory.
Seeds: the real lines of tests/telemetry (TX2 JP3/JP4, AGX Xavier, AGX Orin JP6/JP7, Orin Nano, Thor R38/R39)."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given

from harness.runner.telemetry.jetson_parsers import (parse_jetson_clocks_show, parse_nvpmodel_q, parse_tegrastats,
                                                     sum_rails)
from tests.telemetry.helpers import fixture_text
from tests.telemetry.test_jetson_parsers import AGX_ORIN_64, ORIN_NANO_LOAD, TX2_JP3, TX2_JP42, XAVIER_AGX_JP42
from tests.telemetry.test_tegrastats_jetpack7 import AGX_ORIN_JP6, AGX_ORIN_JP7, THOR_R38, THOR_R39, THOR_VIN

from .adversarial import DIGITS_400, FUZZ_SETTINGS, NON_ASCII_DIGITS, check_linear, finite_or_none, mutated
from .conftest import timed

pytestmark = pytest.mark.fuzz

LINES = [TX2_JP3, TX2_JP42, XAVIER_AGX_JP42, AGX_ORIN_64, ORIN_NANO_LOAD, AGX_ORIN_JP6, AGX_ORIN_JP7, THOR_R38,
         THOR_R39, THOR_VIN]
NVPMODEL = fixture_text("nvpmodel_q_orin_nano.txt")
CLOCKS = fixture_text("jetson_clocks_show_locked.txt")


def _check_tegrastats(text: str) -> None:
    rec = parse_tegrastats(text)
    values, total = rec.values()
    assert all(finite_or_none(v) for v in values.values()), values
    assert finite_or_none(total.total_w)
    for module in ("thor", "agx-orin"):
        rec.values(module)


@FUZZ_SETTINGS
@given(mutated(LINES))
def test_tegrastats_never_raises(text: str) -> None:
    timed("tegrastats", _check_tegrastats, text)


@FUZZ_SETTINGS
@given(mutated([NVPMODEL, CLOCKS]))
def test_nvpmodel_and_jetson_clocks_never_raise(text: str) -> None:
    timed("nvpmodel -q", parse_nvpmodel_q, text)
    state, _ = timed("jetson_clocks --show", parse_jetson_clocks_show, text)
    for dom in list(state.cpus.values()) + [state.gpu, state.emc]:
        if dom is not None:
            assert all(finite_or_none(v) for v in (dom.min_mhz, dom.max_mhz, dom.cur_mhz))
    state.locked


@pytest.mark.parametrize("reader,fn,sample", [
    ("tegrastats", parse_tegrastats, THOR_R39),
    ("nvpmodel -q", parse_nvpmodel_q, NVPMODEL.splitlines()[0]),
    ("jetson_clocks --show", parse_jetson_clocks_show, CLOCKS.splitlines()[2]),
])
def test_linear_time_on_adversarial_shapes(reader: str, fn, sample: str) -> None:
    check_linear(fn, sample, lambda text, name: timed(reader, fn, text, what=name)[1])


def test_issue_reproducers() -> None:
    # nvpmodel: ValueError on a non-ASCII digit (the mode number line)
    for digit in NON_ASCII_DIGITS:
        nvp = parse_nvpmodel_q("NV Power Mode: MAXN\n%s\n" % digit)
        assert nvp.name == "MAXN" and nvp.mode_id is None
    # jetson_clocks: OverflowError on a 400-digit number
    state = parse_jetson_clocks_show("cpu0: Online=1 Governor=schedutil MinFreq=%s MaxFreq=%s CurrentFreq=1\n"
                                     "GPU MinFreq=%s MaxFreq=1 CurrentFreq=1\n" % (DIGITS_400, DIGITS_400, DIGITS_400))
    assert state.cpus["cpu0"].min_mhz is None and state.gpu.min_mhz is None and state.cpus["cpu0"].cur_mhz == 0.001
    # 9 s on a 40,000-character line (quadratic field regex)
    _, spent = timed("jetson_clocks --show", parse_jetson_clocks_show, "cpu0: " + "a" * 40_000,
                     what="issue reproducer: 40,000-char line")
    assert spent < 0.5
    # tegrastats: a 400-digit rail keeps the others
    rec = parse_tegrastats("RAM 1/2MB VDD_IN %smW/1mW VDD_SOC 1000mW/1000mW cpu@40C" % DIGITS_400)
    assert rec.rails_w == {"VDD_SOC": 1.0} and any("VDD_IN" in w for w in rec.warnings)
    assert sum_rails({"VDD_IN": None}).total_w is None


def test_memory_is_bounded() -> None:
    tracemalloc.start()
    try:
        parse_tegrastats((THOR_R39 + " ") * 20_000)
        parse_jetson_clocks_show("cpu0: " + "K=v " * 250_000)
        parse_nvpmodel_q("x\n" * 500_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2 ** 20, "peak %.1f MB" % (peak / 2 ** 20)
