"""Energy integration against known synthetic traces, windows, idle, snapshots, the throttling guard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.runner.telemetry import Sampler, TelemetrySource, build_sources, throttle_flags
from harness.runner.telemetry.integrate import counter_delta, integrate_power

from .helpers import (
    FakeClock,
    FunctionCounterSource,
    FunctionPowerSource,
    drive,
    energy_between,
    ns,
    power_at,
    write_tree,
)
from .test_generic_registry import SYS


def test_trapezoid_is_exact_for_a_linear_ramp() -> None:
    points = [(ns(t / 10), 2.0 + 3.0 * t / 10) for t in range(0, 31)]  # 2 W + 3 W/s, 10 Hz
    q = integrate_power(points, ns(0.33), ns(2.71), ns(0.2))
    exact = 2.0 * 2.38 + 1.5 * (2.71 ** 2 - 0.33 ** 2)
    assert q.energy_j == pytest.approx(exact, rel=1e-9)
    assert q.avg_power_w == pytest.approx(exact / 2.38)
    assert q.n_samples == 24 and q.warnings == []


def test_interval_shorter_than_a_sample_interval_is_interpolated() -> None:
    points = [(ns(t / 10), 2.0 + 3.0 * t / 10) for t in range(0, 11)]
    q = integrate_power(points, ns(0.52), ns(0.57), ns(0.2))
    assert q.energy_j == pytest.approx(0.05 * (2.0 + 3.0 * 0.545), rel=1e-9)
    assert q.n_samples == 0
    assert "shorter than one sample interval; energy from interpolation" in q.warnings[0]


def test_no_invented_numbers_beyond_the_trace() -> None:
    points = [(ns(1.0), 5.0), (ns(1.1), 5.0)]
    far = integrate_power(points, ns(0.0), ns(1.1), ns(0.2))
    assert far.energy_j is None and "no value" in far.warnings[0]
    assert integrate_power([], 0, ns(1), ns(1)).energy_j is None
    assert counter_delta([(ns(1.0), 3.0)], ns(0.95), ns(1.0), ns(0.2)).energy_j is None
    reversed_ = integrate_power(points, ns(1.1), ns(1.0), ns(0.2))
    assert reversed_.energy_j is None and reversed_.warnings


def test_sampled_power_energy_within_1_percent(fake_clock: FakeClock) -> None:
    src = FunctionPowerSource(fake_clock)
    sampler = Sampler([src], rate_hz=10.0, clock=fake_clock)
    t_first = fake_clock()
    drive(sampler, fake_clock, 5.0, 10.0)
    # a query and phases with boundaries that fall between samples
    t0, t1 = t_first + ns(0.537), t_first + ns(4.213)
    phases = {"preprocess": (t0, t0 + ns(0.05)), "vision_encode": (t0 + ns(0.05), t0 + ns(0.9)),
              "prefill": (t0 + ns(0.9), t0 + ns(1.44)), "decode": (t0 + ns(1.44), t1)}
    out = sampler.window(t0, t1, phases, n_output_tokens=33)
    json.dumps(out, allow_nan=False)  # what the runner writes
    entry = out["sources"]["test_power"]
    assert out["power_source"] == "test_power" and entry["method"] == "trapezoid"

    def exact(a: int, b: int) -> float:
        return energy_between(a / 1e9, b / 1e9)

    assert out["energy_j"] == pytest.approx(exact(t0, t1), rel=0.01)
    assert out["avg_power_w"] == pytest.approx(exact(t0, t1) / ((t1 - t0) / 1e9), rel=0.01)
    for name, (a, b) in phases.items():
        assert out["phases"][name]["energy_j"] == pytest.approx(exact(a, b), rel=0.01), name
    assert out["j_per_token"] == pytest.approx(exact(*phases["decode"]) / 32, rel=0.01)
    assert entry["n_samples"] == 37 and entry["rate_hz"] == pytest.approx(37 / 3.676, rel=1e-3)
    assert entry["configured_rate_hz"] == 10.0
    assert any("preprocess: interval (50.0 ms) shorter than one sample interval" in w for w in out["warnings"])
    # peak memory in the window (it grows with time in this source)
    assert out["peak_mb"]["test_power/rss"] == pytest.approx(100.0 + (t_first + ns(4.2)) / 1e9)


def test_counter_source_uses_counter_deltas_across_a_wrap(fake_clock: FakeClock) -> None:
    t_first = fake_clock()
    src = FunctionCounterSource(fake_clock, max_range_uj=5_000_000.0, t0_s=t_first / 1e9)  # wraps every ~1.2 s
    sampler = Sampler([src], rate_hz=10.0, clock=fake_clock)
    drive(sampler, fake_clock, 4.0, 10.0)
    t0, t1 = t_first + ns(0.45), t_first + ns(3.77)
    out = sampler.window(t0, t1, {"decode": (t0 + ns(1.0), t1)}, n_output_tokens=11)
    entry = out["sources"]["test_counter"]
    assert entry["method"] == "counter"  # its power_w reads a bogus 999 W
    exact = energy_between(t0 / 1e9, t1 / 1e9)
    assert exact > 10.0  # more than two wraps of the 5 J counter
    assert out["energy_j"] == pytest.approx(exact, rel=0.01)
    assert entry["phases"]["decode"]["energy_j"] == pytest.approx(energy_between((t0 + ns(1.0)) / 1e9, t1 / 1e9),
                                                                  rel=0.01)
    assert entry["sampled_avg_power_w"] == pytest.approx(999.0)
    assert out["j_per_token"] == pytest.approx(entry["phases"]["decode"]["energy_j"] / 10)
    trace = sampler.window(t0, t1, {}, include_trace=True)["power_trace"]  # counter -> power between samples
    for t_ms, watts in zip(trace["t_ms"], trace["power_w"]):
        assert watts == pytest.approx(power_at((t0 + ns(t_ms / 1000)) / 1e9), abs=0.05)


def test_idle_and_energy_above_idle(fake_clock: FakeClock) -> None:
    level = {"w": 3.0}
    src = FunctionPowerSource(fake_clock, fn=lambda t: level["w"])
    sampler = Sampler([src], rate_hz=10.0, clock=fake_clock)
    t_idle = fake_clock()
    drive(sampler, fake_clock, 2.0, 10.0)
    idle = sampler.idle_between(t_idle, t_idle + ns(2.0))
    assert idle["idle_power_w"] == pytest.approx(3.0) and idle["power_source"] == "test_power"
    level["w"] = 8.0
    fake_clock.advance(0.1)
    t0 = fake_clock()
    drive(sampler, fake_clock, 2.0, 10.0)
    out = sampler.window(t0, t0 + ns(2.0), {"decode": (t0, t0 + ns(2.0))}, n_output_tokens=21,
                         include_trace=True)
    assert out["energy_j"] == pytest.approx(16.0)
    trace = out["power_trace"]
    assert trace["t_ms"][:2] == [pytest.approx(-100.0), 0.0] and trace["power_w"][:2] == [3.0, 8.0]
    assert set(trace["power_w"][1:]) == {8.0} and len(trace["t_ms"]) == 22
    assert out["idle_power_w"] == pytest.approx(3.0)
    assert out["energy_above_idle_j"] == pytest.approx(10.0)
    assert out["j_per_token"] == pytest.approx(0.8) and out["j_per_token_above_idle"] == pytest.approx(0.5)


def test_window_edge_cases(fake_clock: FakeClock) -> None:
    src = FunctionPowerSource(fake_clock)
    sampler = Sampler([src], rate_hz=10.0, clock=fake_clock)
    t_first = fake_clock()
    drive(sampler, fake_clock, 1.0, 10.0)
    out = sampler.window(t_first + ns(0.2), t_first + ns(0.8),
                         {"decode": (None, t_first), "prefill": (t_first + ns(0.5), t_first + ns(0.4))},
                         n_output_tokens=None)
    text = " | ".join(out["warnings"])
    assert "phase 'decode' has no (start, end)" in text and "phase 'prefill' ends before it starts" in text
    assert out["j_per_token"] is None and out["energy_j"] is not None
    # a window long after the trace: no numbers, warnings instead
    late = sampler.window(t_first + ns(60), t_first + ns(61), {}, 5)
    assert late["energy_j"] is None and late["power_source"] is None
    assert any("no power or energy figure" in w for w in late["warnings"])
    json.dumps(late, allow_nan=False)


def test_failing_source_is_a_warning_not_a_crash(fake_clock: FakeClock) -> None:
    class Broken(TelemetrySource):
        kinds = ("power",)

        def read(self):
            raise OSError(5, "Input/output error")

    class Weird(TelemetrySource):
        kinds = ("power",)

        def read(self):
            return {"power_w": float("nan"), "temp_c:x": "hot"}

    sampler = Sampler([Broken({"label": "broken"}), Weird({"label": "weird"})], clock=fake_clock)
    t0 = fake_clock()
    drive(sampler, fake_clock, 0.5, 10.0)
    out = sampler.window(t0, fake_clock(), {}, None)
    text = " | ".join(out["warnings"])
    assert "broken: read failed: Input/output error" in text
    assert "power_w: not a finite number (nan), dropped" in text
    assert out["energy_j"] is None
    json.dumps(out, allow_nan=False)


def test_trace_is_bounded(fake_clock: FakeClock) -> None:
    sampler = Sampler([FunctionPowerSource(fake_clock)], rate_hz=10.0, clock=fake_clock, max_samples=50)
    t_first = fake_clock()
    drive(sampler, fake_clock, 10.0, 10.0)
    assert 40 <= len(sampler.trace("test_power")) <= 50
    out = sampler.window(t_first, t_first + ns(1.0), {}, None)
    assert any("trace bounded" in w for w in out["warnings"])


def test_slow_sources_keep_their_own_interval(tmp_path: Path, fake_clock: FakeClock) -> None:
    root = write_tree(tmp_path, SYS)
    sources, _ = build_sources([{"source": "thermal"}, {"source": "cpufreq", "interval_s": 0.5}], root=str(root))
    sampler = Sampler(sources, rate_hz=10.0, clock=fake_clock)
    drive(sampler, fake_clock, 3.0, 10.0)
    assert len(sampler.trace("thermal")) == 4  # 1 s interval over 3 s
    assert len(sampler.trace("cpufreq")) == 7


def test_real_thread_on_the_real_clock() -> None:
    """The background thread at 50 Hz: energy of a linear ramp within 1%, and the achieved rate."""

    class Ramp(TelemetrySource):
        kinds = ("power",)

        def __init__(self) -> None:
            super().__init__({"label": "ramp"})
            self.t0 = time.perf_counter_ns()

        def read(self):
            return {"power_w": 2.0 + 5.0 * (time.perf_counter_ns() - self.t0) / 1e9}

    src = Ramp()
    with Sampler([src], rate_hz=50.0) as sampler:
        idle = sampler.measure_idle(0.2)
        t0 = time.perf_counter_ns()
        time.sleep(0.4)
        t1 = time.perf_counter_ns()
        out = sampler.window(t0, t1, {"decode": (t0, t1)}, n_output_tokens=5)
        stats = sampler.stats()
    a, b = (t0 - src.t0) / 1e9, (t1 - src.t0) / 1e9
    exact = 2.0 * (b - a) + 2.5 * (b * b - a * a)
    assert out["energy_j"] == pytest.approx(exact, rel=0.01)
    assert idle["idle_power_w"] is not None and idle["idle_power_w"] < out["avg_power_w"]
    assert 25 <= out["sources"]["ramp"]["rate_hz"] <= 55
    assert stats["ticks"] >= 20 and not sampler.running


def test_snapshot_and_throttle_flags(tmp_path: Path) -> None:
    root = write_tree(tmp_path, SYS)
    sources, _ = build_sources([{"source": "thermal"}, {"source": "cpufreq"}], root=str(root))
    sampler = Sampler(sources)
    before = sampler.snapshot()
    assert before["temps_c"]["thermal/x86_pkg_temp"] == 52.5
    assert before["clocks_mhz"]["cpufreq/cpu0"] == pytest.approx(1190.4)
    assert before["governors"] == {"cpufreq/cpu0": "performance", "cpufreq/cpu1": "performance"}
    json.dumps(before, allow_nan=False)
    (root / "sys/class/thermal/thermal_zone1/temp").write_text("97000\n")
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq").write_text("1190400\n")
    after = sampler.snapshot()
    flags = throttle_flags(before, after, {"governor": "performance", "nvpmodel": "MAXN"})
    text = "\n".join(flags)
    # cpu0 runs below its max under the performance governor
    assert "clock cpufreq/cpu0 at 1190 MHz, below its max 1728 MHz before the measurement" in text
    assert "temperature thermal/x86_pkg_temp 97.0 C after the measurement" in text
    assert "max clock of cpufreq/cpu1 lowered from 1728 to 1190 MHz" in text
    assert "nvpmodel not verified before the measurement (expected 'MAXN')" in text
    assert len(flags) == len(set(flags))


def test_throttle_flags_power_mode_and_gpu_reasons() -> None:
    good = {"power_mode": {"nvpmodel": "MAXN", "jetson_clocks": True}, "governors": {"c/cpu0": "schedutil"},
            "clocks_mhz": {"jm/gpu": 1300.5}, "clocks_max_mhz": {"jm/gpu": 1300.5}, "temps_c": {"t/tj": 60.0}}
    assert throttle_flags(good, good, {"nvpmodel": "MAXN", "jetson_clocks": True}) == []
    after = json.loads(json.dumps(good))
    after["power_mode"]["nvpmodel"] = "15W"
    after["clocks_mhz"]["jm/gpu"] = 306.0  # jetson_clocks on: the GPU should stay at max
    after["throttle_reasons"] = {"nvml/gpu0": ["hw_thermal_slowdown"]}
    flags = throttle_flags(good, after, {"nvpmodel": "MAXN"})
    assert "nvpmodel was '15W' after the measurement, expected 'MAXN'" in flags
    assert any("clock jm/gpu at 306 MHz, below its max 1300 MHz after" in f for f in flags)
    assert any("nvml/gpu0 clocks limited by hw_thermal_slowdown after" in f for f in flags)
    # schedutil at idle below max is not throttling when nothing asks for pinned clocks
    idle = {"governors": {"c/cpu0": "schedutil"}, "clocks_mhz": {"c/cpu0": 729.6}, "clocks_max_mhz": {"c/cpu0": 2201.6}}
    assert throttle_flags(idle, idle, {}) == []
    assert throttle_flags({}, {}, None) == []
