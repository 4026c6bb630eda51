"""The contract's validation, the PPM reader, and the store's idempotence and versioning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness.runner.protocol import Measurement, ProtocolError, RunSpec, parse_record
from harness.runner.workloads import Frame, decode_ppm, encode_ppm, input_digest
from harness.store.sqlite import RunRecord, Store, StoreError


def test_ppm_header_comments_and_whitespace_follow_netpbm_rules() -> None:
    raster = bytes(range(2 * 2 * 3))
    data = b"P6 # a comment\n# another\n2\t2\r\n255\n" + raster
    frame = decode_ppm(data)
    assert (frame.width, frame.height, frame.rgb) == (2, 2, raster)
    assert decode_ppm(encode_ppm(frame)) == frame


@pytest.mark.parametrize("data, message", [
    (b"P3\n2 2\n255\n", "not a binary PPM"),
    (b"P6\n2 2\n65535\n" + bytes(24), "need 8-bit RGB"),
    (b"P6\n2 2\n255\n" + bytes(5), "truncated PPM raster (5 of 12 bytes)"),
    (b"P6\n2 x\n255\n", "bad PPM header token"),
])
def test_ppm_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_ppm(data)


def test_input_digest_changes_with_pixels_and_prompt() -> None:
    a = Frame(1, 1, b"\x00\x00\x00")
    b = Frame(1, 1, b"\x00\x00\x01")
    assert input_digest([a], "p") != input_digest([b], "p") != input_digest([b], "q")


def test_spec_version_mismatch_says_redeploy() -> None:
    with pytest.raises(ProtocolError, match="redeploy the runner"):
        RunSpec.from_json('{"protocol_version": 99}')
    with pytest.raises(ProtocolError, match="missing field 'run_id'"):
        RunSpec.from_json('{"protocol_version": 1}')


def make(rep: int, status: str = "ok") -> Measurement:
    return Measurement(run_id="r", device="d", suite="s", workload="w", backend="reference",
                       variant="v", repetition=rep, warmup=rep == 0, status=status,
                       metrics={"ttft_ms": 10.0 + rep}, started_at="2026-01-01T00:00:00Z")


def test_measurement_roundtrip_and_unknown_fields() -> None:
    m = make(1)
    assert parse_record(m.to_json()) == m
    with pytest.raises(ProtocolError, match="unknown fields"):
        parse_record(m.to_json()[:-1] + ', "surprise": 1}')


def test_store_ignores_duplicates_and_refuses_newer_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    store.create_run(RunRecord("r", "2026-01-01T00:00:00Z", "s", ["d"], "running"))
    assert store.add_measurements([make(0), make(1)]) == 2
    assert store.add_measurements([make(1), make(2)]) == 1  # a re-pull stores nothing twice
    assert [m["repetition"] for m in store.measurements("r")] == [0, 1, 2]
    assert store.get_run("latest").run_id == "r"
    store.close()
    db = sqlite3.connect(tmp_path / "b.sqlite")
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path / "b.sqlite")
