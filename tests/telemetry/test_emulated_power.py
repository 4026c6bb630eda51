"""The emulated power source: per-phase watts from a board's (published or assumed) budget, an
exact energy counter, and its label. Truth: energy = the configured watts x the phase's duration on
a clock the test moves by hand; the phases change between two 10 Hz samples, so only the boundary
sample `mark_phase` records makes the per-phase figures exact."""

from __future__ import annotations

import pytest

from harness.runner.telemetry import Sampler, build_sources
from harness.runner.telemetry.base import SourceConfigError
from harness.runner.telemetry.emulated import BUDGETS, EmulatedPower, profile_watts

from .helpers import FakeClock

WATTS = {"idle": 2.0, "preprocess": 4.0, "vision_encode": 9.0, "prefill": 8.0, "decode": 6.0}


def test_per_phase_energy_is_watts_times_duration_even_between_samples() -> None:
    clock = FakeClock()
    source = EmulatedPower({"phases_w": WATTS})
    sampler = Sampler([source], rate_hz=10.0, clock=clock)
    sampler.sample_once()
    # phase boundaries at odd instants (never on a 100 ms sample tick)
    schedule = [("preprocess", 0.033), ("vision_encode", 0.047), ("prefill", 0.161), ("decode", 0.089)]
    spans = {}
    start = clock()
    for phase, seconds in schedule:
        sampler.mark_phase(phase)
        begin = clock()
        clock.advance(seconds)
        spans[phase] = (begin, clock())
        if phase == "prefill":
            sampler.sample_once()  # the sampler thread's regular tick, inside a phase
    end = clock()
    sampler.mark_phase("idle")
    clock.advance(0.1)
    sampler.sample_once()
    window = sampler.window(start, end, spans, n_output_tokens=5)
    assert window["power_source"] == "emulated_power"
    for phase, seconds in schedule:
        assert window["phases"][phase]["energy_j"] == pytest.approx(WATTS[phase] * seconds, rel=1e-6), phase
        assert window["phases"][phase]["avg_power_w"] == pytest.approx(WATTS[phase], rel=1e-6), phase
    assert window["energy_j"] == pytest.approx(sum(WATTS[p] * s for p, s in schedule), rel=1e-6)


def test_profiles_come_from_the_budget_and_say_what_they_are() -> None:
    orin = EmulatedPower({"profile": "orin-nano"})
    assert orin.watts == profile_watts("orin-nano")
    assert orin.watts["vision_encode"] == pytest.approx(0.9 * 25.0) and orin.watts["idle"] == pytest.approx(5.0)
    assert orin.covers.startswith("EMULATED power, no sensor read (published budget")
    assert "25 W" in orin.covers and "assumed shares" in orin.covers
    ax = EmulatedPower({"profile": "ax650n", "phases_w": {"decode": 3.5}})
    assert "assumed budget" in ax.covers and ax.watts["decode"] == 3.5
    assert ax.describe()["emulated"] is True
    assert set(BUDGETS) == {"ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx"}  # the farm's profiles


@pytest.mark.parametrize("config, message", [
    ({"profile": "jetson-thor"}, "unknown profile 'jetson-thor'"),
    ({"phases_w": {"idle": 1.0}}, "missing: preprocess, vision_encode, prefill, decode"),
    ({"profile": "rtx", "phases_w": {"warmup": 1.0}}, "unknown phase 'warmup'"),
    ({"profile": "rtx", "phases_w": {"decode": -1}}, "phases_w.decode must be watts >= 0"),
])
def test_bad_configuration_is_refused_naming_the_option(config: dict, message: str) -> None:
    with pytest.raises(SourceConfigError, match=message):
        EmulatedPower(config)
    sources, warnings = build_sources([dict(config, source="emulated_power")])
    assert sources == [] and message.split("'")[0] in warnings[0]


def test_real_sources_ignore_phases_and_the_sampler_only_asks_when_needed() -> None:
    clock = FakeClock()
    plain = Sampler(build_sources([{"source": "memory"}])[0], rate_hz=10.0, clock=clock)
    assert plain.wants_phases is False
    emulated = Sampler([EmulatedPower({"profile": "rtx"})], rate_hz=10.0, clock=clock)
    assert emulated.wants_phases is True
    emulated.mark_phase("decode")
    assert emulated.sources[0].read()["power_w"] == pytest.approx(0.7 * 450.0)
