"""Fuzz: the runner's JSON object file reader (runner/backends/base.py read_json_file: model markers,
quantization.json). Property: None, the object, or {"error": why} - never an exception; deep nesting and
huge files refused at once."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.runner.backends.base import read_json_file

from .adversarial import FS_SETTINGS
from .conftest import timed
from .sysfs import FakeTree

pytestmark = pytest.mark.fuzz

MARKER = json.dumps({"kind": "random-weights", "model": "qwen2_5_vl", "params": 1234, "nested": {"a": [1, 2.5]}})


def _read(tree: FakeTree, data: bytes) -> object:
    tree.write({"/m/edge_vlm_bench_model.json": data})
    result = read_json_file(os.path.join(tree.root, "m/edge_vlm_bench_model.json"))
    assert result is None or isinstance(result, dict)
    return result


@FS_SETTINGS
@given(st.one_of(st.binary(max_size=300), st.builds(lambda cut, extra: MARKER.encode()[:cut] + extra,
                                                    st.integers(0, len(MARKER)), st.binary(max_size=20))))
def test_any_bytes(data: bytes) -> None:
    tree = FakeTree()
    try:
        timed("read_json_file (markers)", _read, tree, data, what="%d bytes" % len(data))
    finally:
        tree.close()


def test_hostile_shapes() -> None:
    tree = FakeTree()
    try:
        for what, data, error in [("1 MB of '['", b"[" * 1_000_000, "nested too deeply"),
                                  ("deep object", b'{"a":' * 200_000 + b"1" + b"}" * 200_000, "nested too deeply"),
                                  ("invalid UTF-8", b'{"a": "\xff\xfe"}', "unreadable"),
                                  ("17 MB", b" " * (17 << 20), "larger than")]:
            result, spent = timed("read_json_file (markers)", _read, tree, data, what=what)
            assert error in result["error"] and spent <= 1.0, (what, result, spent)
        assert timed("read_json_file (markers)", _read, tree, MARKER.encode())[0]["params"] == 1234
    finally:
        tree.close()
