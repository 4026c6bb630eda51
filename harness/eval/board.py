"""Accuracy requests through the controller path: attach them to plans, read answers back.

Answers travel in the runner's ``results.jsonl`` beside the measurements, so the controller
pulls them by offset, mirrors them under ``results/pulled/RUN/DEVICE.results.jsonl`` and checks
the mirror against the board's sha256 like every other record. The store keeps measurements;
answers are read from the verified mirror and scored by lm-eval (``harness.eval.suite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..runner.protocol import Answer, BackendSpec, GenerationSpec, ModelSpec, ProtocolError, RunSpec, parse_record
from .lm import AnswerSource
from .requests import EvalRequest, bundle

PULLED = "pulled"  # results/pulled/RUN/DEVICE.results.jsonl, written by the controller


def attach(plans: Sequence[Any], requests: Sequence[EvalRequest], task: str) -> Dict[str, Any]:
    """Give every device plan the accuracy requests (RunSpec.accuracy + files under inputs/)."""
    accuracy, files = bundle(requests, task)
    for plan in plans:
        plan.spec.accuracy = dict(accuracy)
        plan.inputs = list(plan.inputs) + files
    return accuracy


def mirror_path(results_dir: Path, run_id: str, device: str) -> Path:
    return Path(results_dir) / PULLED / run_id / ("%s.results.jsonl" % device)


def read_answers(path: Path) -> List[Answer]:
    """Every complete answer record of a pulled journal (measurements and torn lines skipped)."""
    answers: List[Answer] = []
    if not path.is_file():
        return answers
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n") or '"answer"' not in line:
                continue
            try:
                record = parse_record(line)
            except ProtocolError:
                continue
            if isinstance(record, Answer):
                answers.append(record)
    return answers


def answers_by_variant(results_dir: Path, run_id: str, device: str, task: str) -> Dict[str, List[Answer]]:
    grouped: Dict[str, List[Answer]] = {}
    for answer in read_answers(mirror_path(results_dir, run_id, device)):
        if answer.task == task:
            grouped.setdefault(answer.variant, []).append(answer)
    return grouped


def _transport_factory(inventory: Any, results_dir: Path) -> Callable[[Any], Any]:
    """As `bench run` makes them: local, or SSH with the inventory's own known_hosts."""
    known_hosts = inventory.known_hosts or Path(results_dir) / "known_hosts"

    def make(device: Any) -> Any:
        from ..farm.transport import LocalTransport

        if device.transport == "local":
            return LocalTransport(device.name)
        from ..farm.ssh import SSHTransport

        return SSHTransport.from_device(device, known_hosts_path=known_hosts)

    return make


@dataclass
class ShipToBoard(AnswerSource):
    """Ship each batch to one device's runner for one model variant, now, and wait for it."""

    device: Any  # harness.config.devices.DeviceConfig
    variant: str
    inventory: Any
    results_dir: Path
    suite_label: str = "lm-eval"
    run_ids: Optional[List[str]] = None  # every run this source made, for people and tests
    on_progress: Optional[Callable[[Any], None]] = None

    @classmethod
    def from_names(cls, device: str, variant: str = "", devices_file: str = "devices.yaml",
                   results_dir: str = "results") -> "ShipToBoard":
        from ..config.devices import load_devices

        inventory = load_devices(Path(devices_file))
        config = inventory.get(device)
        chosen = variant or config.models[0].variant
        if chosen not in [m.variant for m in config.models]:
            raise ValueError("device %r has no model variant %r; variants: %s"
                             % (device, chosen, ", ".join(m.variant for m in config.models)))
        return cls(device=config, variant=chosen, inventory=inventory, results_dir=Path(results_dir))

    def _plan(self, run_id: str) -> Any:
        from .. import __version__
        from ..farm.controller import DevicePlan
        from ..plan import Paths, controller_commit, device_python, device_workdir, resolve_model_path

        device = self.device
        paths = Paths(devices_file=Path(self.inventory.path), suites_dir=Path("suites"),
                      results_dir=self.results_dir, reports_dir=Path("reports"))
        index = [m.variant for m in device.models].index(self.variant)
        model = device.models[index]
        spec = RunSpec(
            run_id=run_id, device=device.name, suite=self.suite_label,
            backend=BackendSpec(name=device.backend, options=dict(device.backend_options)),
            models=[ModelSpec(variant=model.variant, path=resolve_model_path(device, index, paths, lambda m: None),
                              quantization=model.quantization, options=dict(model.options))],
            workloads=[],  # accuracy only: no latency repetitions on this trip
            generation=GenerationSpec(output_tokens=2, warmup=0, repetitions=1),
            telemetry=list(device.telemetry),
            device_info={"type": device.type, "expect": dict(device.expect), "tags": list(device.tags),
                         "telemetry_off": True, "idle_s": 0},
            controller={"version": __version__, "git_commit": controller_commit()},
        )
        return DevicePlan(device=device, spec=spec, inputs=[], python=device_python(device),
                          workdir=device_workdir(device))

    def answers(self, requests: Sequence[EvalRequest]) -> Dict[str, Answer]:
        from ..farm.controller import run_plans
        from ..farm.deploy import build_runner
        from ..plan import new_run_id
        from ..store.sqlite import RunRecord, Store

        if not requests:
            return {}
        task = requests[0].task
        run_id = new_run_id()
        plan = self._plan(run_id)
        attach([plan], requests, task)
        store = Store(Path(self.results_dir) / "bench.sqlite")
        store.create_run(RunRecord(run_id=run_id, created_at="", suite=self.suite_label, devices=[self.device.name],
                                   status="running", info={"lm_eval_task": task, "variant": self.variant}))
        [outcome] = run_plans([plan], store, build_runner(), _transport_factory(self.inventory, self.results_dir),
                              self.on_progress or (lambda p: None), mirror_dir=Path(self.results_dir) / PULLED)
        store.finish_run(run_id, "finished" if outcome.state == "finished" and outcome.errors == 0 else "failed")
        if self.run_ids is not None:
            self.run_ids.append(run_id)
        if outcome.state != "finished":
            raise RuntimeError("device %s: %s" % (self.device.name, outcome.error))
        pulled = answers_by_variant(self.results_dir, run_id, self.device.name, task).get(self.variant, [])
        return {a.request_id: a for a in pulled}
