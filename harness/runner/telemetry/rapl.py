"""Intel RAPL through the powercap sysfs interface: energy counters, never added together."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .base import (
    CounterUnwrapper,
    SourceConfigError,
    SourceUnavailable,
    TelemetrySource,
    Values,
    parse_number,
    read_text,
    register_source,
    short_error,
)

POWERCAP = "/sys/class/powercap"
PERMISSION_HINT = (
    "RAPL energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694). Grant read access: "
    "'sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj' "
    "(until reboot), or a udev rule in /etc/udev/rules.d/99-rapl.rules: "
    "ACTION==\"add\", SUBSYSTEM==\"powercap\", KERNEL==\"intel-rapl:*\", RUN+=\"/bin/chmod a+r /sys%p/energy_uj\" "
    "(then 'sudo udevadm trigger -s powercap'), or run the runner as root"
)


@dataclass
class RaplZone:
    zone: str  # intel-rapl:0, intel-rapl:0:1
    name: str  # package-0, core, uncore, dram, psys
    path: str
    max_range_uj: Optional[float]
    parent: Optional[str]
    key: str = ""


def _discover(base: str) -> List[RaplZone]:
    """The MSR zones (intel-rapl:N, subzones intel-rapl:N:M). intel-rapl-mmio:N is the same package
    counter through MMIO (int340x processor_thermal_rapl driver): used only where no MSR zone exists (intel_rapl_msr
    not loaded), never added to it."""
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    for prefix in ("intel-rapl", "intel-rapl-mmio"):
        zones = _zones_of(base, entries, prefix)
        if zones:
            return zones
    return []


def _zones_of(base: str, entries: List[str], prefix: str) -> List[RaplZone]:
    zones: List[RaplZone] = []
    pattern = re.compile(re.escape(prefix) + r":(\d+)(?::(\d+))?$")
    for entry in entries:
        m = pattern.match(entry)
        if not m:
            continue
        path = os.path.join(base, entry)
        try:
            name = read_text(os.path.join(path, "name")).strip() or entry
        except (OSError, UnicodeDecodeError):
            name = entry
        try:
            max_range: Optional[float] = parse_number(read_text(os.path.join(path, "max_energy_range_uj")))
            if max_range is not None and max_range <= 0:
                max_range = None
        except (OSError, ValueError, IndexError, UnicodeDecodeError):
            max_range = None
        parent = "%s:%s" % (prefix, m.group(1)) if m.group(2) is not None else None
        zones.append(RaplZone(entry, name, path, max_range, parent))
    return zones


@register_source("rapl")
class RaplSource(TelemetrySource):
    """``energy_j`` is the main zone's counter (package-0 by default: cores + uncore/iGPU); its
    subzones are ``energy_j:core`` etc.; other top zones (psys, package-1) are reported apart."""

    kinds = ("energy",)
    options = {"zone": "package-0"}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.counter = True
        base = self.path(POWERCAP)
        zones = _discover(base)
        if not zones:
            raise SourceUnavailable("no intel-rapl zones under %s (not an Intel CPU, or the intel_rapl_msr "
                                    "module is not loaded: sudo modprobe intel_rapl_msr)" % base)
        wanted = str(self.config.get("zone") or "package-0")
        tops = [z for z in zones if z.parent is None]
        main = next((z for z in tops if z.name == wanted or z.zone == wanted), None)
        if main is None and "zone" not in (config or {}):
            main = next((z for z in tops if z.name.startswith("package")), tops[0] if tops else None)
            if main is not None:
                self.setup_warnings.append("no RAPL zone package-0: using %s (%s)" % (main.zone, main.name))
        if main is None:
            raise SourceConfigError("RAPL zone %r not found; zones: %s"
                                    % (wanted, ", ".join("%s (%s)" % (z.zone, z.name) for z in tops)))
        self.main = main
        for z in zones:
            if z is main:
                z.key = "energy_j"
            elif z.parent == main.zone:
                z.key = "energy_j:" + z.name
            elif z.parent is None:
                z.key = "energy_j:" + z.name
            else:
                parent = next((p for p in tops if p.zone == z.parent), None)
                z.key = "energy_j:%s/%s" % (parent.name if parent else z.parent, z.name)
        self.zones = zones
        self._unwrap = {z.zone: CounterUnwrapper(z.max_range_uj) for z in zones}
        for z in zones:
            if z.max_range_uj is None:
                self.setup_warnings.append("%s has no readable max_energy_range_uj: a counter wrap "
                                           "cannot be corrected" % z.path)
        try:
            parse_number(read_text(os.path.join(main.path, "energy_uj")))
        except PermissionError as exc:
            raise SourceUnavailable("%s: %s. %s" % (os.path.join(main.path, "energy_uj"), short_error(exc),
                                                    PERMISSION_HINT))
        except (OSError, ValueError, IndexError) as exc:
            raise SourceUnavailable("%s unreadable: %s" % (os.path.join(main.path, "energy_uj"), short_error(exc)))
        subs = [z.name for z in zones if z.parent == main.zone]
        self.covers = "CPU %s (RAPL %s%s): package energy counter; zones are never added together" % (
            main.name, main.zone, "; breakdown: " + ", ".join(subs) if subs else "")

    def read(self) -> Values:
        values: Values = {}
        for z in self.zones:
            path = os.path.join(z.path, "energy_uj")
            try:
                raw = parse_number(read_text(path))
            except PermissionError as exc:
                self.warn("%s: %s. %s" % (path, short_error(exc), PERMISSION_HINT))
                values[z.key] = None
                continue
            except (OSError, ValueError, IndexError) as exc:
                self.warn("%s unreadable: %s" % (path, short_error(exc)))
                values[z.key] = None
                continue
            total = self._unwrap[z.zone].update(raw)
            if total is None:
                self.warn("%s went backwards with no known range: sample dropped" % path)
            values[z.key] = None if total is None else total / 1e6
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["zones"] = [
            {"zone": z.zone, "name": z.name, "key": z.key, "path": os.path.join(z.path, "energy_uj"),
             "max_energy_range_uj": z.max_range_uj, "wraps_seen": self._unwrap[z.zone].wraps}
            for z in self.zones
        ]
        info["main_zone"] = self.main.name
        return info
