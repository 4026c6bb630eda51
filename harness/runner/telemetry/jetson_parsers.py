"""Parsers for Jetson text: tegrastats lines, ``nvpmodel -q``, ``jetson_clocks --show``; rail summing.

Formats vary between JetPack releases and modules, so every field is optional: what is not
found is None and named in ``warnings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# -- rails ----------------------------------------------------------------------------------------

#: rails that measure the whole module input on their own (Orin Nano/NX: VDD_IN; Nano/TX2: POM_5V_IN);
#: Thor's VIN (INA238 on the carrier) is the board input: jtop reports it as the total (jetson_stats PR #900)
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
#: Jetson Thor builds without VIN: these three are every monitored supply of the module
THOR_RAILS = ("VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0")
THOR_CAVEAT = (
    "Jetson Thor without a VIN rail: total = VDD_GPU + VDD_CPU_SOC_MSS + VIN_SYS_5V0 (the module's "
    "monitored supplies); the carrier board and regulator losses are not in it"
)
VIN_CAVEAT = "VIN is the board input (carrier board included), as jtop reports it on Jetson Thor"
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
MODULES = ("auto", "orin-nano", "orin-nx", "agx-orin", "nano", "xavier-nx", "agx-xavier", "thor")


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
    if module == "thor" and "VIN" not in present:
        return total_of(list(THOR_RAILS), "Jetson Thor rail sum", THOR_CAVEAT)
    for name in TOTAL_RAILS:
        if name in present:
            if name == "VIN":
                return total_of([name], "board input rail VIN", VIN_CAVEAT)
            return total_of([name], "module input rail %s" % name)
    if module == "auto" and all(n in present for n in THOR_RAILS):
        return total_of(list(THOR_RAILS), "Jetson Thor rail sum", THOR_CAVEAT)
    if module == "auto" and all(n in present for n in AGX_ORIN_RAILS):
        return total_of(list(AGX_ORIN_RAILS), "AGX Orin rail sum", AGX_ORIN_CAVEAT)
    if module == "auto" and set(present) == set(AGX_XAVIER_RAILS):
        return total_of(list(AGX_XAVIER_RAILS), "AGX Xavier rail sum", AGX_XAVIER_CAVEAT)
    return RailTotal(None, [], "none", "", [
        "no module total: no VDD_IN/POM_5V_IN/VIN rail%s (rails present: %s); set 'rails' in the source "
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
#   NAME@T C                              temperatures, -256C = zone off
#   NAME@T C/M C                          JetPack 7: current / maximum since start
#   RAIL X[mW]/Y[mW]                      instantaneous / running average power in mW
#   RAIL XmW/YmW/ZmW                      JetPack 7: instantaneous / average / maximum
# JetPack 7 (L4T R38/R39, Thor and Orin): GR3D_FREQ @[F0,F1,F2] (clocks, no load) or GR3D_FREQ X% (no
# clock); engines as NVENC0_FREQ @F; EMC_FREQ @F; SWAP and EMC may be missing.
# JetPack 4 prints PMIC@100C (Nano, TX1, TX2) or PMIC@50C: the PMIC zone is a fixed placeholder, not a
# reading, so it is kept apart (temps_placeholder) and never used as a temperature.
# Every pattern is ASCII-only ([0-9], not Unicode digits) and linear: a name may not start inside a
# word (the look-behind), and no two adjacent repeats can match the same characters.
_A = re.ASCII
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)([kKMG])B(?: ?\(lfb (\d+)x(\d+)([kKMG])B\))?", _A)
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)([kKMG])B(?: ?\(cached (\d+)([kKMG])B\))?", _A)
_IRAM_RE = re.compile(r"\bIRAM (\d+)/(\d+)([kKMG])B", _A)
# "CPU [19%@729,...]" (JetPack >= 4); "cpu [11%,4%]@1734" (JetPack 3: one shared clock)
_CPU_RE = re.compile(r"\bCPU \[([^\[\]]*)\](?:@(\d+))?", re.IGNORECASE | _A)
_CPU_ITEM_RE = re.compile(r"(\d+)%(?:@(\d+))?$", _A)
_EMC_RE = re.compile(r"\bEMC(?:_FREQ)? (?:(\d+)%)?(?:@(\d+))?", _A)
_GR3D_RE = re.compile(r"\bGR3D(?:_FREQ)? (?:(\d+)%)?(?:@(?:\[([^\[\]]*)\]|(\d+)))?", _A)
_MTS_RE = re.compile(r"\bMTS fg (\d+)% bg (\d+)%", _A)
# engines: a name, then "off", a clock, load%@clock, load% or @clock; EMC/GR3D/CPU/RAM/... are parsed above
_ENGINE_RE = re.compile(r"(?<![\w@.\-])([A-Z][A-Z0-9_]*) (off|\d+%@\d+|\d+%|@\d+|\d+)(?=\s|$)", _A)
_NOT_ENGINES = {"RAM", "SWAP", "IRAM", "CPU", "EMC", "EMC_FREQ", "GR3D", "GR3D_FREQ", "MTS", "LFB"}
# zone names may be non-ASCII (kernel thermal zone types are free text); the figures are ASCII [0-9]
_TEMP_RE = re.compile(r"(?<![\w@.\-])([A-Za-z][\w.\-]*)@(-?[0-9]+(?:\.[0-9]+)?)C(?:/(-?[0-9]+(?:\.[0-9]+)?)C)?(?![\w.])")
_RAIL_RE = re.compile(r"(?<![\w@.\-])([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)", _A)
# anything that looks like a rail ("NAME 12mW/..." or "NAME 12/...") - to tell "no rails printed" (root)
# from "rails printed in a format this parser does not know"
_RAILISH_RE = re.compile(r"(?<![\w@.\-])([A-Za-z][A-Za-z0-9_]*) [0-9.]+m?W?/", _A)
_TIMESTAMP_RE = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s", _A)
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}
#: thermal zones that are off report this value
TEMP_OFFLINE_C = -256.0
#: zones that print a constant, not a measurement (JetPack 4: PMIC@100C, PMIC@50C)
PLACEHOLDER_ZONES = ("PMIC",)


def is_placeholder_temperature(zone: str, celsius: float) -> bool:
    """Jetson's PMIC-Die zone reads a constant (100 C on Nano/TX1/TX2, 50 C on others), not a temperature.
    Outside tegrastats (jtop, sysfs) a zone named PMIC* counts as one only at those exact values."""
    return zone.upper().startswith(PLACEHOLDER_ZONES) and celsius in (100.0, 50.0)


#: longer lines are cut before parsing (a real line is < 1 kB; this bounds the work on garbage)
MAX_LINE_CHARS = 16384
#: a figure with more digits is garbage (a real one has at most 7: 4266 MHz, 124486 mW)
MAX_DIGITS = 12


def _int(text: str) -> int:
    """An ASCII decimal of at most MAX_DIGITS digits (ValueError otherwise: never OverflowError)."""
    digits = text[1:] if text[:1] == "-" else text
    if not digits or len(digits) > MAX_DIGITS or digits.strip("0123456789"):
        raise ValueError("not a plausible number: %r" % text[:40])
    return int(text)


def _float(text: str) -> float:
    """``_int`` for figures that may have a fraction ("50.718")."""
    whole, _, frac = text.partition(".")
    _int(whole or "0")
    if frac:
        _int(frac)
    return float(text)


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
    temps_max_c: Dict[str, float] = field(default_factory=dict)  # JetPack 7 "zone@X.XC/Y.YC": the Y
    temps_placeholder: Dict[str, float] = field(default_factory=dict)  # PMIC@100C: a constant, not a reading
    rails_max_w: Dict[str, float] = field(default_factory=dict)  # JetPack 7 "XmW/YmW/ZmW": the Z

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
    return _int(value) * _UNIT_MB[unit.upper()]


def _parse_cpu(rec: TegrastatsLine, match: "re.Match[str]") -> None:
    shared_freq = float(_int(match.group(2))) if match.group(2) else None  # old format: CPU [a%,b%]@F
    for item in match.group(1).split(",")[:1024]:
        item = item.strip()
        if item == "off" or not item:
            rec.cpu_load_pct.append(None)
            rec.cpu_freq_mhz.append(None)
            continue
        m = _CPU_ITEM_RE.match(item)
        if m:
            try:
                load, freq = float(_int(m.group(1))), float(_int(m.group(2))) if m.group(2) else shared_freq
            except ValueError:
                m = None
        if not m:
            rec.warnings.append("unrecognised CPU entry %r in tegrastats line" % item[:40])
            rec.cpu_load_pct.append(None)
            rec.cpu_freq_mhz.append(None)
            continue
        rec.cpu_load_pct.append(load)
        rec.cpu_freq_mhz.append(freq)


def _parse_gr3d(rec: TegrastatsLine, match: "re.Match[str]") -> None:
    # "GR3D_FREQ 84%@[713]", "GR3D_FREQ @[314,314,314]" (Thor: clocks, no load), "GR3D_FREQ 32%" (no clock)
    rec.gpu_load_pct = float(_int(match.group(1))) if match.group(1) is not None else None
    if match.group(2) is not None:  # "@[305,0]": one clock per GPC ("off" for a gated GPC)
        for item in match.group(2).split(",")[:64]:
            item = item.strip()
            if item and not item.strip("0123456789") and len(item) <= MAX_DIGITS:
                rec.gpu_freqs_mhz.append(float(int(item)))
            elif item in ("", "off"):
                rec.gpu_freqs_mhz.append(None)
            else:
                rec.gpu_freqs_mhz.append(None)
                rec.warnings.append("unrecognised GR3D_FREQ clock %r in tegrastats line" % item[:40])
        clocks = [f for f in rec.gpu_freqs_mhz if f is not None]
        rec.gpu_freq_mhz = max(clocks) if clocks else None  # the GPU clock: the fastest GPC
    elif match.group(3) is not None:
        rec.gpu_freq_mhz = float(_int(match.group(3)))
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
        # "EMC_FREQ 18%@3199", "EMC_FREQ 0%", and on JetPack 7 "EMC_FREQ @4266" (clock, no load)
        for m in _EMC_RE.finditer(text):
            if m.group(1) is None and m.group(2) is None:
                continue
            rec.emc_load_pct = float(_int(m.group(1))) if m.group(1) is not None else None
            rec.emc_freq_mhz = float(_int(m.group(2))) if m.group(2) is not None else None
            return

    def gr3d() -> None:
        for m in _GR3D_RE.finditer(text):
            if m.group(1) is None and m.group(2) is None and m.group(3) is None:
                continue
            _parse_gr3d(rec, m)
            return

    def mts() -> None:
        m = _MTS_RE.search(text)
        if m:
            rec.mts_fg_pct, rec.mts_bg_pct = float(_int(m.group(1))), float(_int(m.group(2)))

    def engines() -> None:
        for name, value in _ENGINE_RE.findall(text):
            if name in _NOT_ENGINES:
                continue
            try:
                if value == "off":
                    rec.engines[name] = {"load_pct": None, "freq_mhz": None}
                elif "%@" in value:  # load%@clock
                    load, freq = value.split("%@")
                    rec.engines[name] = {"load_pct": float(_int(load)), "freq_mhz": float(_int(freq))}
                elif value.endswith("%"):  # load only
                    rec.engines[name] = {"load_pct": float(_int(value[:-1])), "freq_mhz": None}
                else:  # a clock: "APE 150", or JetPack 7's "NVENC0_FREQ @1556"
                    rec.engines[name] = {"load_pct": None, "freq_mhz": float(_int(value.lstrip("@")))}
            except ValueError:
                rec.warnings.append("unreadable engine figure %s %r in tegrastats line" % (name[:40], value[:40]))

    def temps() -> None:
        for name, value, maximum in _TEMP_RE.findall(text):
            try:
                celsius = _float(value)
                peak = _float(maximum) if maximum else None
            except ValueError:
                rec.warnings.append("unreadable temperature %s@%r in tegrastats line" % (name[:40], value[:40]))
                continue
            if name.upper() in PLACEHOLDER_ZONES:
                rec.temps_placeholder[name] = celsius
                continue
            if celsius <= TEMP_OFFLINE_C:
                rec.temps_offline.append(name)
                continue
            rec.temps_c[name] = celsius
            if peak is not None and peak > TEMP_OFFLINE_C:
                rec.temps_max_c[name] = peak

    def power() -> None:
        for name, cur, avg, peak in _RAIL_RE.findall(text):
            if name.upper() in _NOT_RAILS or name.upper() == "NC":
                continue
            try:
                watts, avg_w = _int(cur) / 1000.0, _int(avg) / 1000.0
                peak_w = _int(peak) / 1000.0 if peak else None
            except ValueError:
                rec.warnings.append("unreadable power rail %s in tegrastats line" % name[:40])
                continue
            rec.rails_w[name] = watts
            rec.rails_avg_w[name] = avg_w
            if peak_w is not None:
                rec.rails_max_w[name] = peak_w

    for name, parse in (("timestamp", timestamp), ("RAM", ram), ("SWAP", swap), ("IRAM", iram), ("CPU", cpu),
                        ("EMC", emc), ("GR3D", gr3d), ("MTS", mts), ("engine", engines),
                        ("temperature", temps), ("power", power)):
        field_of(name, parse)
    if not rec.rails_w:
        railish = [m.group(0) for m in _RAILISH_RE.finditer(text) if m.group(1).upper() not in _NOT_RAILS]
        if railish:  # printed, but not as NAME X/Y or X/Y/Z: a format change, not a permission problem
            rec.warnings.append("power rails in a format this parser does not know (e.g. %r): no power figures"
                                % railish[0][:60])
        else:
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


#: longer command output is cut before parsing (real output is a few lines; this bounds the work)
MAX_COMMAND_CHARS = 1 << 20
_NVP_RE = re.compile(r"NV Power Mode[ \t]*:[ \t]*(\S{1,128})")


def _text_of(text: Any) -> str:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[:MAX_COMMAND_CHARS]).decode("utf-8", "replace")
    return str(text or "")[:MAX_COMMAND_CHARS]


def parse_nvpmodel_q(text: str) -> NvpModel:
    """``nvpmodel -q``: "NV Power Mode: MAXN" then the mode number (warnings may precede them)."""
    text = _text_of(text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        m = _NVP_RE.match(line)
        if m:
            mode_id = None
            if i + 1 < len(lines):
                try:  # ASCII digits only ("²".isdigit() is True, int("²") is not a number)
                    mode_id = _int(lines[i + 1])
                except ValueError:
                    mode_id = None
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
    """``Key=value`` words of a line (split on whitespace: linear, whatever the line holds)."""
    out: Dict[str, str] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if eq and key and value and key.isidentifier() and key not in out:
            out[key] = value
    return out


def _mhz(value: Optional[str], divisor: float) -> Optional[float]:
    """A frequency in kHz/Hz as MHz; None for anything that is not a plain ASCII number."""
    if value is None:
        return None
    try:
        return _int(value) / divisor
    except ValueError:
        return None


_CPU_LINE_RE = re.compile(r"(cpu[0-9]{1,6})[ \t]*:[ \t]*(.*)")


def parse_jetson_clocks_show(text: str) -> JetsonClocksState:
    """``jetson_clocks --show``: CPU frequencies in kHz, GPU and EMC in Hz."""
    state = JetsonClocksState()
    text = _text_of(text)
    for raw in text.splitlines():
        line = raw.strip()
        m = _CPU_LINE_RE.match(line)
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
        m = _NVP_RE.match(line)
        if m:
            state.power_mode = m.group(1)
    if not state.cpus and state.gpu is None:
        state.warnings.append("no cpu/GPU lines in jetson_clocks --show output: %r" % text[:200])
    return state
