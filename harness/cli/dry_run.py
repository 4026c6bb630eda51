"""`bench run --dry-run`: the plan and an estimate of its duration, nothing started or built.

The estimate comes from the store: for each device, workload and variant, the median end-to-end
time of the newest earlier run of the same suite that measured it, times (warm-up + repetitions),
plus that run's model load time. Devices run in parallel, so the run takes about as long as its
slowest device. Without an earlier run a device's estimate is unknown, and the plan says so.
"""

from __future__ import annotations

import datetime
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..farm.controller import DevicePlan


@dataclass
class DeviceEstimate:
    device: str
    backend: str
    variants: List[str]
    workloads: List[str]
    warmup: int
    repetitions: int
    output_tokens: int
    seconds: Optional[float]  # None: no earlier run to estimate from
    basis: str  # where the estimate comes from, in words
    models: List[Dict[str, str]] = field(default_factory=list)


def _medians(records: Sequence[Dict[str, Any]]) -> Tuple[Dict[Tuple[str, str], float], Dict[str, float]]:
    """Median e2e (ms) per (workload, variant) of measured ok records, and load_ms per variant."""
    e2e: Dict[Tuple[str, str], List[float]] = {}
    load: Dict[str, List[float]] = {}
    for r in records:
        if r.get("status") != "ok" or r.get("warmup"):
            continue
        value = (r.get("metrics") or {}).get("e2e_ms")
        if isinstance(value, (int, float)):
            e2e.setdefault((r.get("workload", ""), r.get("variant", "")), []).append(float(value))
        load_ms = (r.get("provenance") or {}).get("load_ms")
        if isinstance(load_ms, (int, float)):
            load.setdefault(r.get("variant", ""), []).append(float(load_ms))
    return ({k: statistics.median(v) for k, v in e2e.items()},
            {k: statistics.median(v) for k, v in load.items()})


def _overhead_s(run: Any, records: Sequence[Dict[str, Any]], device: str) -> Optional[float]:
    """The earlier run's wall time not spent in measured queries (deploy, load, idle power)."""
    if not run.created_at or not run.finished_at:
        return None
    try:
        wall = (datetime.datetime.fromisoformat(run.finished_at.replace("Z", "+00:00"))
                - datetime.datetime.fromisoformat(run.created_at.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return None
    work = sum(float((r.get("metrics") or {}).get("e2e_ms") or 0) for r in records
               if r.get("device") == device and r.get("status") == "ok") / 1000.0
    return max(0.0, wall - work)


def estimate(plans: Sequence[DevicePlan], store: Any, suite: str) -> List[DeviceEstimate]:
    earlier = [r for r in store.list_runs(limit=200) if r.suite == suite and r.status == "finished"]
    out: List[DeviceEstimate] = []
    for plan in plans:
        spec = plan.spec
        gen = spec.generation
        total_reps = gen.warmup + gen.repetitions
        variants = [m.variant for m in spec.models]
        workloads = [w.name for w in spec.workloads]
        seconds: Optional[float] = None
        basis = "unknown: no earlier finished run of suite %s on %s" % (suite, plan.device.name)
        for run in earlier:
            if plan.device.name not in run.devices:
                continue
            e2e, load = _medians([r for r in store.measurements(run.run_id) if r.get("device") == plan.device.name])
            if not all((w, v) in e2e for w in workloads for v in variants):
                continue
            seconds = sum(e2e[(w, v)] * total_reps for w in workloads for v in variants) / 1000.0
            overhead = _overhead_s(run, store.measurements(run.run_id), plan.device.name)
            if overhead is None:  # no wall time recorded: the loads and the idle measurement at least
                overhead = sum(load.get(v, 0.0) for v in variants) / 1000.0 + float(spec.device_info.get("idle_s", 0))
            seconds += overhead
            basis = "medians of run %s + its %.0f s of deploy, load and idle" % (run.run_id, overhead)
            break
        models = [{"variant": m.variant, "path": m.path} for m in spec.models]
        out.append(DeviceEstimate(device=plan.device.name, backend=spec.backend.name, variants=variants,
                                  workloads=workloads, warmup=gen.warmup, repetitions=gen.repetitions,
                                  output_tokens=gen.output_tokens, seconds=seconds, basis=basis, models=models))
    return out


def total_seconds(estimates: Sequence[DeviceEstimate]) -> Optional[float]:
    """Devices run in parallel: the slowest one; None when any device has no estimate."""
    if not estimates or any(e.seconds is None for e in estimates):
        return None
    return max(e.seconds for e in estimates if e.seconds is not None)


def as_json(suite: str, estimates: Sequence[DeviceEstimate], overrides: Dict[str, Any]) -> Dict[str, Any]:
    return {"dry_run": True, "suite": suite, "overrides": overrides, "devices": [asdict(e) for e in estimates],
            "estimated_s": total_seconds(estimates)}
