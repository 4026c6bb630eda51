"""Fuzz: the external meter readers (telemetry/meter.py): parse_watts on meter output and the serial line reader.

Property: (watts finite >= 0, None) or (None, warning) - never an exception; linear time (the number pattern
could start at every digit of a long run: quadratic)."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.telemetry.meter import MeterSerialSource, parse_watts

from .adversarial import DIGITS_400, FS_SETTINGS, FUZZ_SETTINGS, check_linear, mutated
from .conftest import timed
from .sysfs import FakeTree

pytestmark = pytest.mark.fuzz

SAMPLES = ["12.3", "12.3 W", "12300 mW", "P=4.1W I=0.8A", "V=5.12V A=0.834A W=4.27W", "0.005kW"]


def _check(text: str) -> None:
    watts, problem = parse_watts(text)
    assert (watts is None) != (problem is None) or (watts is not None and problem is None)
    assert watts is None or (math.isfinite(watts) and watts >= 0)


@FUZZ_SETTINGS
@given(mutated(SAMPLES))
def test_parse_watts_never_raises(text: str) -> None:
    timed("meter parse_watts", _check, text)


@FS_SETTINGS
@given(st.binary(max_size=500))
def test_serial_lines_of_any_bytes(data: bytes) -> None:
    tree = FakeTree()
    try:
        root = tree.write({"/dev/meter": b""})
        src = MeterSerialSource({"device": os.path.join(root, "dev/meter")})
        try:
            with open(os.path.join(root, "dev/meter"), "ab") as handle:
                handle.write(data + b"\n")
            values, _ = timed("meter serial lines", src.read, what="bytes appended to the device file")
            assert all(v is None or math.isfinite(v) for v in values.values())
        finally:
            src.close()
    finally:
        tree.close()


def test_linear_time_and_big_numbers() -> None:
    check_linear(_check, "P=4.1W I=0.8A", lambda text, name: timed("meter parse_watts", _check, text, what=name)[1])
    assert parse_watts(DIGITS_400 + " W")[0] is None  # implausible, not an OverflowError
    _, spent = timed("meter parse_watts", _check, "1" * 40_000, what="40,000 digits without a unit")
    assert spent < 0.5
