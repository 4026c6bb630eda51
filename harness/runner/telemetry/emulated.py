"""``emulated_power``: the power an emulated board would draw, phase by phase - never a measurement.

The emulated farm (`bench farm up`) runs the ``reference`` backend's board profiles; nothing on this
machine can tell what an AX650N or a Jetson would draw. So that the procurement report can show
energy per query, perf/W and a latency-energy Pareto plot for the demo, this source reports a
piecewise-constant power per phase of the query (idle, preprocess, vision_encode, prefill, decode)
and the energy counter that integrates it exactly. The runner tells it when each phase begins
(``Sampler.mark_phase``, from the announcer that stamps the phases).

The figures are a board's **published power budget** (the power mode the board is configured for)
where a vendor publishes one, else an **assumed** budget, times **assumed** shares of that budget
per phase. The source's ``covers`` text says all of that, starting with "EMULATED", and it lands in
every measurement's metric source and in the report's assumptions.

Options: ``profile`` (a board profile below) and/or ``phases_w`` ({phase: watts}, overriding the
profile's figures; with no profile every phase must be given).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from .base import TIMESTAMP_KEY, SourceConfigError, TelemetrySource, Values, register_source

PHASES = ("idle", "preprocess", "vision_encode", "prefill", "decode")

# Assumed share of the board's power budget per phase: vision encoding and prefill are
# compute-bound (near the budget), decode is memory-bound (less), preprocessing runs on the CPU
# cores, idle is the board doing nothing. One documented rule for every board, not a measurement.
ASSUMED_SHARES: Dict[str, float] = {"idle": 0.2, "preprocess": 0.4, "vision_encode": 0.9, "prefill": 0.9,
                                    "decode": 0.7}
SHARES_NOTE = "assumed shares of it per phase: idle 20%, preprocess 40%, vision encode 90%, prefill 90%, decode 70%"

# profile (as the reference backend names them) -> (budget W, what the budget is and where it is from)
BUDGETS: Dict[str, Dict[str, Any]] = {
    "orin-nano": {"budget_w": 25.0, "published": True,
                  "basis": "25 W module power mode (MAXN_SUPER), published by NVIDIA for the Jetson Orin "
                           "Nano 8GB Super (7 / 15 / 25 W modes)"},
    "agx-orin": {"budget_w": 60.0, "published": True,
                 "basis": "60 W module power mode (MAXN), published by NVIDIA for the Jetson AGX Orin 64GB "
                          "(15-60 W)"},
    "rtx": {"budget_w": 450.0, "published": True,
            "basis": "450 W total graphics power, published by NVIDIA for the GeForce RTX 4090 (GPU board only, "
                     "not the host PC)"},
    "ax650n": {"budget_w": 8.0, "published": False,
               "basis": "assumed 8 W board budget: no power figure published for the AX650N and no on-board "
                        "sensor (a real board needs an external meter)"},
    "upsquared-n": {"budget_w": 15.0, "published": False,
                    "basis": "assumed 15 W: the top of Intel's Alder Lake-N processor base power range (6-15 W "
                             "by SKU); the rest of the board not counted"},
}


def profile_watts(profile: str) -> Dict[str, float]:
    """Watts per phase of a profile: its budget times the assumed shares."""
    budget = float(BUDGETS[profile]["budget_w"])
    return {phase: round(budget * share, 3) for phase, share in ASSUMED_SHARES.items()}


@register_source("emulated_power")
class EmulatedPower(TelemetrySource):
    kinds = ("power", "energy")
    options: Dict[str, Any] = {"profile": None, "phases_w": None}
    phase_aware = True

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        profile = self.config.get("profile")
        if profile is not None and profile not in BUDGETS:
            raise SourceConfigError("emulated_power: unknown profile %r; profiles: %s"
                                    % (profile, ", ".join(sorted(BUDGETS))))
        watts: Dict[str, float] = profile_watts(profile) if profile else {}
        overrides = self.config.get("phases_w") or {}
        if not isinstance(overrides, dict):
            raise SourceConfigError("emulated_power: phases_w must map phases (%s) to watts" % ", ".join(PHASES))
        for phase, value in overrides.items():
            if phase not in PHASES:
                raise SourceConfigError("emulated_power: unknown phase %r in phases_w; phases: %s"
                                        % (phase, ", ".join(PHASES)))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise SourceConfigError("emulated_power: phases_w.%s must be watts >= 0, got %r" % (phase, value))
            watts[phase] = float(value)
        missing = [p for p in PHASES if p not in watts]
        if missing:
            raise SourceConfigError("emulated_power: give a profile or watts for every phase; missing: %s"
                                    % ", ".join(missing))
        self.watts = watts
        self.profile = profile
        if profile:
            budget = BUDGETS[profile]
            basis = "%s; %s" % (budget["basis"], SHARES_NOTE)
            kind = "published budget" if budget["published"] else "assumed budget"
        else:
            basis, kind = "watts per phase given in devices.yaml (phases_w)", "configured"
        if overrides and profile:
            basis += "; phases_w overrides %s" % ", ".join(sorted(overrides))
        self.basis = basis
        self.covers = "EMULATED power, no sensor read (%s, %s profile): %s" % (kind, profile or "custom", basis)
        self.counter = True  # the energy counter below is exact for this piecewise curve
        self._lock = threading.Lock()
        self._phase = "idle"
        self._since: Optional[int] = None
        self._energy_j = 0.0

    def _advance(self, now: int) -> None:
        if self._since is not None:
            self._energy_j += self.watts[self._phase] * (now - self._since) / 1e9
        self._since = now

    def on_phase(self, phase: str) -> None:
        with self._lock:
            self._advance(self.clock())
            self._phase = phase if phase in self.watts else "idle"

    def read(self) -> Values:
        with self._lock:
            now = self.clock()
            self._advance(now)
            return {"power_w": self.watts[self._phase], "energy_j": self._energy_j, TIMESTAMP_KEY: now}

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out.update({"emulated": True, "profile": self.profile, "phases_w": dict(self.watts), "basis": self.basis})
        return out
