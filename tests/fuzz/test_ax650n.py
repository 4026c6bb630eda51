"""Fuzz: the AX650N readers (telemetry/ax650n.py): mem_cmm_info summary, NPU top, and the source over a fake
/proc/ax_proc tree holding any bytes.

Property: no exception (the issue: the source died on invalid UTF-8 in mem_cmm_info, only OSError was caught),
figures finite or None, linear time. Seeds: the real summary line (FACTS.md) and NPU top formats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.telemetry.ax650n import Ax650nSource, parse_cmm_info, parse_npu_top, parse_npu_top_cores
from harness.runner.telemetry.base import SourceUnavailable

from .adversarial import FS_SETTINGS, FUZZ_SETTINGS, check_linear, mutated
from .conftest import timed
from .sysfs import FakeTree

pytestmark = pytest.mark.fuzz

CMM = ("---CMM_USE_INFO:\n total size=3145728KB(3072MB),used=18876KB(18MB + 444KB),remain=3126852KB(3053MB + 580KB),"
       "partition_number=1,block_number=23\n |-Block: phys(0x100000000, 0x10001FFFF), cache =non-cacheable, "
       "size=128KB(0MB + 128KB), name=\"total size=1KB,used=1KB,remain=1KB\"\n")
NPU = "core:vnpu_stdd_1\n  utilization:37%\ncore:vnpu_stdd_2\n  utilization:12%\n"


def _check_cmm(text: str) -> None:
    info = parse_cmm_info(text)
    assert all(v is None or math.isfinite(v) for v in (info.total_mb, info.used_mb, info.remain_mb))


def _check_npu(text: str) -> None:
    util = parse_npu_top(text)
    assert util is None or math.isfinite(util)
    assert all(math.isfinite(v) for v in parse_npu_top_cores(text).values())


@FUZZ_SETTINGS
@given(mutated([CMM, NPU, "nputop info is empty!\n"]))
def test_parsers_never_raise(text: str) -> None:
    timed("ax650n mem_cmm_info", _check_cmm, text)
    timed("ax650n npu top", _check_npu, text)


@FS_SETTINGS
@given(st.binary(max_size=400), st.binary(max_size=100), st.binary(max_size=30))
def test_source_over_any_bytes(cmm: bytes, npu: bytes, temp: bytes) -> None:
    tree = FakeTree()
    try:
        root = tree.write({"/proc/ax_proc/mem_cmm_info": CMM.encode() + cmm, "/proc/ax_proc/npu/top": npu,
                           "/sys/class/thermal/thermal_zone0/temp": temp})

        def run() -> None:
            try:
                src = Ax650nSource({}, root=root)
            except SourceUnavailable:
                return
            values = src.read()
            assert all(v is None or math.isfinite(v) for v in values.values()), values

        timed("ax650n source (proc files)", run, what="fake /proc/ax_proc tree")
    finally:
        tree.close()


def test_issue_reproducer_invalid_utf8_in_mem_cmm_info() -> None:
    tree = FakeTree()
    try:
        root = tree.write({"/proc/ax_proc/mem_cmm_info": CMM.encode() + b"name=\"\xff\xfe\xc3\x28\"\n",
                           "/sys/class/thermal/thermal_zone0/temp": b"\xff\n"})
        src = Ax650nSource({"npu": False}, root=root)
        values = src.read()
        assert values["mem_mb:cmm_used"] == pytest.approx(18876 / 1024) and values["temp_c:soc"] is None
    finally:
        tree.close()


@pytest.mark.parametrize("reader,fn,sample", [("ax650n mem_cmm_info", _check_cmm, CMM.splitlines()[1]),
                                              ("ax650n npu top", _check_npu, NPU)])
def test_linear_time(reader: str, fn, sample: str) -> None:
    check_linear(fn, sample, lambda text, name: timed(reader, fn, text, what=name)[1])
    # the CMM summary with many "used=" but no "remain=" on one 40 kB line (a backtracking trap)
    _, spent = timed(reader, fn, " total size=1KB" + ",used=1KB" * 5000, what="summary with 5000 used= fields")
    assert spent < 0.5
