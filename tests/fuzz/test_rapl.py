"""Fuzz: the RAPL source (telemetry/rapl.py) over a fake powercap tree whose files hold anything.

Property: building the source raises only SourceUnavailable/SourceConfigError; read() never raises and every
energy is finite or None. Issue reproducer: OverflowError on a 400-digit energy_uj."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.telemetry.base import SourceConfigError, SourceUnavailable
from harness.runner.telemetry.rapl import RaplSource

from .adversarial import DIGITS_400, FS_SETTINGS, NON_ASCII_DIGITS
from .conftest import timed
from .sysfs import FakeTree

pytestmark = pytest.mark.fuzz

_VALUE = st.one_of(st.from_regex(r"[0-9]{1,20}\n", fullmatch=True), st.binary(max_size=80),
                   st.sampled_from([DIGITS_400, NON_ASCII_DIGITS, "", "-5", "1e400", "\xff\xfe"]))


def _exercise(tree: FakeTree, files: dict) -> None:
    root = tree.write(files)
    try:
        src = RaplSource({}, root=root)
    except (SourceUnavailable, SourceConfigError):
        return
    for _ in range(2):
        values = src.read()
        assert all(v is None or math.isfinite(v) for v in values.values()), values
    src.describe()


@FS_SETTINGS
@given(_VALUE, _VALUE, _VALUE, _VALUE, st.binary(max_size=40))
def test_rapl_tree(first: object, second: object, max_range: object, sub: object, name: bytes) -> None:
    tree = FakeTree()
    try:
        base = "/sys/class/powercap/intel-rapl:0"
        files = {base + "/name": b"package-0\n", base + "/energy_uj": first, base + "/max_energy_range_uj": max_range,
                 base + ":0/name": name, base + ":0/energy_uj": sub}
        timed("rapl (energy_uj files)", _exercise, tree, files, what="fake powercap tree")
        files[base + "/energy_uj"] = second
        timed("rapl (energy_uj files)", _exercise, tree, files, what="fake powercap tree")
    finally:
        tree.close()


def test_issue_reproducer_huge_energy() -> None:
    tree = FakeTree()
    try:
        base = "/sys/class/powercap/intel-rapl:0"
        root = tree.write({base + "/name": "package-0\n", base + "/energy_uj": "100\n",
                           base + "/max_energy_range_uj": DIGITS_400 + "\n"})
        src = RaplSource({}, root=root)
        assert src.zones[0].max_range_uj is None  # refused, not an OverflowError
        tree.write({base + "/energy_uj": DIGITS_400 + "\n"})
        assert src.read()["energy_j"] is None and "unreadable" in src.drain_warnings()[0]
    finally:
        tree.close()
