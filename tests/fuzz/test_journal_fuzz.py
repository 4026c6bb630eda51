"""Fuzz: the journal record reader (runner/protocol.parse_record, shared by runner and controller),
the controller's pull of a board's results.jsonl (farm/controller.pull_chunk) and the runner's own
restart reader (runner/journal.read_completed_keys). Properties: parse_record returns a record whose
fields have their annotated types (numbers finite) or raises ProtocolError; pull_chunk never raises
except DeviceFailed (a BenchError) and returns only valid records; 1 MB in <= 1 s of CPU."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import BenchError
from harness.farm.controller import DeviceFailed, pull_chunk
from harness.farm.transport import LocalTransport
from harness.runner.journal import drop_torn_tail, read_completed_keys
from harness.runner.protocol import Answer, Event, Measurement, ProtocolError, parse_record

from .adversarial import FUZZ_SETTINGS, MAX_SECONDS_PER_MB, mutated, shapes
from .conftest import timed

pytestmark = pytest.mark.fuzz

MEASUREMENT = Measurement(
    run_id="20261202-101010-abcdef", device="orin-nano", suite="image", workload="image", backend="llamacpp",
    variant="q4_k_m", repetition=3, warmup=False, status="ok",
    metrics={"ttft_ms": 812.5, "decode_tps": 14.2, "n_output_tokens": 32, "vision_encode_ms": None},
    itl_ms=[70.1, 69.8, 71.0], metric_sources={"peak_host_mb": "VmHWM"}, engine={"build": "b4567"},
    telemetry={"power_w": {"VDD_IN": 7.4}}, provenance={"engine": "llama-mtmd-cli"}, input_sha256="ab" * 32,
    output_text="A woman in uniform \u00e9 \u2588", warnings=["GPU at 85 C"], started_at="2026-12-02T10:10:10Z")
ANSWER = Answer(run_id="r", device="d", suite="s", task="easyvqa", backend="b", variant="v", request_id="q1",
                status="ok", answer="yes", wall_ms=12.0)
EVENT = Event(event="repetition_done", ts_ns=123456789, device="d", workload="w", variant="v", repetition=2,
              message="done", data={"ttft_ms": 80.0})
SAMPLES = [MEASUREMENT.to_json(), ANSWER.to_json(), EVENT.to_json(),
           MEASUREMENT.to_json().replace("\"ok\"", "\"error\"").replace("null", "\"engine crashed\"")]

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                        st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)


def _field_swaps() -> st.SearchStrategy:
    """A real record with one to four fields replaced by any JSON value (NaN included)."""
    base = json.loads(MEASUREMENT.to_json())

    def swap(pairs: list) -> str:
        data = dict(base)
        for key, value in pairs:
            data[key] = value
        return json.dumps(data)  # allow_nan: NaN and Infinity written as the bare words

    return st.lists(st.tuples(st.sampled_from(sorted(base)), json_value), min_size=1, max_size=4).map(swap)


def _valid(record: object) -> bool:
    """Every field has its annotated type: what parse_record promises the store."""
    if isinstance(record, Measurement):
        return (isinstance(record.warmup, bool) and record.status in ("ok", "error")
                and isinstance(record.repetition, int) and not isinstance(record.repetition, bool)
                and record.repetition >= 0
                and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
                        for v in record.metrics.values())
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in record.itl_ms)
                and all(isinstance(getattr(record, f), str) for f in ("run_id", "device", "workload", "variant")))
    if isinstance(record, Answer):
        return record.status in ("ok", "error") and (record.wall_ms is None or math.isfinite(record.wall_ms))
    return isinstance(record, Event) and isinstance(record.data, dict) and isinstance(record.ts_ns, int)


def _parse(line: str) -> object:
    try:
        record = parse_record(line)
    except ProtocolError as exc:
        return exc
    assert _valid(record), record
    return record


@FUZZ_SETTINGS
@given(line=st.one_of(mutated(SAMPLES), _field_swaps(), json_value.map(json.dumps)))
def test_parse_record_any_line(line: str) -> None:
    timed("parse_record", _parse, line)


def test_parse_record_issue_reproducers_and_shapes() -> None:
    data = json.loads(MEASUREMENT.to_json())
    cases = [("warmup {}", json.dumps(dict(data, warmup={}))), ("status 5", json.dumps(dict(data, status=5))),
             ("NaN metric", json.dumps(dict(data, metrics={"ttft_ms": float("nan")}))),
             ("Infinity itl", json.dumps(dict(data, itl_ms=[float("inf")]))),
             ("5000-digit repetition", MEASUREMENT.to_json().replace('"repetition": 3', '"repetition": ' + "9" * 5000)),
             ("nesting 100000", "[" * 100_000), ("1 MB output_text", json.dumps(dict(data, output_text="x" * 1_000_000)))]
    for what, line in cases + shapes(SAMPLES[0]):
        result, spent = timed("parse_record", _parse, line, what=what)
        assert spent <= MAX_SECONDS_PER_MB * max(1.0, len(line) / 1e6), (what, spent)
        if what in ("warmup {}", "status 5", "NaN metric", "Infinity itl", "5000-digit repetition", "nesting 100000"):
            assert isinstance(result, ProtocolError), what


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _pull(path: Path, data: bytes) -> object:
    path.write_bytes(data)
    rejected: List[str] = []
    try:
        chunk, records = pull_chunk(LocalTransport(), str(path), 0, rejected=rejected)
    except DeviceFailed as exc:
        assert isinstance(exc, BenchError)
        return exc
    assert data.startswith(chunk) and (not chunk or chunk.endswith(b"\n"))
    assert all(_valid(r) for r in records)
    # the runner's restart reader agrees on what is done (it redoes every other line), never raising
    assert read_completed_keys(str(path)) == {r.key for r in records if isinstance(r, Measurement)}
    return records, rejected


journal_bytes = st.lists(st.one_of(mutated(SAMPLES).map(lambda s: s.encode("utf-8", "surrogatepass")),
                                   _field_swaps().map(str.encode), st.binary(max_size=80)),
                         max_size=8).map(lambda lines: b"\n".join(lines))


@FUZZ_SETTINGS
@given(data=journal_bytes, torn=st.booleans())
def test_pull_and_restart_reader_any_journal(folder: Path, data: bytes, torn: bool) -> None:
    data = data + (b"" if torn else b"\n")
    timed("pull_chunk + read_completed_keys", _pull, folder / "results.jsonl", data, what="%d bytes" % len(data))
    cut = timed("drop_torn_tail", drop_torn_tail, str(folder / "results.jsonl"), what="%d bytes" % len(data))[0]
    assert (folder / "results.jsonl").read_bytes() == data[:len(data) - cut]
    assert cut == 0 or b"\n" not in data[len(data) - cut:]


def test_pull_one_megabyte_journals_in_linear_time(folder: Path) -> None:
    good = MEASUREMENT.to_json().encode() + b"\n"
    cases = [("1 MB of valid records", good * (1_000_000 // len(good))),
             ("1 MB of records with NaN", good.replace(b"812.5", b"NaN") * (1_000_000 // len(good))),
             ("1 MB of invalid UTF-8 lines", (b"\xff\xfe garbage\n") * 90_000),
             ("1 MB of one unterminated line", b"x" * 1_000_000),
             ("1 MB of [ on a line", b"[" * 1_000_000 + b"\n"),
             ("1 MB of blank lines", b"\n" * 1_000_000)]
    cases += [(what, text.encode("utf-8", "surrogatepass")) for what, text in shapes(SAMPLES[0])]
    for what, data in cases:
        result, spent = timed("pull_chunk + read_completed_keys", _pull, folder / "results.jsonl", data, what=what)
        assert spent <= MAX_SECONDS_PER_MB * max(1.0, len(data) / 1e6), (what, spent)
        if what == "1 MB of records with NaN":
            records, rejected = result
            assert records == [] and len(rejected) == 1_000_000 // len(good)
    os.remove(folder / "results.jsonl")
