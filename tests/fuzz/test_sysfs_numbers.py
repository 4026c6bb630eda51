"""Fuzz: the sysfs number reader every sysfs source uses (telemetry/base.py read_text + parse_number).

Property: ValueError or a finite float - never OverflowError (the issue: RAPL energy_uj and ina3221 with huge
integers), never UnicodeDecodeError (invalid UTF-8 is replaced, then refused as a number)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.telemetry.base import parse_number, read_text

from .adversarial import DIGITS_400, FS_SETTINGS, FUZZ_SETTINGS, NON_ASCII_DIGITS, check_linear
from .conftest import timed
from .sysfs import FakeTree

pytestmark = pytest.mark.fuzz


def _number_or_value_error(text: str) -> None:
    try:
        value = parse_number(text)
    except ValueError:
        return
    assert math.isfinite(value)


@FUZZ_SETTINGS
@given(st.one_of(st.text(max_size=60), st.from_regex(r"-?[0-9]{1,500}(\.[0-9]{0,20})?(e-?[0-9]{1,4})?\n?"),
                 st.sampled_from(["48843\n", "2133000000", "3.5", "nan", "inf", "-0", DIGITS_400, "1e400"])))
def test_parse_number(text: str) -> None:
    timed("parse_number (sysfs)", _number_or_value_error, text)


@FS_SETTINGS
@given(st.binary(max_size=300))
def test_read_text_of_any_bytes(data: bytes) -> None:
    tree = FakeTree()
    try:
        tree.write({"/sys/x/energy_uj": data})
        text = read_text(tree.root + "/sys/x/energy_uj")
        timed("parse_number (sysfs)", _number_or_value_error, text)
    finally:
        tree.close()


def test_issue_reproducers_and_shapes() -> None:
    for text in (DIGITS_400, "-" + DIGITS_400, "9" * 5000, NON_ASCII_DIGITS, "\u0663\u0663"):
        with pytest.raises(ValueError):
            parse_number(text)
    assert parse_number("123456789012\n") == 123456789012.0
    check_linear(_number_or_value_error, "48843", lambda text, name: timed("parse_number (sysfs)",
                                                                            _number_or_value_error, text, what=name)[1])
