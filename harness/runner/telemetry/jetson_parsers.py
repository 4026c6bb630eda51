"""Parsers for Jetson text: tegrastats lines, ``nvpmodel -q``, ``jetson_clocks --show``; rail summing.

Formats vary between JetPack releases and modules, so every field is optional: what is not
found is None and named in ``warnings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# -- rails ----------------------------------------------------------------------------------------

#: rails that measure the whole module input on their own (Orin Nano/NX: VDD_IN; Nano/TX2: POM_5V_IN)
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
#: AGX Orin has no input rail: these three together make the module total
AGX_ORIN_RAILS = ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
#: AGX Xavier has no input rail either: its two INA3221s (0x40: GPU, CPU, SOC; 0x41: CV, VDDRQ,
#: SYS5V) together are the module (energymon's JetsonPowerRails.md, after NVIDIA's AGX Xavier
#: product design guide 5.6.2; jetson-stats sums every rail when there is no VDD_IN)
AGX_XAVIER_RAILS = ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V")
AGX_XAVIER_CAVEAT = (
    "AGX Xavier has no VDD_IN rail: total = GPU + CPU + SOC + CV + VDDRQ + SYS5V (the six monitored "
    "supplies); carrier-board and regulator losses are not in it"
)
AGX_ORIN_CAVEAT = (
    "AGX Orin has no VDD_IN rail: total = VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0; VDDQ_VDD2_1V8AO is "
    "not added because it may already be inside VIN_SYS_5V0 - verify on the board"
)
MODULES = ("auto", "orin-nano", "orin-nx", "agx-orin", "nano", "xavier-nx", "agx-xavier")


@dataclass
class RailTotal:
    """The module power computed from the rails, and how."""

    total_w: Optional[float]
    rails_summed: List[str]
    method: str
    caveat: str = ""
    warnings: List[str] = field(default_factory=list)


def sum_rails(rails_w: Dict[str, Optional[float]], module: str = "auto",
              rails: Optional[List[str]] = None) -> RailTotal:
    """Module total from per-rail watts, per module type (FACTS.md); ``rails`` forces a list."""
    present = {name.upper(): name for name in rails_w}

    def total_of(names: List[str], method: str, caveat: str = "") -> RailTotal:
        missing = [n for n in names if n.upper() not in present]
        if missing:
            return RailTotal(None, [], method, caveat, ["rail(s) %s not found (rails present: %s)"
                                                        % (", ".join(missing), ", ".join(sorted(rails_w)) or "none")])
        values = [rails_w[present[n.upper()]] for n in names]
        if any(v is None for v in values):
            unread = [n for n, v in zip(names, values) if v is None]
            return RailTotal(None, [present[n.upper()] for n in names], method, caveat,
                             ["rail(s) %s unreadable: no total" % ", ".join(unread)])
        return RailTotal(sum(v for v in values if v is not None), [present[n.upper()] for n in names], method, caveat)

    if rails:
        return total_of(list(rails), "configured rails")
    module = (module or "auto").lower()
    if module == "agx-orin":
        return total_of(list(AGX_ORIN_RAILS), "AGX Orin rail sum", AGX_ORIN_CAVEAT)
    if module == "agx-xavier":
        return total_of(list(AGX_XAVIER_RAILS), "AGX Xavier rail sum", AGX_XAVIER_CAVEAT)
    for name in TOTAL_RAILS:
        if name in present:
            return total_of([name], "module input rail %s" % name)
    if module == "auto" and all(n in present for n in AGX_ORIN_RAILS):
        return total_of(list(AGX_ORIN_RAILS), "AGX Orin rail sum", AGX_ORIN_CAVEAT)
    if module == "auto" and set(present) == set(AGX_XAVIER_RAILS):
        return total_of(list(AGX_XAVIER_RAILS), "AGX Xavier rail sum", AGX_XAVIER_CAVEAT)
    return RailTotal(None, [], "none", "", [
        "no module total: no VDD_IN/POM_5V_IN rail%s (rails present: %s); set 'rails' in the source "
        "config to choose which rails to sum" % (
            "" if module == "auto" else " for module %r" % module, ", ".join(sorted(rails_w)) or "none")
    ])


# -- tegrastats -----------------------------------------------------------------------------------

_UNIT_MB = {"K": 1.0 / 1024.0, "M": 1.0, "G": 1024.0}
# Field rules (NVIDIA's tegrastats "Reported Statistics" tables, L4T 32.x-36.x and DRIVE OS 6):
#   RAM X/Y[kMG]B (lfb NxZ[kMG]B)         used/total, N free blocks of the largest size Z
#   SWAP X/Y[kMG]B (cached Z[kMG]B)       IRAM X/Y kB(lfb Z kB)   (Nano/TX1 only)
#   CPU [X%@F,Y%@F,off,...]               per core; JetPack 3: cpu [X%,Y%,...]@F (one clock)
#   EMC_FREQ X%[@F]  GR3D_FREQ X%[@F | @[F0,F1,...]]   (per-GPC clocks on Orin)
#   ENGINE off | ENGINE F | ENGINE X%@F   (APE, VIC, VIC_FREQ, NVENC, NVDEC, NVJPG, OFA, NVDLA0, ...)
#   MTS fg X% bg Y%                       (TX2 / Xavier)
#   NAME@T C                              temperatures, -256C = zone off (older: 100C for PMIC is fixed)
#   RAIL X[mW]/Y[mW]                      instantaneous / running average power in mW
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)([kKMG])B(?: ?\(lfb (\d+)x(\d+)([kKMG])B\))?")
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)([kKMG])B(?: ?\(cached (\d+)([kKMG])B\))?")
_IRAM_RE = re.compile(r"\bIRAM (\d+)/(\d+)([kKMG])B")
# "CPU [19%@729,...]" (JetPack >= 4); "cpu [11%,4%]@1734" (JetPack 3: one shared clock)
_CPU_RE = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_EMC_RE = re.compile(r"\bEMC(?:_FREQ)? (\d+)%(?:@(\d+))?")
_GR3D_RE = re.compile(r"\bGR3D(?:_FREQ)? (\d+)%(?:@(?:\[([^\]]*)\]|(\d+)))?")
_MTS_RE = re.compile(r"\bMTS fg (\d+)% bg (\d+)%")
# engines: a name, then "off", a clock, or load%@clock; EMC/GR3D/CPU/RAM/... are parsed above
_ENGINE_RE = re.compile(r"(?<![\w@.\-])([A-Z][A-Z0-9_]*) (off|\d+%@\d+|\d+)(?=\s|$)")
_NOT_ENGINES = {"RAM", "SWAP", "IRAM", "CPU", "EMC", "EMC_FREQ", "GR3D", "GR3D_FREQ", "MTS", "LFB"}
_TEMP_RE = re.compile(r"(?<![\w@.\-])([A-Za-z][\w.\-]*)@(-?\d+(?:\.\d+)?)C(?![\w.])")
_RAIL_RE = re.compile(r"(?<![\w@.\-])([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_TIMESTAMP_RE = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}
#: thermal zones that are off report this value
TEMP_OFFLINE_C = -256.0
#: longer lines are cut before parsing (a real line is < 1 kB; this bounds the work on garbage)
MAX_LINE_CHARS = 16384


@dataclass
class TegrastatsLine:
    """One tegrastats line. Power in watts (instantaneous; the running average is kept apart)."""

    ram_used_mb: Optional[float] = None
    ram_total_mb: Optional[float] = None
    swap_used_mb: Optional[float] = None
    swap_total_mb: Optional[float] = None
    cpu_load_pct: List[Optional[float]] = field(default_factory=list)  # None = core off
    cpu_freq_mhz: List[Optional[float]] = field(default_factory=list)
    emc_load_pct: Optional[float] = None
    emc_freq_mhz: Optional[float] = None
    gpu_load_pct: Optional[float] = None
    gpu_freq_mhz: Optional[float] = None
    temps_c: Dict[str, float] = field(default_factory=dict)
    rails_w: Dict[str, float] = field(default_factory=dict)
    rails_avg_w: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    # fields added later (all optional, never needed by values())
    timestamp: Optional[str] = None  # "MM-DD-YYYY HH:MM:SS" when tegrastats was asked for one
    ram_lfb_blocks: Optional[int] = None  # "(lfb NxZMB)": N free blocks of Z MB
    ram_lfb_block_mb: Optional[float] = None
    swap_cached_mb: Optional[float] = None
    iram_used_kb: Optional[float] = None
    iram_total_kb: Optional[float] = None
    gpu_freqs_mhz: List[Optional[float]] = field(default_factory=list)  # per GPC on Orin
    mts_fg_pct: Optional[float] = None
    mts_bg_pct: Optional[float] = None
    engines: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)  # {NVENC: {load_pct, freq_mhz}}
    temps_offline: List[str] = field(default_factory=list)  # zones reporting -256C

    def values(self, module: str = "auto", rails: Optional[List[str]] = None) -> Tuple[Dict[str, Optional[float]], RailTotal]:
        """The line as telemetry values (see base.py for the key names) and the rail total."""
        out: Dict[str, Optional[float]] = {}
        if self.rails_w:
            total = sum_rails(dict(self.rails_w), module, rails)
            out["power_w"] = total.total_w
            for name, watts in self.rails_w.items():
                out["power_w:" + name] = watts
        else:
            total = RailTotal(None, [], "none", "", ["no power rails in the tegrastats line"])
            out["power_w"] = None
        out["mem_mb:ram_used"] = self.ram_used_mb
        if self.swap_used_mb is not None:
            out["mem_mb:swap_used"] = self.swap_used_mb
        out["clock_mhz:gpu"] = self.gpu_freq_mhz
        out["util_pct:gpu"] = self.gpu_load_pct
        out["clock_mhz:emc"] = self.emc_freq_mhz
        out["util_pct:emc"] = self.emc_load_pct
        for i, mhz in enumerate(self.cpu_freq_mhz):
            if mhz is not None:
                out["clock_mhz:cpu%d" % i] = mhz
        for name, celsius in self.temps_c.items():
            out["temp_c:" + name] = celsius
        return out, total


def _mb(value: str, unit: str) -> float:
    return int(value) * _UNIT_MB[unit.upper()]


def _parse_cpu(rec: TegrastatsLine, match: "re.Match[str]") -> None:
    shared_freq = float(match.group(2)) if match.group(2) else None  # old format: CPU [a%,b%]@F
    for item in match.group(1).split(","):
        item = item.strip()
        if item == "off" or not item:
            rec.cpu_load_pct.append(None)
            rec.cpu_freq_mhz.append(None)
            continue
        m = re.match(r"(\d+)%(?:@(\d+))?$", item)
        if not m:
            rec.warnings.append("unrecognised CPU entry %r in tegrastats line" % item[:40])
            rec.cpu_load_pct.append(None)
            rec.cpu_freq_mhz.append(None)
            continue
        rec.cpu_load_pct.append(float(m.group(1)))
        rec.cpu_freq_mhz.append(float(m.group(2)) if m.group(2) else shared_freq)


def _parse_gr3d(rec: TegrastatsLine, match: "re.Match[str]") -> None:
    rec.gpu_load_pct = float(match.group(1))
    if match.group(2) is not None:  # "@[305,0]": one clock per GPC ("off" for a gated GPC)
        for item in match.group(2).split(","):
            item = item.strip()
            if item.isdigit():
                rec.gpu_freqs_mhz.append(float(item))
            elif item in ("", "off"):
                rec.gpu_freqs_mhz.append(None)
            else:
                rec.gpu_freqs_mhz.append(None)
                rec.warnings.append("unrecognised GR3D_FREQ clock %r in tegrastats line" % item[:40])
        clocks = [f for f in rec.gpu_freqs_mhz if f is not None]
        rec.gpu_freq_mhz = max(clocks) if clocks else None  # the GPU clock: the fastest GPC
    elif match.group(3) is not None:
        rec.gpu_freq_mhz = float(match.group(3))
        rec.gpu_freqs_mhz = [rec.gpu_freq_mhz]


def parse_tegrastats(line: str) -> TegrastatsLine:
    """Parse one line of ``tegrastats`` output, whatever the JetPack release.

    Each field is parsed on its own: an unknown field is skipped, a field that does not parse is
    named in ``warnings`` and left None, and the others are still read. Never raises on text."""
    rec = TegrastatsLine()
    if not isinstance(line, str):
        line = line.decode("utf-8", "replace") if isinstance(line, (bytes, bytearray)) else str(line)
    if len(line) > MAX_LINE_CHARS:
        rec.warnings.append("tegrastats line of %d characters cut to %d" % (len(line), MAX_LINE_CHARS))
        line = line[:MAX_LINE_CHARS]
    # a carriage return inside the text means a line was overwritten: the last part is the newest
    parts = [p for p in line.replace("\r\n", "\n").replace("\r", "\n").split("\n") if p.strip()]
    text = parts[-1].strip() if parts else ""
    if not text:
        rec.warnings.append("empty tegrastats line")
        return rec

    def field_of(name: str, parse: Any) -> None:
        try:
            parse()
        except (ValueError, KeyError, IndexError, OverflowError, TypeError) as exc:
            rec.warnings.append("tegrastats %s field unparsable (%s: %s): %r" % (name, type(exc).__name__, exc,
                                                                                  text[:120]))

    def timestamp() -> None:
        m = _TIMESTAMP_RE.match(text)
        if m:
            rec.timestamp = m.group(1)

    def ram() -> None:
        m = _RAM_RE.search(text)
        if not m:
            rec.warnings.append("no RAM field in tegrastats line")
            return
        rec.ram_used_mb, rec.ram_total_mb = _mb(m.group(1), m.group(3)), _mb(m.group(2), m.group(3))
        if m.group(4):
            rec.ram_lfb_blocks, rec.ram_lfb_block_mb = int(m.group(4)), _mb(m.group(5), m.group(6))

    def swap() -> None:
        m = _SWAP_RE.search(text)
        if m:
            rec.swap_used_mb, rec.swap_total_mb = _mb(m.group(1), m.group(3)), _mb(m.group(2), m.group(3))
            if m.group(4):
                rec.swap_cached_mb = _mb(m.group(4), m.group(5))

    def iram() -> None:
        m = _IRAM_RE.search(text)
        if m:
            rec.iram_used_kb = _mb(m.group(1), m.group(3)) * 1024.0
            rec.iram_total_kb = _mb(m.group(2), m.group(3)) * 1024.0

    def cpu() -> None:
        m = _CPU_RE.search(text)
        if m:
            _parse_cpu(rec, m)

    def emc() -> None:
        m = _EMC_RE.search(text)
        if m:
            rec.emc_load_pct = float(m.group(1))
            rec.emc_freq_mhz = float(m.group(2)) if m.group(2) else None

    def gr3d() -> None:
        m = _GR3D_RE.search(text)
        if m:
            _parse_gr3d(rec, m)

    def mts() -> None:
        m = _MTS_RE.search(text)
        if m:
            rec.mts_fg_pct, rec.mts_bg_pct = float(m.group(1)), float(m.group(2))

    def engines() -> None:
        for name, value in _ENGINE_RE.findall(text):
            if name in _NOT_ENGINES:
                continue
            if value == "off":
                rec.engines[name] = {"load_pct": None, "freq_mhz": None}
            elif "%@" in value:
                load, freq = value.split("%@")
                rec.engines[name] = {"load_pct": float(load), "freq_mhz": float(freq)}
            else:
                rec.engines[name] = {"load_pct": None, "freq_mhz": float(value)}

    def temps() -> None:
        for name, value in _TEMP_RE.findall(text):
            celsius = float(value)
            if celsius <= TEMP_OFFLINE_C:
                rec.temps_offline.append(name)
                continue
            rec.temps_c[name] = celsius

    def power() -> None:
        for name, cur, avg in _RAIL_RE.findall(text):
            if name.upper() in _NOT_RAILS or name.upper() == "NC":
                continue
            rec.rails_w[name] = int(cur) / 1000.0
            rec.rails_avg_w[name] = int(avg) / 1000.0

    for name, parse in (("timestamp", timestamp), ("RAM", ram), ("SWAP", swap), ("IRAM", iram), ("CPU", cpu),
                        ("EMC", emc), ("GR3D", gr3d), ("MTS", mts), ("engine", engines),
                        ("temperature", temps), ("power", power)):
        field_of(name, parse)
    if not rec.rails_w:
        rec.warnings.append("no power rails in tegrastats line (needs root on some JetPack releases)")
    if rec.ram_used_mb is None and not rec.rails_w and not rec.temps_c:
        rec.warnings = ["unrecognised tegrastats line: %r" % text[:120]]
    return rec


# -- nvpmodel and jetson_clocks -------------------------------------------------------------------


@dataclass
class NvpModel:
    name: Optional[str]
    mode_id: Optional[int]
    warnings: List[str] = field(default_factory=list)


def parse_nvpmodel_q(text: str) -> NvpModel:
    """``nvpmodel -q``: "NV Power Mode: MAXN" then the mode number (warnings may precede them)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        m = re.match(r"NV Power Mode\s*:\s*(\S+)", line)
        if m:
            mode_id = None
            if i + 1 < len(lines) and lines[i + 1].isdigit():
                mode_id = int(lines[i + 1])
            return NvpModel(m.group(1), mode_id)
    return NvpModel(None, None, ["no 'NV Power Mode:' line in nvpmodel -q output: %r" % text[:200]])


@dataclass
class ClockDomain:
    min_mhz: Optional[float]
    max_mhz: Optional[float]
    cur_mhz: Optional[float]
    online: bool = True
    governor: Optional[str] = None


@dataclass
class JetsonClocksState:
    cpus: Dict[str, ClockDomain] = field(default_factory=dict)
    gpu: Optional[ClockDomain] = None
    emc: Optional[ClockDomain] = None
    power_mode: Optional[str] = None
    warnings: List[str] = field(default_factory=list)

    @property
    def locked(self) -> Optional[bool]:
        """True when jetson_clocks pinned the clocks (min == max for online CPUs and the GPU)."""
        domains = [d for d in self.cpus.values() if d.online]
        if self.gpu is not None:
            domains.append(self.gpu)
        if not domains or any(d.min_mhz is None or d.max_mhz is None for d in domains):
            return None
        return all(d.min_mhz == d.max_mhz for d in domains)


def _fields(text: str) -> Dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", text))


def _mhz(value: Optional[str], divisor: float) -> Optional[float]:
    if value is None:
        return None
    try:
        return int(value) / divisor
    except ValueError:
        return None


def parse_jetson_clocks_show(text: str) -> JetsonClocksState:
    """``jetson_clocks --show``: CPU frequencies in kHz, GPU and EMC in Hz."""
    state = JetsonClocksState()
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"(cpu\d+)\s*:\s*(.*)", line)
        if m:
            f = _fields(m.group(2))
            state.cpus[m.group(1)] = ClockDomain(
                _mhz(f.get("MinFreq"), 1e3), _mhz(f.get("MaxFreq"), 1e3), _mhz(f.get("CurrentFreq"), 1e3),
                f.get("Online", "1") == "1", f.get("Governor"),
            )
            continue
        if line.startswith("GPU ") or line.startswith("EMC "):
            f = _fields(line)
            domain = ClockDomain(_mhz(f.get("MinFreq"), 1e6), _mhz(f.get("MaxFreq"), 1e6),
                                 _mhz(f.get("CurrentFreq"), 1e6))
            if line.startswith("GPU "):
                state.gpu = domain
            else:
                state.emc = domain
            continue
        m = re.match(r"NV Power Mode\s*:\s*(\S+)", line)
        if m:
            state.power_mode = m.group(1)
    if not state.cpus and state.gpu is None:
        state.warnings.append("no cpu/GPU lines in jetson_clocks --show output: %r" % text[:200])
    return state
