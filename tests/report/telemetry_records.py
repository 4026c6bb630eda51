"""Measurement dicts whose telemetry comes from the real Sampler over fake sources (so the shapes are
the runner's), with the exact truth each figure must match.

Three boards, one workload each, 1 warm-up + 5 measured repetitions:
- JETSON: a power sensor with a known power function (2 W idle; 6 W + 2 W sine under load), memory
  channels, a temperature and an nvpmodel power mode. Measured reps 2 and 4 are flagged (too hot
  after; wrong power mode), the warm-up is not.
- AX650N: memory only (CMM), no power sensor; every read warns with hostile text.
- OLD: written by a runner without telemetry (``telemetry == {}``, no energy metrics).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from harness.runner.protocol import Measurement
from harness.runner.telemetry import Sampler, TelemetrySource, throttle_flags

JETSON = "orin-nano-01"
AX650N = "ax650n-01"
OLD = "old-board"
WORKLOAD = "image"
WARMUP = 1
REPS = 5
RATE_HZ = 10.0
N_OUTPUT = 33
IDLE_W = 2.0
MEAN_W, AMP_W, PERIOD_S = 6.0, 2.0, 1.7
FLAGGED_REPS = (2, 4)  # repetition numbers (warm-up is 0)
HOSTILE_WARNING = "CMM line <script>alert('cmm')</script> | unparsed & odd"
EXPECT = {"nvpmodel": "MAXN", "max_temp_c": 85.0}
POWER_COVERS = "module input rail VDD_IN (synthetic)"
PHASE_ORDER = ("preprocess", "vision_encode", "prefill", "decode")


class FakeClock:
    """A perf_counter_ns stand-in moved by hand."""

    def __init__(self, t_ns: int = 1_000_000_000) -> None:
        self.t = t_ns

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(round(seconds * 1e9))


def ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


class Board:
    """The state the fake sources read: when the load starts, temperature, power mode."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.load_from_s: float = math.inf
        self.temp_c = 55.0
        self.mode = "MAXN"

    def power(self, t_s: float) -> float:
        if t_s < self.load_from_s:
            return IDLE_W
        return MEAN_W + AMP_W * math.sin(2 * math.pi * t_s / PERIOD_S)

    def energy(self, a_ns: int, b_ns: int) -> float:
        """Exact integral of the load power over [a, b] (the queries never straddle the idle step)."""
        a, b = a_ns / 1e9, b_ns / 1e9
        assert a >= self.load_from_s
        k = 2 * math.pi / PERIOD_S
        return MEAN_W * (b - a) - AMP_W / k * (math.cos(k * b) - math.cos(k * a))

    def memory(self, t_s: float) -> Tuple[float, float]:
        return 900.0 + 10.0 * math.sin(t_s), 1500.0 + 5.0 * t_s


class PowerSource(TelemetrySource):
    name = "fake_ina"
    kinds = ("power", "memory", "temperature")

    def __init__(self, board: Board) -> None:
        super().__init__({"label": "ina"})
        self.board = board
        self.covers = POWER_COVERS

    def read(self) -> Dict[str, Optional[float]]:
        t_s = self.board.clock() / 1e9
        rss, nvmap = self.board.memory(t_s)
        return {"power_w": self.board.power(t_s), "mem_mb:rss": rss, "mem_mb:nvmap": nvmap,
                "temp_c:soc": self.board.temp_c}


class ModeSource(TelemetrySource):
    name = "fake_mode"
    kinds = ("state",)
    sampled = False

    def __init__(self, board: Board) -> None:
        super().__init__({"label": "mode"})
        self.board = board
        self.covers = "power mode"

    def read(self) -> Dict[str, Optional[float]]:
        return {}

    def snapshot(self) -> Dict[str, Any]:
        return {"power_mode:nvpmodel": self.board.mode}


class CmmSource(TelemetrySource):
    name = "fake_cmm"
    kinds = ("memory",)

    def __init__(self, board: Board) -> None:
        super().__init__({"label": "cmm"})
        self.board = board
        self.covers = "AX650N CMM (NPU) memory; no power sensor on the board"

    def read(self) -> Dict[str, Optional[float]]:
        self.warn(HOSTILE_WARNING)
        return {"mem_mb:cmm_used": 2100.0 + (self.board.clock() / 1e9) % 7}


@dataclass
class Truth:
    """Exact figures of one measured repetition."""

    repetition: int
    energy_j: float
    avg_power_w: float
    j_per_token: float
    energy_above_idle_j: float
    phase_power: Dict[str, float]
    phase_ms: Dict[str, Tuple[float, float]]  # start, end from the query start
    e2e_ms: float
    flagged: bool
    peak_mb: Dict[str, float] = field(default_factory=dict)


def _tick_until(sampler: Sampler, clock: FakeClock, t_end_ns: int) -> None:
    """Sample on a 10 Hz grid until one sample lies past ``t_end_ns`` (the runner's thread does this)."""
    while True:
        sampler.sample_once()
        if clock() > t_end_ns:
            return
        clock.advance(1.0 / RATE_HZ)


def _record(device: str, backend: str, variant: str, rep: int, metrics: Dict[str, Any],
            telemetry: Dict[str, Any], sources: Dict[str, str], warnings: List[str]) -> Dict[str, Any]:
    m = Measurement(run_id="run-t", device=device, suite="image-1", workload=WORKLOAD, backend=backend,
                    variant=variant, repetition=rep, warmup=rep < WARMUP, status="ok", metrics=metrics,
                    itl_ms=[metrics["tpot_ms"]] * (N_OUTPUT - 1), metric_sources=sources, telemetry=telemetry,
                    provenance={"weights": "real", "board": device}, input_sha256="sha-image",
                    output_text="a cat", warnings=warnings)
    m.to_json()  # what the runner writes must serialise (no NaN)
    return dataclasses.asdict(m)


def _board_records(device: str, backend: str, variant: str, sources_of, expect: Dict[str, Any],
                   with_power: bool) -> Tuple[List[Dict[str, Any]], List[Truth]]:
    clock = FakeClock()
    board = Board(clock)
    sampler = Sampler(sources_of(board), rate_hz=RATE_HZ, clock=clock)
    t_idle = clock()
    _tick_until(sampler, clock, t_idle + ns(1.0))
    idle = sampler.idle_between(t_idle, t_idle + ns(1.0))
    clock.advance(0.05)
    board.load_from_s = clock() / 1e9 + 0.3
    clock.advance(0.5)
    records: List[Dict[str, Any]] = []
    truths: List[Truth] = []
    for rep in range(WARMUP + REPS):
        scale = 3.0 if rep < WARMUP else 1.0 + 0.07 * ((rep * 3) % 5)
        board.temp_c, board.mode = 55.0, "MAXN"
        if rep == 4:
            board.mode = "15W"
        before = sampler.snapshot()
        t0 = clock() + ns(0.013 * rep)  # boundaries between samples, different each time
        lengths = {"preprocess": 0.15 * scale, "vision_encode": 0.6 * scale, "prefill": 0.45 * scale,
                   "decode": 1.6 * scale}
        phases: Dict[str, Tuple[int, int]] = {}
        cursor = t0
        for name in PHASE_ORDER:
            phases[name] = (cursor, cursor + ns(lengths[name]))
            cursor = phases[name][1]
        t1 = cursor
        _tick_until(sampler, clock, t1)
        window = sampler.window(t0, t1, phases, N_OUTPUT, include_trace=True)
        if rep == 2:
            board.temp_c = 91.0
        after = sampler.snapshot()
        flags = throttle_flags(before, after, expect)
        ms = {name: (b - a) / 1e6 for name, (a, b) in phases.items()}
        ttft = (phases["decode"][0] - t0) / 1e6
        e2e = (t1 - t0) / 1e6
        decode_s = lengths["decode"]
        metrics: Dict[str, Any] = {
            "preprocess_ms": ms["preprocess"], "vision_encode_ms": ms["vision_encode"],
            "prefill_ms": ms["prefill"], "ttft_ms": ttft, "e2e_ms": e2e,
            "decode_tps": (N_OUTPUT - 1) / decode_s, "tpot_ms": 1000.0 * decode_s / (N_OUTPUT - 1),
            "itl_p50_ms": 1000.0 * decode_s / (N_OUTPUT - 1), "itl_p90_ms": 1000.0 * decode_s / (N_OUTPUT - 1),
            "itl_p99_ms": 1000.0 * decode_s / (N_OUTPUT - 1), "n_input_tokens": 300, "n_visual_tokens": 256,
            "n_output_tokens": N_OUTPUT, "peak_host_mb": 950.0 + rep, "peak_accel_mb": None,
        }
        # exactly what execute.py's _telemetry_window copies
        for name in ("energy_j", "avg_power_w", "j_per_token", "idle_power_w", "energy_above_idle_j"):
            metrics[name] = window.get(name)
        sources = {"peak_host_mb": "VmHWM", "peak_accel_mb": "none: this backend reports no accelerator memory"}
        if window.get("power_source"):
            sources["energy_j"] = "%s: %s" % (window["power_source"], window.get("power_covers", ""))
        telemetry = {"window": window, "before": before, "after": after, "throttle_flags": flags,
                     "throttled": bool(flags), "idle": idle, "source_warnings": []}
        records.append(_record(device, backend, variant, rep, metrics, telemetry, sources,
                               ["throttle/power-mode: %s" % f for f in flags]))
        if rep >= WARMUP and with_power:
            energy = board.energy(t0, t1)
            truths.append(Truth(
                repetition=rep, energy_j=energy, avg_power_w=energy / ((t1 - t0) / 1e9),
                j_per_token=board.energy(*phases["decode"]) / (N_OUTPUT - 1),
                energy_above_idle_j=energy - IDLE_W * (t1 - t0) / 1e9,
                phase_power={n: board.energy(a, b) / ((b - a) / 1e9) for n, (a, b) in phases.items()},
                phase_ms={n: ((a - t0) / 1e6, (b - t0) / 1e6) for n, (a, b) in phases.items()},
                e2e_ms=e2e, flagged=bool(flags)))
        clock.advance(0.4)
    return records, truths


def make_telemetry_records() -> Tuple[List[Dict[str, Any]], List[Truth]]:
    """Records of the three boards, and the truth of the Jetson's measured repetitions."""
    jetson, truths = _board_records(JETSON, "llamacpp", "q4_k_m", lambda b: [PowerSource(b), ModeSource(b)],
                                    EXPECT, with_power=True)
    ax, _ = _board_records(AX650N, "axllm", "w8a16", lambda b: [CmmSource(b)], {}, with_power=False)
    old, _ = _board_records(OLD, "reference", "fp16", lambda b: [CmmSource(b)], {}, with_power=False)
    for record in old:
        record["telemetry"] = {}
        record["warnings"] = []
        for name in ("energy_j", "avg_power_w", "j_per_token", "idle_power_w", "energy_above_idle_j"):
            record["metrics"].pop(name)
        record["metric_sources"].pop("energy_j", None)
    return jetson + ax + old, truths
