"""Power, energy, memory and thermal telemetry for the runner (standard library only at import).

    sources, warnings = build_sources(spec.telemetry)          # [{"source": "rapl"}, ...]
    sampler = Sampler(sources, rate_hz=10.0)
    sampler.start()
    idle = sampler.measure_idle(5.0)
    before = sampler.snapshot()
    ... run one query, timing its phases with time.perf_counter_ns() ...
    after = sampler.snapshot()
    record = sampler.window(t_start, t_end, {"preprocess": (a, b), ..., "decode": (c, d)}, n_output_tokens)
    flags = throttle_flags(before, after, device_expect)
    sampler.close()

Optional libraries (jtop from jetson-stats, pynvml from nvidia-ml-py, psutil) are imported inside
the source that needs them; without them the source reports itself unavailable.
"""

from __future__ import annotations

from . import ax650n, emulated, generic, jetson, meter, nvml, rapl  # noqa: F401  (register the sources)
from .base import (
    CommandRunner,
    SourceConfigError,
    SourceUnavailable,
    TelemetrySource,
    available_sources,
    register_source,
    run_command,
)
from .registry import GENERIC, build_sources, default_configs
from .sampler import Sample, Sampler, throttle_flags

__all__ = [
    "CommandRunner",
    "GENERIC",
    "Sample",
    "Sampler",
    "SourceConfigError",
    "SourceUnavailable",
    "TelemetrySource",
    "available_sources",
    "build_sources",
    "default_configs",
    "register_source",
    "run_command",
    "throttle_flags",
]
