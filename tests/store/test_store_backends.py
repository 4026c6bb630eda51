"""The store's API on SQLite and on a real PostgreSQL server: the same behaviour, the same schema,
migrations from a version-1 SQLite file, and the planted-regression history on both."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.analysis.regress import regress
from harness.runner.protocol import Measurement
from harness.store import BaseStore, DeviceState, RunRecord, Store, StoreError, open_store
from harness.store.schema import MIGRATIONS, SCHEMA_VERSION, render_step

from ..regress.history_factory import Plant, build_history


def record(run: str, rep: int, status: str = "ok", device: str = "d", power_mode: str = "MAXN",
           runner: str = "r1", ttft: float = 10.0) -> Measurement:
    return Measurement(
        run_id=run, device=device, suite="s", workload="w", backend="reference", variant="v", repetition=rep,
        warmup=rep == 0, status=status, metrics={"ttft_ms": ttft + rep, "decode_tps": 5.0, "n_output_tokens": 4,
                                                 "peak_accel_mb": None},
        provenance={"runner_hash": runner, "model_sha256": "m1", "engine": "e 1.0"},
        telemetry={"before": {"power_mode": {"nvpmodel": power_mode}}}, started_at="2026-01-01T00:00:0%dZ" % rep)


def test_runs_measurements_and_history_tables(any_store: BaseStore) -> None:
    store = any_store
    assert store.schema_version() == SCHEMA_VERSION
    store.create_run(RunRecord("r1", "2026-01-01T00:00:00Z", "s", ["d"], "running", tags=["nightly"]))
    store.create_run(RunRecord("r2", "2026-01-02T00:00:00Z", "s", ["d"], "running"))
    assert store.add_measurements([record("r1", 0), record("r1", 1), record("r1", 2, status="error")]) == 3
    assert store.add_measurements([record("r1", 1), record("r1", 3)]) == 1  # a re-pull stores nothing twice
    assert [m["repetition"] for m in store.measurements("r1")] == [0, 1, 2, 3]
    assert store.count("r1") == 4
    assert store.get_run("latest").run_id == "r2"
    assert [r.run_id for r in store.list_runs()] == ["r2", "r1"]
    assert [r.run_id for r in store.list_runs(tag="nightly")] == ["r1"]
    assert store.set_tags("r2", ["release", "release"]).tags == ["release"]
    run = store.get_run("r1")
    assert (run.variants, run.runner_hashes, run.model_hashes) == (["d/v"], ["r1"], {"d/v": "m1"})
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.get_run("nope")

    # the values table holds measured, successful, numeric values only (warm-up 0 and failed 2 are out)
    values = store.history_values(metrics=["ttft_ms", "peak_accel_mb"])
    assert sorted((r[6], r[7]) for r in values.rows) == [(1, 11.0), (3, 13.0)]
    assert store.history_values(run_ids=[]).rows == []
    [ctx] = store.series_contexts(run_ids=["r1"])
    assert ctx.provenance["power_mode"] == {"nvpmodel": "MAXN"} and ctx.n_distinct == 1

    state = DeviceState("r1", "d", "running", remote_run_dir="/x")
    store.set_device_state(state)
    state.state = "finished"
    store.add_measurements([record("r1", 4)], results_offset=4096, device_state=state)
    [saved] = store.device_states("r1")
    assert (saved.state, saved.results_offset, saved.remote_run_dir) == ("finished", 4096, "/x")
    store.finish_run("r1", "finished")
    assert store.get_run("r1").finished_at


def test_both_backends_have_the_same_schema(tmp_path: Path, pg_url: str) -> None:
    lite = Store(tmp_path / "b.sqlite")
    pg = open_store(pg_url)
    try:
        tables = ("meta", "runs", "run_devices", "measurements", "provenances", "measurement_values")
        for table in tables:
            lite_cols = [r[1] for r in lite.query("PRAGMA table_info(%s)" % table)]
            pg_cols = [r[0] for r in pg.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t ORDER BY ordinal_position",
                {"t": table})]
            # PostgreSQL spells SQLite's implicit rowid as a real column of the same name
            assert [c for c in pg_cols if c != "rowid"] == lite_cols, table
    finally:
        lite.close()
        pg.close()


def test_version_1_sqlite_store_is_migrated_and_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for step in MIGRATIONS[1]:
        db.execute(render_step(step, "sqlite"))  # type: ignore[arg-type]
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO runs(run_id, created_at, suite, devices, status) VALUES ('r1', 't', 's', '[\"d\"]', 'x')")
    for rep in range(3):
        m = record("r1", rep)
        db.execute("INSERT INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (m.run_id, m.device, m.workload, m.variant, m.repetition, m.suite, m.backend, int(m.warmup),
                    m.status, m.started_at, m.to_json()))
    db.commit()
    db.close()

    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert sorted(r[7] for r in store.history_values(metrics=["ttft_ms"]).rows) == [11.0, 12.0]
    assert store.get_run("r1").runner_hashes == ["r1"]
    assert {c.provenance.get("engine") for c in store.series_contexts()} == {"e 1.0"}
    assert store.add_measurements([record("r1", 2)]) == 0  # still idempotent after the migration
    store.close()


def test_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "a.sqlite")), Store)
    assert isinstance(open_store("sqlite:///%s" % (tmp_path / "b.sqlite")), Store)
    with pytest.raises(StoreError, match="unknown store URL 'mysql://u:\\*\\*\\*@h/db'"):
        open_store("mysql://u:secret@h/db")
    # an open store (or a proxy over one) passed where a location belongs was once opened as a
    # SQLite file named after its repr, and the worker's accuracy scores went there
    with pytest.raises(StoreError, match="a path or a URL, not Store"):
        open_store(open_store(str(tmp_path / "c.sqlite")))  # type: ignore[arg-type]
    assert {p.name.split("-")[0] for p in tmp_path.iterdir()} == {"a.sqlite", "b.sqlite", "c.sqlite"}


def test_unreachable_postgres_says_where_without_the_password(pg_server: object) -> None:
    from tests.store.pg_server import _free_port

    with pytest.raises(StoreError) as info:
        open_store("postgresql://bench:hunter2@127.0.0.1:%d/none" % _free_port())
    assert "hunter2" not in str(info.value) and "bench:***@127.0.0.1" in str(info.value)


PLANTS = [
    Plant("orin-nano", "ttft_ms", 0.10, 27, workload="video-8f", provenance={"engine_versions": {"synthetic": "1.1"}}),
    Plant("agx-orin", "ttft_ms", 0.02, 20),
    Plant("rtx-pc", "ttft_ms", 0.30, 29, workload="image"),
]


def test_planted_history_gives_the_same_verdict_on_both_backends(any_store: BaseStore) -> None:
    build_history(any_store, nights=30, reps=5, plants=PLANTS, seed=3, batch_nights=5)
    report = regress(any_store, "last:7", metrics=["ttft_ms", "decode_tps", "e2e_ms"])
    # the planted TTFT step also lifts e2e on that board (TTFT is part of it); nothing else moves
    assert {(c.device, c.workload) for c in report.regressions} == {("orin-nano", "video-8f")}
    assert "ttft_ms" in {c.metric for c in report.regressions}
    assert report.exit_code == 1
    change = next(c for c in report.regressions if c.metric == "ttft_ms")
    assert [p.text() for p in change.provenance_changes] == ["engine_versions.synthetic: 1.0 -> 1.1"]
    assert {(c.device, c.metric) for c in report.unconfirmed} <= {("rtx-pc", "ttft_ms"), ("rtx-pc", "e2e_ms")}
    assert json.dumps(report.as_dict())  # serialisable on every backend


def test_run_liveness_on_both_backends(any_store: BaseStore) -> None:
    """Schema 3: a run's controller and heartbeat; a dead controller's running run reads abandoned."""
    import subprocess
    import sys
    import time

    from harness.store.liveness import STALE_AFTER_S, controller_identity

    store = any_store
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.create_run(RunRecord("gone", "2026-01-01T00:00:00Z", "s", ["d"], "running",
                               controller=controller_identity(dead.pid)))
    store.create_run(RunRecord("here", "2026-01-02T00:00:00Z", "s", ["d"], "running"))
    store.create_run(RunRecord("old", "2026-01-03T00:00:00Z", "s", ["d"], "running"))  # no controller known
    store.claim_run("here", controller_identity())
    assert store.get_run("gone").status == "abandoned" and store.stored_status("gone") == "running"
    assert store.get_run("here").status == "running" and store.get_run("old").status == "running"
    before = store.get_run("here").heartbeat_at
    time.sleep(0.05)
    store.heartbeat("here")
    assert store.get_run("here").heartbeat_at > before  # type: ignore[operator]
    assert store.get_run("here").controller["pid"] == controller_identity()["pid"]
    # a live pid whose heartbeat stopped long ago (a hung controller, or one on another host)
    store.create_run(RunRecord("stale", "2026-01-04T00:00:00Z", "s", ["d"], "running",
                               controller=dict(controller_identity(), host="elsewhere"),
                               heartbeat_at=time.time() - STALE_AFTER_S - 5))
    assert store.get_run("stale").status == "abandoned"
    store.finish_run("here", "interrupted")
    store.heartbeat("here")  # no effect once it is not running
    assert {r.run_id: r.status for r in store.list_runs()} == {
        "gone": "abandoned", "here": "interrupted", "old": "running", "stale": "abandoned"}
