"""One background thread samples every source; windows turn the trace into per-query figures.

All timestamps come from one clock (``time.perf_counter_ns`` by default, the runner's phase
clock). Power-sampled sources are integrated with the trapezoid rule, counter sources
(RAPL, NVML energy) by counter deltas; both interpolate at window and phase boundaries.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .base import TIMESTAMP_KEY, Clock, TelemetrySource, short_error
from .integrate import Integral, Point, counter_delta, integrate_power, max_in

#: sources whose figures are per-query (the sampler waits for a sample after the window's end)
_WINDOW_KINDS = ("power", "energy", "memory")
_MAX_WAIT_S = 3.0


@dataclass
class Sample:
    t_ns: int
    values: Dict[str, Optional[float]]
    warnings: Tuple[str, ...] = ()


class _Trace:
    """Samples of one source in time order, bounded (the oldest are dropped)."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.times: List[int] = []
        self.samples: List[Sample] = []
        self.dropped = 0

    def append(self, sample: Sample) -> bool:
        if self.times and sample.t_ns <= self.times[-1]:
            return False  # the same reading again (sources that time their own data), or out of order
        self.times.append(sample.t_ns)
        self.samples.append(sample)
        if len(self.samples) > self.max_samples:
            cut = len(self.samples) - self.max_samples + max(1, self.max_samples // 10)
            del self.times[:cut]
            del self.samples[:cut]
            self.dropped += cut
        return True

    def around(self, t_start: int, t_end: int) -> List[Sample]:
        """Samples in [t_start, t_end] plus the neighbour on each side."""
        lo = max(0, bisect_left(self.times, t_start) - 1)
        hi = min(len(self.samples), bisect_right(self.times, t_end) + 1)
        return self.samples[lo:hi]


def _finite(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if not (math.isnan(number) or math.isinf(number)) else None


def _series(samples: Sequence[Sample], key: str) -> List[Point]:
    out: List[Point] = []
    for s in samples:
        v = s.values.get(key)
        if v is not None:
            out.append((s.t_ns, float(v)))
    return out


def _channel(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else "total"


class Sampler:
    """Samples ``sources`` at ``rate_hz`` on ``clock`` in one daemon thread; keeps a bounded trace."""

    def __init__(
        self,
        sources: Sequence[TelemetrySource],
        rate_hz: float = 10.0,
        clock: Clock = time.perf_counter_ns,
        max_samples: int = 20000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_hz or rate_hz <= 0:
            raise ValueError("rate_hz must be > 0, got %r" % (rate_hz,))
        self.sources = list(sources)
        self.rate_hz = float(rate_hz)
        self.period_ns = int(round(1e9 / self.rate_hz))
        self.clock = clock
        self._sleep = sleep
        seen: Dict[str, int] = {}
        for src in self.sources:
            src.clock = clock
            seen[src.label] = seen.get(src.label, 0) + 1
            if seen[src.label] > 1:  # two sources of one name would share a trace
                src.label = "%s#%d" % (src.label, seen[src.label])
        self.errors: List[str] = []
        self._traces: Dict[str, _Trace] = {s.label: _Trace(max_samples) for s in self.sources if s.sampled}
        self._last_read: Dict[str, int] = {}
        self._lock = threading.Lock()  # the traces
        self._read_lock = threading.Lock()  # one source read at a time (thread vs snapshot)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.idle: Dict[str, Dict[str, Any]] = {}
        self.n_ticks = 0
        self.n_overruns = 0
        self.busy_ns = 0
        self._started_ns: Optional[int] = None

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._started_ns = self.clock()
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)

    def close(self) -> None:
        """Stop and release every source."""
        self.stop()
        for src in self.sources:
            try:
                src.close()
            except Exception:
                pass

    def __enter__(self) -> "Sampler":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self) -> None:
        next_t = self.clock()
        while not self._stop.is_set():
            t0 = self.clock()
            try:
                self.sample_once()
            except Exception as exc:  # a bug must not silently end sampling
                if len(self.errors) < 20:
                    self.errors.append("sampler tick failed: %s" % short_error(exc))
            now = self.clock()
            self.busy_ns += now - t0
            self.n_ticks += 1
            next_t += self.period_ns
            if now >= next_t:  # a slow read: skip the ticks it ate instead of bursting
                missed = (now - next_t) // self.period_ns + 1
                self.n_overruns += missed
                next_t += missed * self.period_ns
            self._stop.wait((next_t - now) / 1e9)

    def _source_period_ns(self, src: TelemetrySource) -> int:
        if src.interval_s:
            return max(self.period_ns, int(src.interval_s * 1e9))
        return self.period_ns

    def sample_once(self) -> None:
        """Read every due source once and store the samples (the thread calls this each tick)."""
        for src in self.sources:
            if not src.sampled:
                continue
            label = src.label
            now = self.clock()
            last = self._last_read.get(label)
            if src.interval_s and last is not None and now - last < src.interval_s * 1e9 - self.period_ns // 2:
                continue
            with self._read_lock:
                t0 = self.clock()
                try:
                    values: Dict[str, Any] = dict(src.read())
                except Exception as exc:
                    values = {}
                    src.warn("read failed: %s" % short_error(exc))
                t1 = self.clock()
                warnings = src.drain_warnings()
            self._last_read[label] = t0
            stamp = values.pop(TIMESTAMP_KEY, None)
            t = int(stamp) if isinstance(stamp, int) and not isinstance(stamp, bool) else (t0 + t1) // 2
            clean: Dict[str, Optional[float]] = {}
            for key, value in values.items():
                number = _finite(value)
                if number is None and value is not None:
                    warnings.append("%s: not a finite number (%r), dropped" % (key, value))
                clean[key] = number
            if not clean and not warnings:
                continue
            with self._lock:
                self._traces[label].append(Sample(t, clean, tuple(warnings)))

    @property
    def wants_phases(self) -> bool:
        """Some source must be told the query's phases (an emulated power source)."""
        return any(src.phase_aware for src in self.sources)

    def mark_phase(self, phase: str) -> None:
        """Tell phase-aware sources that ``phase`` begins ("idle" after a query), and record one
        sample of each at that instant, so a piecewise power curve is integrated exactly at the
        boundary instead of interpolated across it."""
        for src in self.sources:
            if not src.phase_aware:
                continue
            src.on_phase(phase)
            if not src.sampled or src.label not in self._traces:
                continue
            with self._read_lock:
                values: Dict[str, Any] = dict(src.read())
            stamp = values.pop(TIMESTAMP_KEY, None)
            t = int(stamp) if isinstance(stamp, int) and not isinstance(stamp, bool) else self.clock()
            clean = {key: _finite(value) for key, value in values.items()}
            with self._lock:
                self._traces[src.label].append(Sample(t, clean, ()))

    def trace(self, label: str) -> List[Sample]:
        """A copy of one source's trace (for plots of power over time)."""
        with self._lock:
            trace = self._traces.get(label)
            return list(trace.samples) if trace else []

    # -- figures ------------------------------------------------------------------------------------
    def _wait_covered(self, t_end: int) -> None:
        """With the thread running, wait (bounded) until each per-query source has a sample after t_end."""
        if not self.running:
            return
        waits = [(s.label, self._source_period_ns(s)) for s in self.sources
                 if s.sampled and any(k in _WINDOW_KINDS for k in s.kinds)]
        if not waits:
            return
        deadline = self.clock() + min(int(_MAX_WAIT_S * 1e9), max(int(1.5 * p) + 50000000 for _, p in waits))
        while True:
            with self._lock:
                pending = [label for label, _ in waits
                           if not self._traces[label].times or self._traces[label].times[-1] < t_end]
            if not pending or self.clock() >= deadline or not self.running:
                return
            self._sleep(self.period_ns / 4e9)

    def _samples(self, label: str, t_start: int, t_end: int) -> Tuple[List[Sample], int]:
        with self._lock:
            trace = self._traces[label]
            oldest = trace.times[0] if trace.times else None
            return trace.around(t_start, t_end), (trace.dropped if oldest is not None and oldest > t_start else 0)

    def _energy(self, src: TelemetrySource, samples: List[Sample], t0: int, t1: int) -> Tuple[Optional[str], Optional[Integral]]:
        keys = set()
        for s in samples:
            keys.update(s.values)
        if src.counter and "energy_j" in keys:
            key = "energy_j"
        elif "power_w" in keys:
            key = "power_w"
        elif "energy_j" in keys:
            key = "energy_j"
        else:
            return None, None
        fn = counter_delta if key == "energy_j" else integrate_power
        return key, fn(_series(samples, key), t0, t1, self._max_extrapolate(src, samples))

    def _max_extrapolate(self, src: TelemetrySource, samples: Sequence[Sample]) -> int:
        gaps = sorted(b.t_ns - a.t_ns for a, b in zip(samples, samples[1:]))
        typical = gaps[len(gaps) // 2] if gaps else 0
        return 2 * max(self._source_period_ns(src), typical)

    def idle_between(self, t_start_ns: int, t_end_ns: int) -> Dict[str, Any]:
        """Idle power per source over [t_start_ns, t_end_ns]; remembered for energy above idle."""
        out: Dict[str, Any] = {"t_start_ns": t_start_ns, "t_end_ns": t_end_ns,
                               "duration_s": (t_end_ns - t_start_ns) / 1e9, "sources": {}}
        primary = None
        for src in self.sources:
            if not src.sampled:
                continue
            samples, _ = self._samples(src.label, t_start_ns, t_end_ns)
            key, q = self._energy(src, samples, t_start_ns, t_end_ns)
            if key is None or q is None:
                continue
            entry = {"idle_power_w": q.avg_power_w, "energy_j": q.energy_j, "n_samples": q.n_samples,
                     "method": q.method, "covers": src.covers, "warnings": list(q.warnings)}
            self.idle[src.label] = entry
            out["sources"][src.label] = entry
            if primary is None and q.avg_power_w is not None:
                primary = src.label
        out["power_source"] = primary
        out["idle_power_w"] = out["sources"][primary]["idle_power_w"] if primary else None
        return out

    def measure_idle(self, duration_s: float) -> Dict[str, Any]:
        """Sample for ``duration_s`` with nothing running; idle power per source (kept for windows)."""
        started_here = not self.running
        if started_here:
            self.start()
        try:
            t0 = self.clock()
            self._sleep(duration_s)
            t1 = self.clock()
            self._wait_covered(t1)
            return self.idle_between(t0, t1)
        finally:
            if started_here:
                self.stop()

    def window(
        self,
        t_start_ns: int,
        t_end_ns: int,
        phases: Dict[str, Tuple[int, int]],
        n_output_tokens: Optional[int] = None,
        include_trace: bool = False,
    ) -> Dict[str, Any]:
        """JSON-serialisable power, energy and memory summary of one query and its phases.

        ``include_trace`` adds ``power_trace`` (the power source's samples in the window, times in ms
        from ``t_start_ns``; counters as power between consecutive samples) for power-over-time plots.
        """
        warnings: List[str] = []
        self._wait_covered(t_end_ns)
        duration_s = (t_end_ns - t_start_ns) / 1e9
        if t_end_ns <= t_start_ns:
            warnings.append("query window is empty or reversed (%d ns)" % (t_end_ns - t_start_ns))
        spans: Dict[str, Tuple[int, int]] = {}
        for name, span in (phases or {}).items():
            try:
                a, b = int(span[0]), int(span[1])
            except (TypeError, ValueError, IndexError):
                warnings.append("phase %r has no (start, end) timestamps: %r" % (name, span))
                continue
            if b < a:
                warnings.append("phase %r ends before it starts" % name)
                continue
            if a < t_start_ns or b > t_end_ns:
                warnings.append("phase %r extends outside the query window" % name)
            spans[name] = (a, b)
        tokens = n_output_tokens - 1 if n_output_tokens is not None else None
        out: Dict[str, Any] = {
            "t_start_ns": t_start_ns, "t_end_ns": t_end_ns, "duration_s": duration_s,
            "n_output_tokens": n_output_tokens, "power_source": None, "power_covers": None,
            "energy_j": None, "avg_power_w": None, "idle_power_w": None, "energy_above_idle_j": None,
            "j_per_token": None, "j_per_token_above_idle": None, "phases": {}, "peak_mb": {},
            "sources": {}, "warnings": warnings,
        }
        for src in self.sources:
            if not src.sampled:
                continue
            entry = self._source_window(src, t_start_ns, t_end_ns, spans, tokens)
            out["sources"][src.label] = entry
            for chan, mb in entry.get("peak_mb", {}).items():
                out["peak_mb"]["%s/%s" % (src.label, chan)] = mb
            if out["power_source"] is None and entry.get("energy_j") is not None:
                out["power_source"] = src.label
                out["power_covers"] = src.covers
                for key in ("energy_j", "avg_power_w", "idle_power_w", "energy_above_idle_j", "j_per_token",
                            "j_per_token_above_idle", "phases"):
                    out[key] = entry.get(key)
            for message in entry.get("warnings", []):
                warnings.append("%s: %s" % (src.label, message))
        warnings.extend(self.errors)
        if out["power_source"] is None:
            warnings.append("no power or energy figure for this query: no working power/energy source "
                            "(boards without a sensor, like the AX650N, need a meter_command or meter_serial source)")
        elif include_trace:
            out["power_trace"] = self._power_trace(out["power_source"], t_start_ns, t_end_ns)
        if "decode" in spans and n_output_tokens is None:
            warnings.append("n_output_tokens not given: no j_per_token")
        elif "decode" in spans and n_output_tokens < 2:
            warnings.append("j_per_token needs at least two output tokens")
        elif spans and "decode" not in spans and n_output_tokens is not None:
            warnings.append("no 'decode' phase: no j_per_token")
        return out

    def _power_trace(self, label: str, t0: int, t1: int) -> Dict[str, Any]:
        src = next(s for s in self.sources if s.label == label)
        samples, _ = self._samples(label, t0, t1)
        key, _ = self._energy(src, samples, t0, t1)
        t_ms: List[float] = []
        watts: List[float] = []
        series = _series(samples, key or "power_w")
        if key == "energy_j":
            for (ta, ea), (tb, eb) in zip(series, series[1:]):
                if tb > ta:
                    t_ms.append(((ta + tb) / 2.0 - t0) / 1e6)
                    watts.append((eb - ea) / ((tb - ta) / 1e9))
        else:
            for t, w in series:
                t_ms.append((t - t0) / 1e6)
                watts.append(w)
        return {"source": label, "t_ms": t_ms, "power_w": watts}

    def _source_window(self, src: TelemetrySource, t0: int, t1: int, spans: Dict[str, Tuple[int, int]],
                       decode_tokens: Optional[int]) -> Dict[str, Any]:
        samples, dropped = self._samples(src.label, t0, t1)
        duration_s = (t1 - t0) / 1e9
        inside = [s for s in samples if t0 <= s.t_ns <= t1]
        entry: Dict[str, Any] = {
            "source": src.name, "covers": src.covers, "n_samples": len(inside),
            "rate_hz": len(inside) / duration_s if duration_s > 0 else None,
            "configured_rate_hz": 1e9 / self._source_period_ns(src),
            "max_gap_ms": None,
        }
        warnings: List[str] = []
        if dropped:
            warnings.append("trace bounded: %d older samples were dropped before this window" % dropped)
        gaps = [b.t_ns - a.t_ns for a, b in zip(samples, samples[1:])]
        if gaps:
            entry["max_gap_ms"] = max(gaps) / 1e6
            if max(gaps) > 3 * self._source_period_ns(src) and len(samples) > 2:
                warnings.append("sampling gap of %.0f ms around this window (expected %.0f ms)"
                                % (max(gaps) / 1e6, self._source_period_ns(src) / 1e6))
        key, q = self._energy(src, samples, t0, t1)
        if key is not None and q is not None:
            unread = sum(1 for s in inside if key in s.values and s.values[key] is None)
            if unread:
                warnings.append("%d of %d samples had no %s reading" % (unread, len(inside), key))
            max_extra = self._max_extrapolate(src, samples)
            fn = counter_delta if key == "energy_j" else integrate_power
            series = _series(samples, key)
            idle = (self.idle.get(src.label) or {}).get("idle_power_w")

            def above(energy: Optional[float], seconds: float) -> Optional[float]:
                return energy - idle * seconds if energy is not None and idle is not None else None

            entry.update({"method": q.method, "energy_j": q.energy_j, "avg_power_w": q.avg_power_w,
                          "idle_power_w": idle, "energy_above_idle_j": above(q.energy_j, q.duration_s)})
            warnings.extend("query: " + w for w in q.warnings)
            phases_out: Dict[str, Any] = {}
            for name, (a, b) in spans.items():
                p = fn(series, a, b, max_extra)
                phases_out[name] = {"duration_s": p.duration_s, "energy_j": p.energy_j,
                                    "avg_power_w": p.avg_power_w, "energy_above_idle_j": above(p.energy_j, p.duration_s),
                                    "n_samples": p.n_samples}
                warnings.extend("%s: %s" % (name, w) for w in p.warnings)
            entry["phases"] = phases_out
            decode = phases_out.get("decode")
            if decode and decode_tokens and decode_tokens > 0 and decode["energy_j"] is not None:
                entry["j_per_token"] = decode["energy_j"] / decode_tokens
                above_idle = decode["energy_above_idle_j"]
                entry["j_per_token_above_idle"] = above_idle / decode_tokens if above_idle is not None else None
            else:
                entry["j_per_token"] = entry["j_per_token_above_idle"] = None
            if key == "energy_j" and any("power_w" in s.values for s in samples):
                sampled = integrate_power(_series(samples, "power_w"), t0, t1, max_extra)
                entry["sampled_avg_power_w"] = sampled.avg_power_w
            channels: Dict[str, Any] = {}
            all_keys = sorted({k for s in samples for k in s.values})
            for k in all_keys:
                if k.startswith("power_w:") or k.startswith("energy_j:"):
                    cfn = counter_delta if k.startswith("energy_j") else integrate_power
                    c = cfn(_series(samples, k), t0, t1, max_extra)
                    channels[_channel(k)] = {"energy_j": c.energy_j, "avg_power_w": c.avg_power_w}
            if channels:
                entry["channels"] = channels
        all_keys = sorted({k for s in samples for k in s.values})
        peaks = {}
        for k in all_keys:
            if k.startswith("mem_mb"):
                peak, n = max_in(_series(samples, k), t0, t1)
                peaks[_channel(k)] = peak
        if peaks:
            entry["peak_mb"] = peaks
        temps = {_channel(k): max_in(_series(samples, k), t0, t1)[0] for k in all_keys if k.startswith("temp_c")}
        if temps:
            entry["max_temp_c"] = temps
        utils = {}
        for k in all_keys:
            if k.startswith("util_pct"):
                utils[_channel(k)] = integrate_power(_series(samples, k), t0, t1,
                                                     self._max_extrapolate(src, samples)).avg_power_w
        if utils:
            entry["avg_util_pct"] = utils
        counts = Counter(w for s in samples for w in s.warnings)
        for message, n in sorted(counts.items()):
            warnings.append(message if n == 1 else "%s (%d samples)" % (message, n))
        if not samples:
            warnings.append("no samples")
        entry["warnings"] = warnings
        return entry

    def snapshot(self) -> Dict[str, Any]:
        """Temperatures, clocks, governors and power mode right now, from every source."""
        snap: Dict[str, Any] = {"t_ns": self.clock(), "temps_c": {}, "clocks_mhz": {}, "clocks_max_mhz": {},
                                "clocks_hw_max_mhz": {}, "governors": {}, "power_mode": {}, "throttle_reasons": {},
                                "other": {}, "warnings": []}
        routes = {"temp_c": "temps_c", "clock_mhz": "clocks_mhz", "clock_max_mhz": "clocks_max_mhz",
                  "clock_hw_max_mhz": "clocks_hw_max_mhz", "governor": "governors", "throttle": "throttle_reasons"}
        for src in self.sources:
            with self._read_lock:
                try:
                    values = src.snapshot()
                except Exception as exc:
                    values = {}
                    src.warn("snapshot failed: %s" % short_error(exc))
                problems = src.drain_warnings()
            snap["warnings"].extend("%s: %s" % (src.label, w) for w in problems)
            for key, value in values.items():
                if key == TIMESTAMP_KEY:
                    continue
                quantity, _, chan = key.partition(":")
                if quantity == "power_mode":
                    if chan in snap["power_mode"] and snap["power_mode"][chan] != value:
                        snap["warnings"].append("%s: %s=%r disagrees with %r from another source"
                                                % (src.label, chan, value, snap["power_mode"][chan]))
                        continue
                    snap["power_mode"].setdefault(chan, value)
                elif quantity in routes:
                    if quantity in ("temp_c", "clock_mhz", "clock_max_mhz", "clock_hw_max_mhz"):
                        value = _finite(value)
                    snap[routes[quantity]]["%s/%s" % (src.label, chan)] = value
                else:
                    snap["other"]["%s/%s" % (src.label, key)] = value
        return snap

    # -- provenance ---------------------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        elapsed = (self.clock() - self._started_ns) / 1e9 if self._started_ns is not None else None
        with self._lock:
            counts = {label: len(t.samples) + t.dropped for label, t in self._traces.items()}
        return {"rate_hz": self.rate_hz, "ticks": self.n_ticks, "overruns": self.n_overruns,
                "busy_s": self.busy_ns / 1e9, "elapsed_s": elapsed,
                "achieved_rate_hz": self.n_ticks / elapsed if elapsed else None, "samples": counts,
                "errors": list(self.errors)}

    def describe(self) -> Dict[str, Any]:
        out = []
        for src in self.sources:
            try:
                out.append(src.describe())
            except Exception as exc:
                out.append({"source": src.name, "label": src.label, "error": short_error(exc)})
        return {"rate_hz": self.rate_hz, "clock": "time.perf_counter_ns", "sources": out}


def _as_float(value: Any) -> Optional[float]:
    return _finite(value)


def throttle_flags(before: Dict[str, Any], after: Dict[str, Any], expected: Optional[Dict[str, Any]] = None) -> List[str]:
    """Why a measurement between two snapshots may not be trusted: throttled or in the wrong mode.

    ``expected`` comes from devices.yaml, e.g. {"nvpmodel": "MAXN", "governor": "performance",
    "jetson_clocks": True, "max_temp_c": 85, "clock_tolerance": 0.05}.
    """
    expected = dict(expected or {})
    flags: List[str] = []
    tol = float(expected.get("clock_tolerance", 0.05))
    max_temp = float(expected.get("max_temp_c", 85.0))
    snaps = (("before", before or {}), ("after", after or {}))

    for key in ("nvpmodel", "jetson_clocks"):
        if key not in expected:
            continue
        want = expected[key]
        for when, snap in snaps:
            got = (snap.get("power_mode") or {}).get(key)
            if got is None:
                flags.append("%s not verified %s the measurement (expected %r): no source reported it"
                             % (key, when, want))
            elif str(got).lower() != str(want).lower():
                flags.append("%s was %r %s the measurement, expected %r" % (key, got, when, want))
    if "governor" in expected:
        want = str(expected["governor"])
        for when, snap in snaps:
            governors = snap.get("governors") or {}
            if not governors:
                flags.append("CPU governor not verified %s the measurement (expected %r)" % (when, want))
                continue
            wrong = sorted(name for name, gov in governors.items() if str(gov) != want)
            if wrong:
                flags.append("CPU governor %s on %s %s the measurement, expected %r"
                             % ("/".join(sorted({str(governors[w]) for w in wrong})), ", ".join(wrong), when, want))
    for when, snap in snaps:
        for zone, temp in sorted((snap.get("temps_c") or {}).items()):
            t = _as_float(temp)
            if t is not None and t > max_temp:
                flags.append("temperature %s %.1f C %s the measurement (over %.0f C)" % (zone, t, when, max_temp))
    pinned_all = bool(expected.get("jetson_clocks")) or str(expected.get("governor", "")) == "performance"
    for when, snap in snaps:
        governors = snap.get("governors") or {}
        locked = (snap.get("power_mode") or {}).get("jetson_clocks") is True
        maxes = snap.get("clocks_max_mhz") or {}
        for name, cur in sorted((snap.get("clocks_mhz") or {}).items()):
            c, m = _as_float(cur), _as_float(maxes.get(name))
            if c is None or m is None or m <= 0:
                continue
            pinned = pinned_all or locked or governors.get(name) == "performance"
            if pinned and c < (1.0 - tol) * m:
                flags.append("clock %s at %.0f MHz, below its max %.0f MHz %s the measurement" % (name, c, m, when))
    b_max, a_max = (before or {}).get("clocks_max_mhz") or {}, (after or {}).get("clocks_max_mhz") or {}
    for name in sorted(set(b_max) & set(a_max)):
        b, a = _as_float(b_max[name]), _as_float(a_max[name])
        if b is not None and a is not None and a < (1.0 - tol) * b:
            flags.append("max clock of %s lowered from %.0f to %.0f MHz during the measurement (thermal or power cap)"
                         % (name, b, a))
    for when, snap in snaps:
        for gpu, reasons in sorted((snap.get("throttle_reasons") or {}).items()):
            if reasons:
                flags.append("%s clocks limited by %s %s the measurement" % (gpu, ", ".join(reasons), when))
    seen = set()
    unique = []
    for flag in flags:
        if flag not in seen:
            seen.add(flag)
            unique.append(flag)
    return unique
