"""The procurement report over the emulated five-board farm: a real `bench run` over sshd boards
(reference backend, time-scaled, an emulated power meter per board), then `render_compare`."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest
import yaml

from harness.config.devices import load_devices
from harness.farm.sshd_farm import FarmInfo, farm_down, farm_up
from harness.report.compare import render_compare
from harness.store import Store

from ..conftest import REPO, bench_env
from ..farm.conftest import require_sshd

BASE_IP = "127.0.0.60"  # away from the farm tests' 127.0.0.20 and a user's 127.0.0.2
SUITE = """\
name: procure
prompt: What is in this picture?
workloads:
  - {name: image, kind: image, source: media/grace_hopper.jpg, size: [448, 448]}
  - {name: video-8f, kind: video, source: media/grace_hopper.jpg, size: [308, 308], frames: 8}
generation: {output_tokens: 8, warmup: 1, repetitions: 3}
"""
# An emulated meter per board: a fixed wattage (a test figure, not a measurement of the board)
METER_W: Dict[str, float] = {"ax650n": 7.0, "orin-nano": 15.0, "agx-orin": 40.0, "upsquared-n": 12.0, "rtx-pc": 350.0}
TIME_SCALE = 0.05


@pytest.fixture(scope="module")
def farm_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, object]]:
    require_sshd()
    project = tmp_path_factory.mktemp("procure")
    shutil.copytree(REPO / "suites", project / "suites")
    (project / "suites" / "procure.yaml").write_text(SUITE)
    info: FarmInfo = farm_up(5, project / "farm", base_ip=BASE_IP, python=sys.executable)
    try:
        data = yaml.safe_load(Path(info.devices_yaml).read_text())
        for device in data["devices"]:
            device["backend_options"].update({"time_scale": TIME_SCALE, "busy": False})
            device["idle_s"] = 0.2
            device["timeouts"] = {"connect_s": 5.0, "command_s": 30.0, "run_s": 120.0}
            watts = METER_W[device["type"]]
            device["telemetry"] = [{"source": "meter_command", "command": "echo %s W" % watts, "interval_s": 0.02,
                                    "covers": "emulated meter: a fixed %s W" % watts}]
        devices_file = project / "farm-devices.yaml"
        devices_file.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "--devices-file", str(devices_file), "run",
                               "--suite", "procure", "--devices", "all", "--tag", "procurement"],
                              cwd=project, capture_output=True, text=True, env=bench_env(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        farm_down(project / "farm")
    store = Store(project / "results" / "bench.sqlite")
    yield {"project": project, "store": store, "devices_file": devices_file,
           "run_id": store.latest_run().run_id}  # type: ignore[union-attr]
    store.close()


def test_compare_ranks_the_five_emulated_boards(farm_run: Dict[str, object], tmp_path: Path) -> None:
    store: Store = farm_run["store"]  # type: ignore[assignment]
    run_id = str(farm_run["run_id"])
    inventory = load_devices(Path(str(farm_run["devices_file"])))
    reference = load_devices(REPO / "devices.yaml")  # prices and missing bandwidths by board type
    path = render_compare(store, [run_id], inventory, tmp_path, reference_inventory=reference)
    html = path.read_text()
    assert "EMULATED RESULTS, NOT HARDWARE MEASUREMENTS" in html
    assert "Summary for buyers" in html and "data:image/png;base64," in html
    assert "decode tok/s per W" in html and "decode tok/s per $1000" in html and "% of bandwidth ceiling" in html
    assert not re.search(r"https?://", html)  # self-contained

    rows = list(csv.DictReader((tmp_path / "compare.csv").open()))
    assert {r["workload"] for r in rows} == {"image", "video-8f"}
    video = {r["device"]: r for r in rows if r["workload"] == "video-8f"}
    assert set(video) == set(METER_W)
    for device, row in video.items():
        assert row["emulated"] == "True" and float(row["time_scale"]) == TIME_SCALE
        assert float(row["perf_per_w"]) > 0 and float(row["perf_per_kusd"]) > 0
        assert 0 < float(row["roofline_pct"]) < 150, (device, row["roofline_pct"])
        # the emulated meter's fixed wattage is what the report divides by
        assert float(row["avg_power_w"]) == pytest.approx(METER_W[device], rel=0.01)
    # decode rates come back to board time (profile figures: rtx 215.5 > agx 42.5 > orin-nano 14.1 > ax650n 6.1)
    tps = {d: float(r["decode_tps"]) for d, r in video.items()}
    assert tps["rtx-pc"] > tps["agx-orin"] > tps["orin-nano"] > tps["ax650n"]
    assert tps["orin-nano"] == pytest.approx(14.1, rel=0.25)
    # ranking is by decode tok/s; the AX650N's int8 weights and 34.1 GB/s come from devices.yaml by type
    assert rows[0]["device"] == "rtx-pc"
    assert "assumed from" in video["ax650n"]["bandwidth_source"] and float(video["ax650n"]["bandwidth_gbps"]) == 34.1
    assert "8-bit" in video["ax650n"]["weight_note"] and "4-bit" in video["agx-orin"]["weight_note"]
    assert "$260" in html  # the farm's devices file carries the boards' prices
    assert any(r["pareto"] == "True" for r in video.values())


def test_compare_refuses_unknown_runs(farm_run: Dict[str, object]) -> None:
    from harness.analysis.procurement import CompareError, compare_boards

    with pytest.raises(CompareError, match="no run 'nope'"):
        compare_boards(farm_run["store"], ["nope"], None)  # type: ignore[arg-type]
    with pytest.raises(CompareError, match="at least one run"):
        compare_boards(farm_run["store"], [], None)  # type: ignore[arg-type]


def test_compare_shows_each_deployed_variants_stored_accuracy(farm_run: Dict[str, object], tmp_path: Path) -> None:
    from harness.eval.store import AccuracyStore

    store: Store = farm_run["store"]  # type: ignore[assignment]
    run_id = str(farm_run["run_id"])
    variants = {(m["device"], m["variant"]) for m in store.measurements(run_id)}
    # accuracy results as `bench run --suite vqa-quant` stores them; the values are test inputs
    given = {"ax650n": 0.9, "orin-nano": 0.8, "agx-orin": 0.85, "upsquared-n": 0.7}  # rtx-pc: none stored
    accuracy = AccuracyStore.in_results(tmp_path / "results")
    for device, variant in sorted(variants):
        if device in given:
            accuracy.put_result({"run_id": run_id, "device": device, "variant": variant, "task": "easy_vqa",
                                 "metric": "exact_match", "n": 500, "accuracy": given[device]})
    accuracy.put_result({"run_id": "another-run", "device": "rtx-pc", "variant": "x", "task": "easy_vqa",
                         "metric": "exact_match", "n": 500, "accuracy": 0.99})  # not among the compared runs
    by_variant = accuracy.variant_accuracy([run_id])
    accuracy.close()
    inventory = load_devices(Path(str(farm_run["devices_file"])))
    reference = load_devices(REPO / "devices.yaml")
    path = render_compare(store, [run_id], inventory, tmp_path, reference_inventory=reference, accuracy=by_variant)
    rows = [r for r in csv.DictReader((tmp_path / "compare.csv").open()) if r["workload"] == "image"]
    got = {r["device"]: r["accuracy"] for r in rows}
    assert {d: float(v) for d, v in got.items() if v} == given and got["rtx-pc"] == ""
    html = path.read_text()
    assert "90.0%" in html and "not measured" in html and "accuracy 90.0% on 500 questions of easy_vqa" in html
