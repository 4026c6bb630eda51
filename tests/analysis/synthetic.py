"""Synthetic Measurement dicts for the analysis and report tests (no runner, no model).

Two devices x two workloads x (1 warm-up + 5 measured repetitions):
- device A ("orin|nano <script>...") runs a random-weight model; its image repetition 3 fails;
  it has no accelerator memory figure and no vision-encode figure for video (None).
- device B (unicode, newline, "$") is an emulated board profile with the engine's own figures.
Warm-up repetitions carry outlandish values so any leak into a summary shows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from harness.runner.protocol import Measurement

HOSTILE_DEVICE = "orin|nano <script>alert(1)</script>"
UNICODE_DEVICE = "ax650n\nemu ünïcødé 🚀 $x$ & co"
HOSTILE_VARIANT = "int8|q4"
HOSTILE_TEXT = "<script>alert(1)</script> | pipe\nsecond line ünïcødé"
HOSTILE_ERROR = "CUDA OOM <script>alert('err')</script> | at layer\n12"
WORKLOADS = ("image", "video-8f")
WARMUP = 1
REPS = 5


def _metrics(base: float, rep: int, warm: bool) -> Dict[str, Optional[float]]:
    scale = 10.0 if warm else 1.0 + 0.01 * ((rep * 7) % 5)  # distinct values per repetition
    pre, vis, pf = 5.0 * base * scale, 20.0 * base * scale, 30.0 * base * scale
    ttft = pre + vis + pf + 1.5
    tpot = 2.0 * base * scale
    e2e = ttft + 15 * tpot
    return {
        "preprocess_ms": pre, "vision_encode_ms": vis, "prefill_ms": pf, "ttft_ms": ttft,
        "decode_tps": 1000.0 / tpot, "tpot_ms": tpot, "itl_p50_ms": tpot, "itl_p90_ms": tpot * 1.1,
        "itl_p99_ms": tpot * 1.3, "e2e_ms": e2e, "n_input_tokens": 120.0, "n_visual_tokens": 64.0,
        "n_output_tokens": 16.0, "peak_host_mb": 800.0 + rep, "peak_accel_mb": 300.0 + 2 * rep,
    }


def make_records() -> List[Dict[str, Any]]:
    records: List[Dict[str, Any]] = []
    devices = [
        (HOSTILE_DEVICE, HOSTILE_VARIANT, "transformers", 1.0,
         {"weights": "random", "emulated": False, "model_id": "qwen2.5-vl-tiny-random",
          "engine": "transformers 5.0", "board": "Jetson <b>Orin</b>", "controller_commit": "abc123"}),
        (UNICODE_DEVICE, "fp16", "reference", 2.0,
         {"weights": "emulated", "emulated": True, "emulated_profile": "ax650n",
          "model_id": "emulated:ax650n", "engine": "reference (emulated)", "board": "AX650N",
          "controller_commit": "abc123"}),
    ]
    for device, variant, backend, base, prov in devices:
        for w_index, workload in enumerate(WORKLOADS):
            for rep in range(WARMUP + REPS):
                warm = rep < WARMUP
                m = Measurement(
                    run_id="run-1", device=device, suite="video-8f", workload=workload,
                    backend=backend, variant=variant, repetition=rep, warmup=warm, status="ok",
                    provenance=dict(prov, quantization=variant, runner_version="0.1.0"),
                    input_sha256="sha-%s" % workload, started_at="2025-01-01T00:00:%02dZ" % rep,
                )
                failed = backend == "transformers" and workload == "image" and rep == 3
                if failed:
                    m.status, m.error, m.error_kind = "error", HOSTILE_ERROR, "engine"
                else:
                    m.metrics = _metrics(base * (1 + w_index), rep, warm)
                    m.itl_ms = [m.metrics["tpot_ms"] * (1 + 0.05 * (i % 3)) for i in range(15)]
                    m.output_text = HOSTILE_TEXT + " rep %d" % rep
                    m.metric_sources = {"peak_host_mb": "VmHWM",
                                        "peak_accel_mb": "none: this backend reports no accelerator memory"
                                        if backend == "transformers" else "CMM"}
                    if backend == "transformers":
                        m.metrics["peak_accel_mb"] = None
                        if workload == "video-8f":
                            m.metrics["vision_encode_ms"] = None
                    else:
                        m.engine = {"configured_ms": {"prefill_ms": 60.0 * (1 + w_index), "itl_ms": [4, 5]},
                                    "note": "profile <ax650n> | published"}
                    m.warnings = ["tokens | timed <ok>"] if rep == 2 else []
                records.append(dataclasses.asdict(m))
    return records


def measured_values(records: List[Dict[str, Any]], device: str, workload: str, metric: str) -> List[float]:
    """The values a summary must use, selected independently of the code under test."""
    return [r["metrics"][metric] for r in records
            if r["device"] == device and r["workload"] == workload and not r["warmup"]
            and r["status"] == "ok" and r["metrics"].get(metric) is not None]
