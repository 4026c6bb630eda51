"""The pulled results journal is checked against the board's own sha256, and repaired."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harness.config.devices import load_devices
from harness.config.suites import find_suite
from harness.farm.controller import DeviceJob, run_plans
from harness.farm.deploy import build_runner
from harness.farm.transport import LocalTransport
from harness.plan import Paths, plan_run
from harness.store.sqlite import RunRecord, Store

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


def test_pulled_journal_is_verified_and_repaired(project: Path) -> None:
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
    mirror = paths.results_dir / "pulled"
    [outcome] = run_plans([plan], store, build_runner(), lambda d: LocalTransport(), lambda p: None,
                          mirror_dir=mirror)
    assert outcome.state == "finished" and outcome.stored == 3
    assert outcome.integrity.startswith("sha256 ") and outcome.integrity.endswith(" verified")

    # lose the last record on the controller side (store and mirror), as a torn pull would
    db = sqlite3.connect(paths.store_path)
    db.execute("DELETE FROM measurements WHERE repetition = 2")
    db.commit()
    db.close()
    mirror_file = mirror / plan.spec.run_id / "emu.results.jsonl"
    lines = mirror_file.read_bytes().splitlines(keepends=True)
    mirror_file.write_bytes(b"".join(lines[:-1]))
    assert store.count(plan.spec.run_id) == 2

    job = DeviceJob(plan, store, build_runner(), lambda d: LocalTransport(), lambda p: None, mirror_dir=mirror)
    job._locate(LocalTransport())
    job._verify(LocalTransport())
    assert "re-pulled, 1 missing record(s) stored" in job.integrity
    assert sorted(m["repetition"] for m in store.measurements(plan.spec.run_id)) == [0, 1, 2]
