"""NVIDIA desktop/server GPUs through NVML (nvidia-ml-py, imported as ``pynvml`` when built)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .base import CounterUnwrapper, SourceConfigError, SourceUnavailable, TelemetrySource, Values, register_source, short_error

NVML_HINT = "install nvidia-ml-py (pip install nvidia-ml-py)"
# NVML constants (stable across releases); the module's own values are used when it has them.
_CLOCK_SM, _CLOCK_MEM, _TEMPERATURE_GPU = 1, 2, 0
#: clocks-event (throttle) reason bits that mean the GPU ran slower than asked
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}


def throttle_reason_names(mask: int) -> List[str]:
    return [name for bit, name in sorted(THROTTLE_BITS.items()) if mask & bit]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@register_source("nvml")
class NvmlSource(TelemetrySource):
    """One GPU: the total-energy counter (mJ) when supported, else sampled power; memory used
    (includes the CUDA context), SM/memory clocks, temperature, utilisation, throttle reasons."""

    kinds = ("energy", "power", "memory", "temperature", "clock", "utilization")
    options = {"index": 0}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        try:
            index = int(self.config.get("index") or 0)
        except (TypeError, ValueError):
            raise SourceConfigError("index must be a GPU number, got %r" % (self.config.get("index"),))
        try:
            import pynvml  # type: ignore  # optional: pip install nvidia-ml-py
        except ImportError:
            raise SourceUnavailable("pynvml is not importable: " + NVML_HINT)
        self.nv = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            raise SourceUnavailable("NVML could not initialise (%s): is the NVIDIA driver loaded? "
                                    "(NVML does not work on Jetson: use the jtop source)" % short_error(exc))
        self._initialised = True
        try:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            self.close()
            raise SourceUnavailable("no NVIDIA GPU with index %d (%s)" % (index, short_error(exc)))
        self.index = index
        self.clock_sm = getattr(pynvml, "NVML_CLOCK_SM", _CLOCK_SM)
        self.clock_mem = getattr(pynvml, "NVML_CLOCK_MEM", _CLOCK_MEM)
        self.temp_gpu = getattr(pynvml, "NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU)
        self.gpu_name = self._try(lambda: _text(pynvml.nvmlDeviceGetName(self.handle)), "name") or "unknown"
        self.driver = self._try(lambda: _text(pynvml.nvmlSystemGetDriverVersion()), "driver version") or "unknown"
        self._energy = CounterUnwrapper(None)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.counter = True
        except Exception as exc:
            self.counter = False
            self.setup_warnings.append(
                "nvmlDeviceGetTotalEnergyConsumption not supported on %s (%s): power is sampled from "
                "nvmlDeviceGetPowerUsage, a ~1 s average on Ampere and newer" % (self.gpu_name, short_error(exc)))
        self.drain_warnings()
        self.covers = "GPU board power of %s (NVML %s)" % (
            self.gpu_name, "total-energy counter" if self.counter else "power readings")

    def _try(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.warn("NVML %s unreadable: %s" % (what, short_error(exc)))
            return None

    def read(self) -> Values:
        nv, h = self.nv, self.handle
        values: Values = {}
        if self.counter:
            mj = self._try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h), "total energy")
            total = self._energy.update(float(mj)) if mj is not None else None
            if mj is not None and total is None:
                self.warn("NVML energy counter went backwards (driver reloaded?): sample dropped")
            values["energy_j"] = total / 1000.0 if total is not None else None
        mw = self._try(lambda: nv.nvmlDeviceGetPowerUsage(h), "power")
        values["power_w"] = float(mw) / 1000.0 if mw is not None else None
        mem = self._try(lambda: nv.nvmlDeviceGetMemoryInfo(h), "memory")
        values["mem_mb:gpu_used"] = float(mem.used) / 2 ** 20 if mem is not None else None
        sm = self._try(lambda: nv.nvmlDeviceGetClockInfo(h, self.clock_sm), "SM clock")
        values["clock_mhz:sm"] = float(sm) if sm is not None else None
        memclk = self._try(lambda: nv.nvmlDeviceGetClockInfo(h, self.clock_mem), "memory clock")
        values["clock_mhz:mem"] = float(memclk) if memclk is not None else None
        temp = self._try(lambda: nv.nvmlDeviceGetTemperature(h, self.temp_gpu), "temperature")
        values["temp_c:gpu"] = float(temp) if temp is not None else None
        util = self._try(lambda: nv.nvmlDeviceGetUtilizationRates(h), "utilisation")
        values["util_pct:gpu"] = float(util.gpu) if util is not None else None
        return values

    def snapshot(self) -> Dict[str, Any]:
        snap = super().snapshot()
        nv, h = self.nv, self.handle
        for key, clock in (("sm", self.clock_sm), ("mem", self.clock_mem)):
            mx = self._try(lambda: nv.nvmlDeviceGetMaxClockInfo(h, clock), "max %s clock" % key)
            if mx is not None:
                snap["clock_hw_max_mhz:" + key] = float(mx)
        getter = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        if getter is not None:
            mask = self._try(lambda: getter(h), "clock event reasons")
            if mask is not None:
                snap["throttle:gpu%d" % self.index] = throttle_reason_names(int(mask))
        return snap

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"gpu": self.gpu_name, "index": self.index, "driver": self.driver,
                     "energy": "nvmlDeviceGetTotalEnergyConsumption (mJ counter, updated every 20-100 ms)"
                     if self.counter else "trapezoid over nvmlDeviceGetPowerUsage",
                     "memory": "NVML used (includes the CUDA context; torch's max_memory_allocated does not)"})
        try:
            from importlib import metadata  # Python >= 3.8

            info["nvidia_ml_py"] = metadata.version("nvidia-ml-py")
        except Exception:
            pass
        limit = self._try(lambda: self.nv.nvmlDeviceGetPowerManagementLimit(self.handle), "power limit")
        if limit is not None:
            info["power_limit_w"] = float(limit) / 1000.0
        self.drain_warnings()
        return info

    def close(self) -> None:
        if getattr(self, "_initialised", False):
            self._initialised = False
            try:
                self.nv.nvmlShutdown()
            except Exception:
                pass
