"""Shared helpers for the accuracy tests: a project directory, devices, expected numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from harness.eval.board import attach
from harness.eval.requests import build_requests
from harness.runner.journal import INPUTS
from harness.runner.protocol import BackendSpec, GenerationSpec, ModelSpec, RunSpec

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO / "suites" / "tasks" / "easy_vqa" / "test.jsonl"
CANARY = REPO / "tests" / "fixtures" / "canary"


def subset_rows(limit: Optional[int] = None) -> List[Dict]:
    rows = [json.loads(line) for line in SUBSET.read_text().splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def make_project(tmp_path: Path, devices: List[Dict]) -> Path:
    """tmp_path with suites/ (tasks included) and a devices.yaml of ``devices``."""
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": devices}, sort_keys=False))
    return tmp_path


def reference_device(name: str = "emu", answers: Optional[Dict[str, str]] = None,
                     default_answer: str = "yes") -> Dict:
    return {
        "name": name, "type": "local", "transport": "local", "workdir": "results/work", "idle_s": 0,
        "backend": "reference",
        "backend_options": {"profile": "rtx", "time_scale": 0.01, "answers": answers or {},
                            "default_answer": default_answer},
        "models": [{"variant": "emulated", "path": "emulated"}],
    }


def prompt_of(row: Dict) -> str:
    """The prompt the easy_vqa task YAML renders (doc_to_text)."""
    return "%s\nAnswer the question using a single word or phrase." % row["question"]


def accuracy_spec(run_dir: Path, backend: BackendSpec, models: Sequence[ModelSpec], limit: int,
                  run_id: str = "run1", device: str = "emu") -> RunSpec:
    """A RunSpec with the first ``limit`` easy_vqa requests and no latency workloads, its inputs
    written under ``run_dir`` as the controller would upload them."""

    class Plan:  # the two attributes attach() uses
        def __init__(self, spec: RunSpec) -> None:
            self.spec, self.inputs = spec, []

    spec = RunSpec(run_id=run_id, device=device, suite="vqa", backend=backend, models=list(models), workloads=[],
                   generation=GenerationSpec(output_tokens=2, warmup=0, repetitions=1),
                   device_info={"telemetry_off": True})
    plan = Plan(spec)
    attach([plan], build_requests("easy_vqa", limit=limit), "easy_vqa")
    for name, data in plan.inputs:
        path = run_dir / INPUTS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return spec
