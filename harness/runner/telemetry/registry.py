"""Build telemetry sources from config dicts (devices.yaml ``telemetry:``), never raising."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .base import (
    CommandRunner,
    SourceConfigError,
    SourceUnavailable,
    TelemetrySource,
    available_sources,
    short_error,
    source_class,
)

GENERIC = ["memory", "thermal", "cpufreq", "hwmon"]


def _build_one(config: Dict[str, Any], root: str, command_runner: Optional[CommandRunner]) -> Tuple[Optional[TelemetrySource], str]:
    name = config.get("source")
    cls = source_class(name) if isinstance(name, str) else None
    if cls is None:
        return None, "unknown telemetry source %r; known: %s" % (name, ", ".join(available_sources()))
    try:
        return cls(config, root, command_runner), ""
    except SourceUnavailable as exc:
        return None, "telemetry source %r unavailable: %s" % (name, exc)
    except SourceConfigError as exc:
        return None, "telemetry source %r misconfigured: %s" % (name, exc)
    except Exception as exc:  # a bug or an unexpected board: report it, keep the run going
        return None, "telemetry source %r failed to start: %s" % (name, short_error(exc))


def build_sources(
    configs: List[Dict[str, Any]],
    root: str = "/",
    command_runner: Optional[CommandRunner] = None,
) -> Tuple[List[TelemetrySource], List[str]]:
    """Build every configured source; ``(sources, warnings)``.

    A config is ``{"source": NAME, ...options}``. ``"fallback": [NAME or {config}, ...]`` tries the
    next source when one is unavailable (e.g. jtop, then ina3221, then tegrastats); a fallback given
    by name inherits the options it accepts. Unknown or unavailable sources become warnings that
    say what to do; nothing here raises.
    """
    sources: List[TelemetrySource] = []
    warnings: List[str] = []
    labels: Dict[str, int] = {}
    for i, raw in enumerate(configs or []):
        if not isinstance(raw, dict) or not isinstance(raw.get("source"), str):
            warnings.append("telemetry entry #%d has no 'source' name: %r" % (i + 1, raw))
            continue
        config = dict(raw)
        fallbacks = config.pop("fallback", None) or []
        if not isinstance(fallbacks, list):
            fallbacks = [fallbacks]
        chain: List[Dict[str, Any]] = [config]
        for fb in fallbacks:
            if isinstance(fb, dict):
                chain.append(dict(fb))
            elif isinstance(fb, str):
                cls = source_class(fb)
                inherited = {k: v for k, v in config.items()
                             if cls is not None and (k in cls.options or k in ("label", "interval_s"))}
                inherited["source"] = fb
                chain.append(inherited)
            else:
                warnings.append("telemetry fallback %r of %r ignored: give a name or a config" % (fb, config["source"]))
        built: Optional[TelemetrySource] = None
        tried: List[str] = []
        for attempt in chain:
            built, problem = _build_one(attempt, root, command_runner)
            if built is not None:
                break
            tried.append(problem)
        if built is None:
            warnings.extend(tried)
            continue
        if tried:
            warnings.append("using telemetry source %r instead: %s" % (built.name, "; ".join(tried)))
        for message in built.setup_warnings:
            warnings.append("%s: %s" % (built.label, message))
        count = labels.get(built.label, 0) + 1
        labels[built.label] = count
        if count > 1:
            built.label = "%s#%d" % (built.label, count)
        sources.append(built)
    return sources, warnings


def default_configs(device_type: str) -> List[Dict[str, Any]]:
    """A sensible telemetry list per board type of devices.yaml (the power source first)."""
    generic: List[Dict[str, Any]] = [{"source": name} for name in GENERIC]
    kind = (device_type or "").lower()
    if kind in ("orin-nano", "orin-nx", "agx-orin"):
        return [{"source": "jtop", "module": kind, "fallback": ["ina3221", "tegrastats"]},
                {"source": "jetson_mode"}, {"source": "devfreq"}] + generic
    if kind == "ax650n":  # no power sensor: add a meter_command or meter_serial entry in devices.yaml
        return [{"source": "ax650n"}, {"source": "memory", "include_children": True},
                {"source": "thermal"}, {"source": "cpufreq"}]
    if kind in ("upsquared-n", "intel"):
        return [{"source": "rapl"}] + generic
    if kind in ("rtx-pc", "nvidia"):
        return [{"source": "nvml"}, {"source": "rapl"}] + generic
    return generic
