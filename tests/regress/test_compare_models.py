"""`bench report --compare` never ranks a board against a board that ran a different kind of model
without saying so: a 41 M-parameter random-weight `local` model is ranked in its own table, with a
warning, apart from 3 B board emulations; boards of one size class that ran different named models
get a caution. Records are built here the way the runner writes them (provenance of the reference
backend's profiles and of the transformers backend's random-weight models)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List

from harness.analysis.procurement import compare_boards, model_groups
from harness.config.devices import load_devices
from harness.report.compare import render_compare
from harness.runner.protocol import Measurement
from harness.store import RunRecord, Store

from ..conftest import REPO

PROFILES = {  # device -> (profile_board as reference_profiles names it, decode tok/s)
    "ax650n": ("AXERA AX650N (ax-llm, Qwen2.5-VL-3B w8a16)", 6.2),
    "agx-orin": ("NVIDIA Jetson AGX Orin 64GB (VILA1.5-3B AWQ int4)", 42.5),
}


def _record(run_id: str, device: str, rep: int, provenance: Dict[str, Any], tps: float, power: Any) -> Measurement:
    return Measurement(
        run_id=run_id, device=device, suite="image", backend=provenance.get("backend", "reference"), workload="image",
        variant=provenance["variant"], repetition=rep, warmup=False, status="ok", started_at="2026-01-01T00:00:00Z",
        metrics={"ttft_ms": 1000.0 / tps * 10, "decode_tps": tps, "e2e_ms": 1000.0 / tps * 40,
                 "energy_j": None if power is None else power * 40 / tps, "avg_power_w": power},
        metric_sources={"energy_j": "emulated_power: EMULATED power"} if power else {},
        provenance=provenance)


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "bench.sqlite")
    store.create_run(RunRecord("farm", "2026-01-01T00:00:00Z", "image", list(PROFILES), "finished"))
    store.create_run(RunRecord("here", "2026-01-02T00:00:00Z", "image", ["local"], "finished"))
    records: List[Measurement] = []
    for device, (board, tps) in PROFILES.items():
        prov = {"variant": "emulated", "emulated": True, "weights": "emulated", "device_type": device,
                "emulated_profile": device, "backend_extra": {"profile_board": board}}
        records += [_record("farm", device, rep, prov, tps, 10.0) for rep in range(3)]
    local = {"variant": "fp32", "backend": "transformers", "weights": "random", "emulated": False,
             "device_type": "local", "dtype": "float32", "model_id": "qwen2.5-vl-small random-weight (seed 0)",
             "backend_extra": {"n_parameters": 41433984}}
    # the random-weight model decodes faster than the AX650N emulation: it must not be ranked above it
    records += [_record("here", "local", rep, local, 9.0, None) for rep in range(3)]
    store.add_measurements(records)
    return store


def test_a_random_weight_41m_model_is_ranked_apart_with_a_warning(tmp_path: Path) -> None:
    store = _store(tmp_path)
    report = compare_boards(store, ["farm", "here"], load_devices(REPO / "devices.yaml"))
    groups = {c.group: c for c in report.workloads}
    assert set(groups) == {"3 B-parameter models", "41.4 M-parameter models with random weights"}
    emulations = groups["3 B-parameter models"]
    assert [f.device for f in emulations.boards] == ["agx-orin", "ax650n"]
    assert {f.device: f.ranks["decode_tps"] for f in emulations.boards} == {"agx-orin": 1, "ax650n": 2}
    local = groups["41.4 M-parameter models with random weights"].boards
    assert [f.device for f in local] == ["local"] and local[0].ranks["decode_tps"] == 1
    assert len(report.warnings) == 1
    assert "local / fp32 ran 41.4 M-parameter models with random weights" in report.warnings[0]
    assert "no board is ranked against a board of another group" in report.warnings[0]
    # both 3 B profiles name different models: a caution, not a split
    assert "Qwen2.5-VL-3B; VILA1.5-3B" in emulations.caution

    page = render_compare(store, ["farm", "here"], load_devices(REPO / "devices.yaml"), tmp_path / "cmp")
    html = page.read_text()
    assert "Different models, ranked separately." in html
    assert html.count('class="ranking-table"') == 2
    rows = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))
    assert {r["device"]: r["model_group"] for r in rows}["local"] == "41.4 M-parameter models with random weights"
    # prices from devices.yaml by name (the run's own records carry none)
    assert "$260" in html and "$1,999" in html
    store.close()


def test_one_model_class_is_one_table_without_a_warning(tmp_path: Path) -> None:
    store = _store(tmp_path)
    report = compare_boards(store, ["farm"], load_devices(REPO / "devices.yaml"))
    assert [c.group for c in report.workloads] == [""] and report.warnings == []
    groups = model_groups(report.workloads[0].boards)
    assert len(groups) == 1 and groups[0][0] == ""
    store.close()
