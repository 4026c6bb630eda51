"""Fuzz: the INA3221 source (telemetry/jetson.py) over fake hwmon and JetPack 4 iio trees holding anything.

Property: building raises only SourceUnavailable/SourceConfigError; read() never raises; watts finite or None.
Issue reproducer: OverflowError on huge integers in inN_input/currN_input/in_powerN_input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.telemetry.base import SourceConfigError, SourceUnavailable
from harness.runner.telemetry.jetson import Ina3221Source

from .adversarial import DIGITS_400, FS_SETTINGS, NON_ASCII_DIGITS
from .conftest import timed
from .sysfs import FakeTree

pytestmark = pytest.mark.fuzz

_VALUE = st.one_of(st.from_regex(r"[0-9]{1,12}\n", fullmatch=True), st.binary(max_size=60),
                   st.sampled_from([DIGITS_400, NON_ASCII_DIGITS, "", "-1", "nan\n"]))
_LABEL = st.one_of(st.sampled_from([b"VDD_IN\n", b"VDD_SOC\n", b"NC\n", b"sum of shunt voltages\n", b""]),
                   st.binary(max_size=40))
HWMON = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
IIO = "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"


def _exercise(root: str) -> None:
    try:
        src = Ina3221Source({}, root=root)
    except (SourceUnavailable, SourceConfigError):
        return
    values = src.read()
    assert all(v is None or math.isfinite(v) for v in values.values()), values
    src.describe()


@FS_SETTINGS
@given(_LABEL, _LABEL, _VALUE, _VALUE, _VALUE, st.booleans())
def test_ina3221_trees(label1: bytes, label2: bytes, volt: object, curr: object, power: object, iio: bool) -> None:
    tree = FakeTree()
    try:
        if iio:
            files = {IIO + "/rail_name_0": label1, IIO + "/rail_name_1": label2, IIO + "/in_power0_input": power,
                     IIO + "/in_voltage1_input": volt, IIO + "/in_current1_input": curr}
        else:
            files = {HWMON + "/in1_label": label1, HWMON + "/in1_input": volt, HWMON + "/curr1_input": curr,
                     HWMON + "/in2_label": label2, HWMON + "/in2_input": power, HWMON + "/curr2_input": curr,
                     "/sys/bus/i2c/drivers/ina238/2-0044/hwmon/hwmon4/power1_input": power}  # Thor's VIN
        root = tree.write(files)
        timed("ina3221 (hwmon/iio files)", _exercise, root, what="fake %s tree" % ("iio" if iio else "hwmon"))
    finally:
        tree.close()


def test_issue_reproducer_huge_integers() -> None:
    tree = FakeTree()
    try:
        root = tree.write({HWMON + "/in1_label": "VDD_IN\n", HWMON + "/in1_input": DIGITS_400 + "\n",
                           HWMON + "/curr1_input": "1000\n"})
        src = Ina3221Source({}, root=root)
        assert src.read()["power_w:VDD_IN"] is None and any("unreadable" in w for w in src.drain_warnings())
    finally:
        tree.close()
