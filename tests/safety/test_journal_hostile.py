"""Records read from a board's journal are checked before they are stored.

Reproducers from issue 13: invalid UTF-8, NaN metrics, ``"warmup": {}`` and ``"status": 5`` were
tracebacks or stored as is; pulled records were stored without checking that run_id, device,
variant and workload match the plan; a corrupt line after an interrupted run made ``--resume``
trust a stale status.json and store nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import List

import pytest

from harness.config.devices import load_devices
from harness.config.suites import find_suite
from harness.farm import controller
from harness.farm.controller import DeviceFailed, DeviceJob, confined, pull_chunk, run_plans
from harness.farm.deploy import build_runner
from harness.farm.transport import LocalTransport
from harness.plan import Paths, plan_run
from harness.runner.journal import RESULTS, STATUS, drop_torn_tail, read_completed_keys
from harness.runner.protocol import Measurement, ProtocolError, parse_record
from harness.store.sqlite import DeviceState, RunRecord, Store

DEVICES = """\
devices:
  - name: emu
    type: local
    transport: local
    workdir: work
    idle_s: 0
    backend: reference
    backend_options: {profile: rtx, time_scale: 0.1}
    models: [{variant: emulated, path: emulated}]
"""


def record(**changes: object) -> Measurement:
    fields = dict(run_id="r1", device="emu", suite="tiny", workload="image", backend="reference",
                  variant="emulated", repetition=0, warmup=False, status="ok",
                  metrics={"ttft_ms": 12.5, "n_output_tokens": 4, "vision_encode_ms": None}, itl_ms=[1.0, 2])
    fields.update(changes)
    return Measurement(**fields)


def line_with(**changes: object) -> str:
    data = json.loads(record().to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize("changes, why", [
    ({"warmup": {}}, "field 'warmup' must be bool"),
    ({"status": 5}, "field 'status' must be str"),
    ({"status": "fine"}, "'status' must be one of ('ok', 'error')"),
    ({"repetition": "1"}, "field 'repetition' must be int"),
    ({"repetition": -3}, "'repetition' must be >= 0"),
    ({"metrics": {"ttft_ms": "12"}}, "field 'metrics' must be Dict[str, Optional[float]]"),
    ({"metrics": {"ttft_ms": True}}, "field 'metrics'"),
    ({"itl_ms": [1, "2"]}, "field 'itl_ms' must be List[float]"),
    ({"warnings": [1]}, "field 'warnings' must be List[str]"),
    ({"engine": []}, "field 'engine' must be Dict[str, Any]"),
])
def test_record_fields_of_the_wrong_type_are_refused(changes: dict, why: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_record(line_with(**changes))
    assert why in str(caught.value)


def test_nan_infinity_and_deep_nesting_are_refused() -> None:
    good = record().to_json()
    assert parse_record(good) == record()
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ProtocolError, match="%s is not a number a record may carry" % constant):
            parse_record(good.replace('"ttft_ms": 12.5', '"ttft_ms": %s' % constant))
    with pytest.raises(ProtocolError, match="not a JSON line"):
        parse_record("[" * 100_000)
    with pytest.raises(ProtocolError, match="not a JSON line"):
        parse_record('{"record": "measurement", "repetition": %s}' % ("9" * 5000))
    event = '{"record": "event", "event": "load", "ts_ns": 1, "data": []}'
    with pytest.raises(ProtocolError, match="event field 'data'"):
        parse_record(event)


def test_pull_rejects_bad_lines_and_keeps_the_good_ones(tmp_path: Path) -> None:
    journal = tmp_path / RESULTS
    good = [record(repetition=i).to_json().encode() for i in range(3)]
    journal.write_bytes(b"\n".join([good[0], b'{"record": "measurement", \xff\xfe}', good[1],
                                    line_with(repetition=5, warmup={}).encode(), good[2]]) + b"\n")
    rejected: List[str] = []
    chunk, records = pull_chunk(LocalTransport(), str(journal), 0, rejected=rejected)
    assert [r.repetition for r in records] == [0, 1, 2] and len(chunk) == journal.stat().st_size
    offset = len(good[0]) + 1
    assert rejected[0] == "%s byte %d: not UTF-8 (byte 0xff)" % (journal, offset)
    assert "field 'warmup' must be bool" in rejected[1]
    # without a list to note them in, the first bad line stops the pull with its place
    with pytest.raises(DeviceFailed, match="byte %d: not UTF-8" % offset):
        pull_chunk(LocalTransport(), str(journal), 0)
    # a runner restarted on this journal skips the bad lines and redoes what they held
    assert {k[-1] for k in read_completed_keys(str(journal))} == {0, 1, 2}


def test_pull_reads_at_most_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = tmp_path / RESULTS
    journal.write_bytes(b"x" * 5000)
    with pytest.raises(DeviceFailed, match="a line of more than 4096 bytes at byte 0 is no runner record"):
        pull_chunk(LocalTransport(), str(journal), 0, max_bytes=4096)
    lines = b"".join(record(repetition=i).to_json().encode() + b"\n" for i in range(40))
    journal.write_bytes(lines)
    chunk, records = pull_chunk(LocalTransport(), str(journal), 0, max_bytes=4096)
    assert 0 < len(chunk) <= 4096 and len(records) < 40


def test_torn_tail_is_dropped_before_the_runner_appends(tmp_path: Path) -> None:
    journal = tmp_path / RESULTS
    journal.write_bytes(record().to_json().encode() + b"\n" + b'{"record": "measu')
    assert drop_torn_tail(str(journal)) == len(b'{"record": "measu')
    assert journal.read_bytes().endswith(b"}\n")
    assert drop_torn_tail(str(journal)) == 0


def test_paths_outside_the_workdir_are_refused() -> None:
    assert confined("/w/runs", "r1", "emu") == "/w/runs/r1/emu"
    assert confined("/w/runs", "/w/runs/r1/emu") == "/w/runs/r1/emu"
    for parts in (("..", "x"), ("r1/../../etc",), ("/etc/passwd",), ("/w/runsX",)):
        with pytest.raises(DeviceFailed, match="outside /w/runs"):
            confined("/w/runs", *parts)


# -- a real run on the reference backend, on a journal left by an interrupted one ----------------

def _plan(project: Path):
    (project / "devices.yaml").write_text(DEVICES)
    (project / "suites" / "tiny.yaml").write_text(
        (project / "suites" / "image.yaml").read_text().replace("name: image\n", "name: tiny\n", 1)
        .replace("output_tokens: 32", "output_tokens: 4").replace("repetitions: 5", "repetitions: 2"))
    paths = Paths(project / "devices.yaml", project / "suites", project / "results", project / "reports")
    inventory = load_devices(paths.devices_file)
    [plan] = plan_run(find_suite("tiny", paths.suites_dir), inventory.select("emu"), inventory, paths,
                      notify=lambda m: None)
    store = Store(paths.store_path)
    store.create_run(RunRecord(plan.spec.run_id, "", "tiny", ["emu"], "running"))
    return plan, store, paths


def _interrupted(plan, store, journal: bytes, status: dict) -> Path:
    """A board run dir as an interrupted run leaves it: the runner dead, its last status stale."""
    job = DeviceJob(plan, store, build_runner(), lambda d: LocalTransport(), lambda p: None)
    job._locate(LocalTransport())
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / RESULTS).write_bytes(journal)
    (run_dir / STATUS).write_text(json.dumps(status))
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.set_device_state(DeviceState(plan.spec.run_id, "emu", "running", remote_run_dir=str(run_dir),
                                       info={"pid": dead.pid}))
    return run_dir


def _line(plan, repetition: int) -> bytes:
    spec = plan.spec
    return record(run_id=spec.run_id, suite=spec.suite, workload=spec.workloads[0].name,
                  repetition=repetition, warmup=repetition == 0).to_json().encode() + b"\n"


def test_resume_after_a_torn_line_and_stale_status_stores_everything(project: Path) -> None:
    plan, store, _ = _plan(project)
    _interrupted(plan, store, _line(plan, 0) + b'{"record": "measurement", "run_id": "' ,
                 {"state": "failed", "error": "killed by the interrupted controller", "heartbeat": 9})
    [outcome] = run_plans([plan], store, build_runner(), lambda d: LocalTransport(), lambda p: None,
                          resume=True, poll_s=0.1)
    assert outcome.state == "finished", outcome.error
    # repetition 0 from the old journal, 1 and 2 redone by the restarted runner
    assert sorted(m["repetition"] for m in store.measurements(plan.spec.run_id)) == [0, 1, 2]


def test_resume_after_a_corrupt_line_stores_the_rest_and_names_the_line(project: Path) -> None:
    plan, store, _ = _plan(project)
    corrupt = b'\x00\x00\x00\x00garbage after a power cut\n'
    foreign = record(run_id="someone-else", workload=plan.spec.workloads[0].name).to_json().encode() + b"\n"
    nan = _line(plan, 2).replace(b'"ttft_ms": 12.5', b'"ttft_ms": NaN')
    run_dir = _interrupted(plan, store, _line(plan, 0) + corrupt + foreign + nan,
                           {"state": "running", "heartbeat": 3})
    [outcome] = run_plans([plan], store, build_runner(), lambda d: LocalTransport(), lambda p: None,
                          resume=True, poll_s=0.1)
    stored = store.measurements(plan.spec.run_id)
    assert sorted(m["repetition"] for m in stored) == [0, 1, 2]  # the NaN repetition redone, valid
    assert all(m["run_id"] == plan.spec.run_id for m in stored)
    assert all(m["metrics"].get("ttft_ms") is None or m["metrics"]["ttft_ms"] == m["metrics"]["ttft_ms"]
               for m in stored)
    assert outcome.state == "failed"
    offset = len(_line(plan, 0))
    assert "3 line(s) of the board's journal rejected, not stored" in outcome.error
    assert "%s byte %d: not a JSON line" % (run_dir / RESULTS, offset) in outcome.error


def test_records_of_another_plan_are_rejected(project: Path) -> None:
    plan, store, _ = _plan(project)
    job = DeviceJob(plan, store, build_runner(), lambda d: LocalTransport(), lambda p: None)
    workload = plan.spec.workloads[0].name
    ok = dict(run_id=plan.spec.run_id, suite="tiny", workload=workload)
    assert job._reject_foreign(record(**ok)) is None
    assert "run_id 'other' is not this plan's" in job._reject_foreign(record(**dict(ok, run_id="other")))
    assert "device 'nano'" in job._reject_foreign(record(**dict(ok, device="nano")))
    assert "variant 'int4' is not in this plan" in job._reject_foreign(record(**dict(ok, variant="int4")))
    assert "workload 'video' is not in this plan" in job._reject_foreign(record(**dict(ok, workload="video")))
    assert "suite 'x'" in job._reject_foreign(record(**dict(ok, suite="x")))
    from harness.runner.protocol import Answer

    answer = Answer(run_id=plan.spec.run_id, device="emu", suite="tiny", task="t", backend="reference",
                    variant="emulated", request_id="q1", status="ok")
    assert job._reject_foreign(answer) is None
    assert "run_id 'x'" in job._reject_foreign(Answer(**dict(answer.__dict__, run_id="x")))
    assert "variant 'v9'" in job._reject_foreign(Answer(**dict(answer.__dict__, variant="v9")))
    assert controller.MAX_PULL_BYTES >= 1 << 20


@pytest.mark.parametrize("text", ["[" * 100_000, '{"lease_id": 1, "user": "u", "host": "h", "pid": 1, "run_id": "r", '
                                  '"acquired_at": %s, "expires_at": 1}' % ("9" * 400), "\x00\xff", "[]"])
def test_a_garbage_lease_file_reads_as_no_lease(text: str) -> None:
    from harness.farm.lease import LeaseInfo

    assert LeaseInfo.from_json(text) is None
