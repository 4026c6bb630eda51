"""Generic Linux sources: process/system memory, thermal zones, cpufreq, devfreq, hwmon temperatures."""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Dict, Optional, Tuple

from .base import (
    SourceConfigError,
    SourceUnavailable,
    TelemetrySource,
    Values,
    parse_number,
    read_text,
    register_source,
    short_error,
)

# Sources that only feed the throttling guard and the max temperature are read once a second.
SLOW_INTERVAL_S = 1.0


def parse_kb_fields(text: str, wanted: Optional[Tuple[str, ...]] = None) -> Dict[str, float]:
    """``Key:   1234 kB`` lines (/proc/meminfo, /proc/PID/status) -> {Key: kB}; only ``wanted`` keys
    if given (cheap: this runs at the sampling rate)."""
    out: Dict[str, float] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep or (wanted is not None and key not in wanted):
            continue
        parts = rest.split()
        if parts and parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 20 and (len(parts) == 1 or (len(parts) == 2 and parts[1] == "kB")):
            out[key] = float(parts[0])
            if wanted is not None and len(out) == len(wanted):
                break
    return out


@register_source("memory")
class MemorySource(TelemetrySource):
    """Process RSS (with the kernel's high-water mark VmHWM) and system used = total - available
    (the honest figure where a GPU/iGPU/NPU shares RAM). /proc when present, else psutil; psutil
    for include_children (the engine may be a child process, e.g. ax-llm)."""

    kinds = ("memory",)
    options = {"pid": None, "include_children": False, "backend": "auto"}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        backend = str(self.config.get("backend") or "auto")
        if backend not in ("auto", "psutil", "procfs"):
            raise SourceConfigError("backend must be auto, psutil or procfs, got %r" % backend)
        pid = self.config.get("pid")
        try:
            self.pid: Optional[int] = int(pid) if pid is not None else None
        except (TypeError, ValueError):
            raise SourceConfigError("pid must be a process id, got %r" % (pid,))
        self.proc_dir = self.path("/proc/%s" % (self.pid if self.pid is not None else "self"))
        self.psutil: Any = None
        self.process: Any = None
        have_procfs = all(os.path.exists(p) for p in (os.path.join(self.proc_dir, "status"), self.path("/proc/meminfo")))
        # auto: /proc when it is there (the same kernel counters psutil reads, at half its cost per
        # sample); psutil for a process tree (include_children) or where there is no /proc.
        want_psutil = backend == "psutil" or (
            backend == "auto" and (bool(self.config.get("include_children")) or not have_procfs))
        if want_psutil and self.root == "/":
            try:
                import psutil  # type: ignore  # optional: pip install psutil

                self.psutil = psutil
                self.process = psutil.Process(self.pid)
            except ImportError:
                if backend == "psutil":
                    self.setup_warnings.append("psutil not installed (pip install psutil): using /proc")
            except Exception as exc:  # no such process
                raise SourceUnavailable("process %s: %s" % (self.pid, short_error(exc)))
        if self.process is None:
            for path in (os.path.join(self.proc_dir, "status"), self.path("/proc/meminfo")):
                if not os.path.exists(path):
                    raise SourceUnavailable("%s not found: no procfs here and psutil is not installed "
                                            "(pip install psutil)" % path)
        if self.config.get("include_children") and self.process is None:
            self.setup_warnings.append("include_children needs psutil (pip install psutil): children not counted")
        self.high_water: Dict[str, float] = {}
        who = "process %s" % self.pid if self.pid is not None else "runner process"
        self.covers = "%s RSS%s (host memory only: GPU/NPU allocations are not in it) and system used " \
                      "(MemTotal - MemAvailable)" % (who, " + children" if self.config.get("include_children") else "")

    def read(self) -> Values:
        values: Values = {"mem_mb:rss": None, "mem_mb:system_used": None}
        if self.process is not None:
            try:
                rss = float(self.process.memory_info().rss)
                if self.config.get("include_children"):
                    for child in self.process.children(recursive=True):
                        try:
                            rss += float(child.memory_info().rss)
                        except Exception:
                            pass  # a child that just exited
                values["mem_mb:rss"] = rss / 2 ** 20
            except Exception as exc:
                self.warn("process RSS unreadable: %s" % short_error(exc))
            try:
                vm = self.psutil.virtual_memory()
                values["mem_mb:system_used"] = float(vm.total - vm.available) / 2 ** 20
            except Exception as exc:
                self.warn("system memory unreadable: %s" % short_error(exc))
        status: Dict[str, float] = {}
        try:
            status = parse_kb_fields(read_text(os.path.join(self.proc_dir, "status")), ("VmRSS", "VmHWM"))
        except OSError as exc:
            if self.process is None:
                self.warn("%s/status unreadable: %s" % (self.proc_dir, short_error(exc)))
        if self.process is None:
            if "VmRSS" in status:
                values["mem_mb:rss"] = status["VmRSS"] / 1024.0
            else:
                self.warn("no VmRSS in %s/status" % self.proc_dir)
            try:
                info = parse_kb_fields(read_text(self.path("/proc/meminfo")), ("MemTotal", "MemAvailable"))
                if "MemTotal" in info and "MemAvailable" in info:
                    values["mem_mb:system_used"] = (info["MemTotal"] - info["MemAvailable"]) / 1024.0
                else:
                    self.warn("no MemTotal/MemAvailable in /proc/meminfo (kernel < 3.14?)")
            except OSError as exc:
                self.warn("/proc/meminfo unreadable: %s" % short_error(exc))
        if "VmHWM" in status:
            values["mem_mb:rss_hwm"] = status["VmHWM"] / 1024.0
        for key, value in values.items():
            if value is not None and value > self.high_water.get(key, -1.0):
                self.high_water[key] = value
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"backend": "psutil %s" % getattr(self.psutil, "__version__", "") if self.process is not None
                     else "procfs", "pid": self.pid, "include_children": bool(self.config.get("include_children")),
                     "high_water_mb": dict(self.high_water),
                     "rss_hwm": "VmHWM: the kernel's peak RSS since the process started or its last reset"})
        return info


def _unique(name: str, taken: Dict[str, Any], extra: str) -> str:
    return name if name not in taken else "%s.%s" % (name, extra)


@register_source("thermal")
class ThermalSource(TelemetrySource):
    """/sys/class/thermal/thermal_zone*/{type,temp} in millidegrees."""

    kinds = ("temperature",)
    default_interval_s = SLOW_INTERVAL_S

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.zones: Dict[str, str] = {}
        for zone in sorted(glob.glob(self.path("/sys/class/thermal/thermal_zone*")),
                           key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)):
            try:
                kind = read_text(os.path.join(zone, "type")).strip() or os.path.basename(zone)
            except OSError:
                kind = os.path.basename(zone)
            self.zones[_unique(kind, self.zones, os.path.basename(zone))] = os.path.join(zone, "temp")
        if not self.zones:
            raise SourceUnavailable("no thermal zones under %s" % self.path("/sys/class/thermal"))
        self.covers = "thermal zones: " + ", ".join(self.zones)

    def read(self) -> Values:
        values: Values = {}
        for name, path in self.zones.items():
            try:
                milli = parse_number(read_text(path))
            except (OSError, ValueError, IndexError) as exc:
                self.warn("%s unreadable: %s" % (path, short_error(exc)))
                values["temp_c:" + name] = None
                continue
            if milli <= -256000:  # Jetson zones that are off report -256 C
                values["temp_c:" + name] = None
                continue
            if name.upper().startswith("PMIC") and milli in (100000.0, 50000.0):
                continue  # Jetson's PMIC-Die zone: a fixed placeholder, not a temperature
            values["temp_c:" + name] = milli / 1000.0
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["zones"] = dict(self.zones)
        return info


def _mhz_from_khz(path: str) -> float:
    return parse_number(read_text(path)) / 1000.0


@register_source("cpufreq")
class CpufreqSource(TelemetrySource):
    """Per-CPU current clock; snapshots add the policy max, the hardware max and the governor."""

    kinds = ("clock", "state")
    default_interval_s = SLOW_INTERVAL_S

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.cpus: Dict[str, str] = {}
        for folder in glob.glob(self.path("/sys/devices/system/cpu/cpu[0-9]*/cpufreq")):
            cpu = os.path.basename(os.path.dirname(folder))
            self.cpus[cpu] = folder
        self.cpus = dict(sorted(self.cpus.items(), key=lambda kv: int(kv[0][3:])))
        if not self.cpus:
            raise SourceUnavailable("no cpufreq under %s (a VM, or no cpufreq driver)"
                                    % self.path("/sys/devices/system/cpu"))
        self.covers = "CPU clocks (cpufreq) of %d CPUs" % len(self.cpus)

    def _cur(self, cpu: str, folder: str) -> Optional[float]:
        try:
            return _mhz_from_khz(os.path.join(folder, "scaling_cur_freq"))
        except (OSError, ValueError, IndexError) as exc:
            self.warn("%s scaling_cur_freq unreadable: %s" % (cpu, short_error(exc)))
            return None

    def read(self) -> Values:
        return {"clock_mhz:" + cpu: self._cur(cpu, folder) for cpu, folder in self.cpus.items()}

    def snapshot(self) -> Dict[str, Any]:
        snap: Dict[str, Any] = {}
        for cpu, folder in self.cpus.items():
            snap["clock_mhz:" + cpu] = self._cur(cpu, folder)
            for key, name in (("clock_max_mhz:", "scaling_max_freq"), ("clock_hw_max_mhz:", "cpuinfo_max_freq")):
                try:
                    snap[key + cpu] = _mhz_from_khz(os.path.join(folder, name))
                except (OSError, ValueError, IndexError):
                    pass
            try:
                snap["governor:" + cpu] = read_text(os.path.join(folder, "scaling_governor")).strip()
            except OSError:
                pass
        return snap

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["cpus"] = list(self.cpus)
        return info


@register_source("devfreq")
class DevfreqSource(TelemetrySource):
    """/sys/class/devfreq/* (Jetson GPU 17000000.ga10b, other accelerators): clocks in Hz."""

    kinds = ("clock",)
    default_interval_s = SLOW_INTERVAL_S

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.devices = {os.path.basename(p): p for p in sorted(glob.glob(self.path("/sys/class/devfreq/*")))}
        if not self.devices:
            raise SourceUnavailable("no devfreq devices under %s" % self.path("/sys/class/devfreq"))
        self.covers = "devfreq clocks: " + ", ".join(self.devices)

    def _mhz(self, path: str) -> Optional[float]:
        try:
            return parse_number(read_text(path)) / 1e6
        except (OSError, ValueError, IndexError) as exc:
            self.warn("%s unreadable: %s" % (path, short_error(exc)))
            return None

    def read(self) -> Values:
        return {"clock_mhz:" + name: self._mhz(os.path.join(p, "cur_freq")) for name, p in self.devices.items()}

    def snapshot(self) -> Dict[str, Any]:
        snap: Dict[str, Any] = dict(self.read())
        for name, p in self.devices.items():
            snap["clock_max_mhz:" + name] = self._mhz(os.path.join(p, "max_freq"))
            try:
                snap["devfreq_governor:" + name] = read_text(os.path.join(p, "governor")).strip()
            except OSError:
                pass
        return snap


@register_source("hwmon")
class HwmonSource(TelemetrySource):
    """/sys/class/hwmon/hwmon*/temp*_input (millidegrees), named ``<chip>/<label>``."""

    kinds = ("temperature",)
    default_interval_s = SLOW_INTERVAL_S

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.sensors: Dict[str, str] = {}
        for chip in sorted(glob.glob(self.path("/sys/class/hwmon/hwmon*"))):
            try:
                chip_name = read_text(os.path.join(chip, "name")).strip()
            except OSError:
                chip_name = os.path.basename(chip)
            for inp in sorted(glob.glob(os.path.join(chip, "temp*_input"))):
                n = os.path.basename(inp).split("_")[0]
                try:
                    label = read_text(os.path.join(chip, n + "_label")).strip()
                except OSError:
                    label = n
                key = _unique("%s/%s" % (chip_name, label), self.sensors, os.path.basename(chip))
                self.sensors[key] = inp
        if not self.sensors:
            raise SourceUnavailable("no hwmon temperature sensors under %s" % self.path("/sys/class/hwmon"))
        self.covers = "hwmon temperatures (%d sensors)" % len(self.sensors)

    def read(self) -> Values:
        values: Values = {}
        for name, path in self.sensors.items():
            try:
                values["temp_c:" + name] = parse_number(read_text(path)) / 1000.0
            except (OSError, ValueError, IndexError) as exc:
                self.warn("%s unreadable: %s" % (path, short_error(exc)))
                values["temp_c:" + name] = None
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["sensors"] = dict(self.sensors)
        return info
