"""AXERA AX650N: CMM (NPU memory, outside /proc/meminfo), NPU utilisation and SoC temperature.

The board has no power sensor: pair this source with ``meter_command`` or ``meter_serial``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .base import SourceUnavailable, TelemetrySource, Values, parse_number, read_text, register_source, short_error

CMM_INFO = "/proc/ax_proc/mem_cmm_info"
NPU_TOP = "/proc/ax_proc/npu/top"
NPU_ENABLE = "/proc/ax_proc/npu/enable"
SOC_TEMP = "/sys/class/thermal/thermal_zone0/temp"

# the summary line starts the line (after spaces); a block's name="..." can hold any text, so a match
# inside a "|-Block:" line must not count, and the last summary in the file is the current one
# (parse_cmm_summary reads it field by field: each search is linear in the line, whatever it holds)
_UTIL_RE = re.compile(r"utilization[ \t]*:[ \t]*([0-9]{1,9}(?:\.[0-9]{1,9})?)[ \t]*%", re.IGNORECASE)
_CORE_RE = re.compile(r"[ \t]*core[ \t]*:[ \t]*(\S{1,128})", re.IGNORECASE)
# AXCL FAQ: with the NPU idle, top reads "nputop info is empty!" or "nputop info not updated over N ms!"
_NPU_IDLE_RE = re.compile(r"nputop info (?:is empty|not updated over)", re.IGNORECASE)


_CMM_START_RE = re.compile(r"[ \t]*total[ \t]*size[ \t]*=", re.IGNORECASE)
_CMM_FIELD_RES = tuple(re.compile(r"\b%s[ \t]*=[ \t]*([0-9]{1,15})[ \t]*KB" % name, re.IGNORECASE)
                       for name in (r"total[ \t]*size", "used", "remain"))


def parse_cmm_summary(text: str) -> "Optional[tuple]":
    """(total, used, remain) in MB from the LAST line that starts with ``total size=`` and has all
    three ``...=NKB`` fields; None when there is none. A block's name="..." may hold any text, so a
    summary must start its line. Linear in the text (no regex spans lines or backtracks across them)."""
    found = None
    for line in text.splitlines():
        if not _CMM_START_RE.match(line):
            continue
        values = []
        for pattern in _CMM_FIELD_RES:
            m = pattern.search(line)
            if m is None:
                break
            values.append(int(m.group(1)) / 1024.0)
        if len(values) == 3:
            found = tuple(values)
    return found


@dataclass
class CmmInfo:
    total_mb: Optional[float] = None
    used_mb: Optional[float] = None
    remain_mb: Optional[float] = None
    warnings: List[str] = field(default_factory=list)


def parse_cmm_info(text: str) -> CmmInfo:
    """The summary line of /proc/ax_proc/mem_cmm_info (after ``---CMM_USE_INFO:``):
    `` total size=3145728KB(3072MB),used=18876KB(18MB + 444KB),remain=3126852KB(3053MB + 580KB),...``"""
    summary = parse_cmm_summary(text or "")
    if summary is not None:
        total, used, remain = summary
        info = CmmInfo(total, used, remain)
        if abs(total - used - remain) > 1.0:
            info.warnings.append("CMM used + remain != total (%.0f + %.0f vs %.0f MB)" % (used, remain, total))
        return info
    return CmmInfo(warnings=["no 'total size=...,used=...,remain=...' line in mem_cmm_info"])


def parse_npu_top_cores(text: str) -> Dict[str, float]:
    """Every ``utilization:NN%`` in /proc/ax_proc/npu/top, by the ``core:NAME`` block it belongs to:
    one block ``core:vnpu-Non`` normally, three (``vnpu_stdd_1..3``) when the NPU is split into
    virtual NPUs (AXERA NPU docs, AX8850 board example)."""
    cores: Dict[str, float] = {}
    core = None
    for line in (text or "").splitlines():
        m = _CORE_RE.match(line)
        if m:
            core = m.group(1)
            continue
        m = _UTIL_RE.search(line)
        if m:
            name = core if core is not None else "npu"
            if name in cores:
                name = "%s.%d" % (name, len(cores))
            cores[name] = float(m.group(1))
            core = None
    return cores


def parse_npu_top(text: str) -> Optional[float]:
    """NPU utilisation in percent: the one core's figure, or the mean over the virtual NPUs; 0 when
    the driver says the NPU was idle; None when the text has no figure (statistics off)."""
    cores = parse_npu_top_cores(text)
    if cores:
        return sum(cores.values()) / len(cores)
    if _NPU_IDLE_RE.search(text or ""):
        return 0.0
    return None


@register_source("ax650n")
class Ax650nSource(TelemetrySource):
    kinds = ("memory", "temperature", "utilization")
    options = {"enable_npu_top": False, "npu": True, "temp_path": SOC_TEMP}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.cmm_path = self.path(CMM_INFO)
        self.npu_path = self.path(NPU_TOP)
        self.temp_path = self.path(str(self.config.get("temp_path") or SOC_TEMP))
        try:
            first = parse_cmm_info(read_text(self.cmm_path))
        except (OSError, ValueError) as exc:
            raise SourceUnavailable("%s unreadable (%s): not an AX650N, or the AXERA BSP (ax_cmm driver) is not "
                                    "loaded" % (self.cmm_path, short_error(exc)))
        self.setup_warnings.extend(first.warnings)
        self.cmm_total_mb = first.total_mb
        self.npu_enabled_here = False
        if self.config.get("npu") and self.config.get("enable_npu_top"):
            try:
                with open(self.path(NPU_ENABLE), "w") as handle:
                    handle.write("1")
                self.npu_enabled_here = True
            except OSError as exc:
                self.setup_warnings.append("could not enable NPU statistics (echo 1 > %s): %s; run as root"
                                           % (NPU_ENABLE, short_error(exc)))
        self.covers = "AX650N CMM (NPU) memory, NPU utilisation, SoC temperature; no power sensor on the board"

    def read(self) -> Values:
        values: Values = {}
        try:
            cmm = parse_cmm_info(read_text(self.cmm_path))
            for message in cmm.warnings:
                self.warn(message)
        except (OSError, ValueError) as exc:
            self.warn("%s unreadable: %s" % (self.cmm_path, short_error(exc)))
            cmm = CmmInfo()
        values["mem_mb:cmm_used"] = cmm.used_mb
        values["mem_mb:cmm_remain"] = cmm.remain_mb
        if self.config.get("npu"):
            try:
                top = read_text(self.npu_path)
                util = parse_npu_top(top)
                cores = parse_npu_top_cores(top)
                if len(cores) > 1:
                    for core, pct in cores.items():
                        values["util_pct:npu_" + core] = pct
                if util is None:
                    self.warn("no 'utilization:NN%%' in %s (statistics off? set enable_npu_top: true, "
                              "which writes 1 to %s)" % (NPU_TOP, NPU_ENABLE))
            except (OSError, UnicodeDecodeError) as exc:
                util = None
                self.warn("%s unreadable: %s" % (self.npu_path, short_error(exc)))
            values["util_pct:npu"] = util
        try:
            values["temp_c:soc"] = parse_number(read_text(self.temp_path)) / 1000.0
        except (OSError, ValueError, IndexError) as exc:
            values["temp_c:soc"] = None
            self.warn("%s unreadable: %s" % (self.temp_path, short_error(exc)))
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"cmm_info": self.cmm_path, "cmm_total_mb": self.cmm_total_mb, "npu_top": self.npu_path,
                     "npu_stats_enabled_by_runner": self.npu_enabled_here, "soc_temp": self.temp_path})
        return info
