"""A synthetic nightly history written straight into a store: Measurement records with seeded
multiplicative noise, and planted changes (a step, a small drift, a one-night outlier) with the
provenance change that came with them. Used by the regression, store and browser tests and by
benchmarks/regress_history.py.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from harness.runner.protocol import Measurement
from harness.store.base import BaseStore, RunRecord

# (device, base TTFT ms for image / video, decode tok/s, average power W) - orders of magnitude of
# the emulated profiles; the exact values do not matter here.
BOARDS: Tuple[Tuple[str, float, float, float, float], ...] = (
    ("ax650n", 2857.0, 5400.0, 6.2, 7.0),
    ("orin-nano", 382.0, 2956.0, 14.1, 15.0),
    ("agx-orin", 152.0, 1116.0, 42.5, 40.0),
    ("upsquared-n", 2130.0, 4090.0, 8.0, 12.0),
    ("rtx-pc", 40.0, 125.0, 215.5, 350.0),
)
WORKLOADS = ("image", "video-8f")
SUITE = "nightly-vlm"


@dataclass(frozen=True)
class Plant:
    """Multiply ``metric`` on ``device``/``workload`` by (1 + rel) from night ``start`` (inclusive)
    to ``stop`` (exclusive, None = to the end); ``provenance`` is merged in from ``start`` on."""

    device: str
    metric: str
    rel: float
    start: int
    stop: Optional[int] = None
    workload: Optional[str] = None  # None: every workload
    provenance: Dict[str, Any] = field(default_factory=dict)

    def applies(self, device: str, workload: str, night: int) -> bool:
        return (device == self.device and (self.workload is None or workload == self.workload)
                and night >= self.start and (self.stop is None or night < self.stop))


def _provenance(device: str, night: int, plants: Sequence[Plant], emulated: bool) -> Dict[str, Any]:
    prov: Dict[str, Any] = {
        "board": "synthetic %s" % device, "engine": "synthetic-engine 1.0",
        "engine_versions": {"synthetic": "1.0"}, "model_id": "qwen2.5-vl-3b", "model_sha256": "m" * 64,
        "quantization": "none", "dtype": "float16", "runner_hash": "r" * 64, "runner_version": "0.1.0",
        "controller_commit": "c0ffee", "weights": "emulated" if emulated else "real", "emulated": emulated,
        "device_type": device, "backend_extra": {"n_parameters": 3_760_000_000},
    }
    if emulated:
        prov["emulated_profile"] = device
    for plant in plants:
        if plant.device == device and night >= plant.start and plant.provenance:
            if plant.stop is None or night < plant.stop:
                prov.update(plant.provenance)
    return prov


def _metrics(ttft: float, tps: float, power: float, factor: Dict[str, float]) -> Dict[str, Optional[float]]:
    ttft *= factor.get("ttft_ms", 1.0)
    tps *= factor.get("decode_tps", 1.0)
    n_out = 32
    decode_ms = (n_out - 1) / tps * 1000.0
    e2e = (ttft + decode_ms) * factor.get("e2e_ms", 1.0)
    energy = power * e2e / 1000.0 * factor.get("energy_j", 1.0)
    return {
        "preprocess_ms": 0.02 * ttft, "vision_encode_ms": 0.3 * ttft, "prefill_ms": 0.68 * ttft,
        "ttft_ms": ttft, "decode_tps": tps, "tpot_ms": 1000.0 / tps, "itl_p50_ms": 1000.0 / tps,
        "itl_p90_ms": 1100.0 / tps, "itl_p99_ms": 1300.0 / tps, "e2e_ms": e2e,
        "n_input_tokens": 320.0, "n_visual_tokens": 256.0, "n_output_tokens": float(n_out),
        "peak_host_mb": 900.0 * factor.get("peak_host_mb", 1.0), "peak_accel_mb": None,
        "energy_j": energy, "avg_power_w": power, "j_per_token": energy / n_out,
    }


def build_history(store: BaseStore, nights: int = 30, reps: int = 5, warmup: int = 1, noise_cv: float = 0.015,
                  plants: Sequence[Plant] = (), seed: int = 0, boards: Sequence[Tuple[str, float, float, float, float]] = BOARDS,
                  workloads: Sequence[str] = WORKLOADS, tags_by_night: Optional[Dict[int, List[str]]] = None,
                  emulated: bool = False, output_text: str = "a short answer", batch_nights: int = 1) -> List[str]:
    """Write ``nights`` runs (one per night, every board) and return their run ids, oldest first."""
    rng = np.random.default_rng(seed)
    start = datetime.datetime(2026, 1, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)
    run_ids: List[str] = []
    pending: List[Measurement] = []
    for night in range(nights):
        when = start + datetime.timedelta(days=night)
        run_id = "%s-n%04d" % (when.strftime("%Y%m%d-%H%M%S"), night)
        tags = ["nightly"] + list((tags_by_night or {}).get(night, []))
        store.create_run(RunRecord(run_id, when.strftime("%Y-%m-%dT%H:%M:%SZ"), SUITE, [b[0] for b in boards],
                                   "finished", controller_commit="c0ffee", tags=tags,
                                   variants=["%s/fp16" % b[0] for b in boards]))
        run_ids.append(run_id)
        for device, ttft_image, ttft_video, tps, power in boards:
            prov = _provenance(device, night, plants, emulated)
            for workload in workloads:
                ttft = ttft_image if workload == "image" else ttft_video
                factor: Dict[str, float] = {}
                for plant in plants:
                    if plant.applies(device, workload, night):
                        factor[plant.metric] = factor.get(plant.metric, 1.0) * (1.0 + plant.rel)
                for rep in range(warmup + reps):
                    noise = {name: float(np.exp(rng.normal(0.0, noise_cv)))
                             for name in ("ttft_ms", "decode_tps", "e2e_ms", "energy_j", "peak_host_mb")}
                    rep_factor = {k: factor.get(k, 1.0) * noise[k] for k in noise}
                    if rep < warmup:
                        rep_factor["ttft_ms"] *= 3.0  # a cold start: must never reach a summary
                    pending.append(Measurement(
                        run_id=run_id, device=device, suite=SUITE, workload=workload, backend="synthetic",
                        variant="fp16", repetition=rep, warmup=rep < warmup, status="ok",
                        metrics=_metrics(ttft, tps, power, rep_factor), provenance=dict(prov),
                        input_sha256="in-%s" % workload, output_text=output_text,
                        started_at=(when + datetime.timedelta(seconds=rep)).isoformat(),
                    ))
        if (night + 1) % batch_nights == 0:
            store.add_measurements(pending)
            pending = []
    if pending:
        store.add_measurements(pending)
    return run_ids
