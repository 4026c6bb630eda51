"""`bench devices check`: can we benchmark on this board, and what will we find there?

Two round trips, both tolerant: a POSIX-shell probe (works with no usable Python at all) for the
OS, memory, disk, tools and power settings, then a stdlib-only Python probe that imports each
backend / telemetry module in its own child process (a native library that segfaults or hangs on
import costs that one module, not the report). Every failure becomes a message in ``errors``;
check_device itself never raises.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

from .transport import CommandTimeout, Transport, TransportError

MIN_PYTHON = (3, 8)  # the oldest board OS the runner supports (ARCHITECTURE.md)

DEFAULT_MODULES = ("torch", "transformers", "openvino_genai", "jtop", "pynvml", "llama_cpp", "axengine")

# distribution names for modules whose import name differs (their version when __version__ is absent)
_DISTRIBUTIONS = {
    "openvino_genai": "openvino-genai",
    "jtop": "jetson-stats",
    "pynvml": "nvidia-ml-py",
    "llama_cpp": "llama-cpp-python",
    "axengine": "axengine",
}

# readable files and commands that telemetry sources depend on (FACTS.md)
TELEMETRY_FILES = {
    "jtop_socket": "/run/jtop.sock",
    "ax_cmm": "/proc/ax_proc/mem_cmm_info",
    "ax_npu_top": "/proc/ax_proc/npu/top",
    "thermal_zone0": "/sys/class/thermal/thermal_zone0/temp",
    "intel_rapl": "/sys/class/powercap/intel-rapl:0/energy_uj",
}
TELEMETRY_COMMANDS = ("tegrastats", "nvidia-smi", "nvpmodel", "jetson_clocks", "axcl-smi")
# what SSHTransport and the lease need on the board
REQUIRED_TOOLS = ("sh", "setsid", "nohup", "flock", "sed")

_SHELL_PROBE = r"""
wd=$1; shift
case $wd in "~") wd=$HOME ;; "~/"*) wd=$HOME/${wd#"~/"} ;; esac
one() { printf '%s=%s\n' "$1" "$(echo "$2" | tr '\n' ' ' | sed 's/ *$//')"; }
one arch "$(uname -m 2>&1)"
one os "$(uname -s 2>&1)"
one kernel "$(uname -r 2>&1)"
one hostname "$(uname -n 2>&1)"
[ -r /etc/os-release ] && one os_release "$(. /etc/os-release 2>/dev/null; echo "$PRETTY_NAME")"
[ -r /proc/meminfo ] && one mem_total_kb "$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
[ -r /proc/meminfo ] && one mem_available_kb "$(sed -n 's/^MemAvailable: *\([0-9]*\).*/\1/p' /proc/meminfo)"
d=$wd
while [ -n "$d" ] && [ ! -d "$d" ]; do d=$(dirname "$d"); done
one disk_path "$d"
one disk_free_kb "$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
cpu=/sys/devices/system/cpu/cpu0/cpufreq
[ -r $cpu/scaling_governor ] && one governor "$(cat $cpu/scaling_governor)"
[ -r $cpu/scaling_cur_freq ] && one cpu0_cur_khz "$(cat $cpu/scaling_cur_freq)"
[ -r $cpu/scaling_max_freq ] && one cpu0_max_khz "$(cat $cpu/scaling_max_freq)"
command -v nvpmodel >/dev/null 2>&1 && one nvpmodel "$(nvpmodel -q 2>&1 | head -n 3)"
for t in "$@"; do
  case $t in
    file:*) p=${t#file:}; [ -r "$p" ] || [ -S "$p" ] && one "$t" yes || one "$t" no ;;
    cmd:*) command -v "${t#cmd:}" >/dev/null 2>&1 && one "$t" yes || one "$t" no ;;
  esac
done
"""

# Runs with the board's python; old-syntax-safe so even a too-old Python reports its version.
_PYTHON_PROBE = r"""
import json, subprocess, sys, time
budget = float(sys.argv[1]); dists = json.loads(sys.argv[2]); names = sys.argv[3:]
start = time.time()
report = {"version": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable,
          "implementation": sys.platform, "modules": {}}
child = (
    "import importlib, sys\n"
    "name, dist = sys.argv[1], sys.argv[2]\n"
    "m = importlib.import_module(name)\n"
    "v = getattr(m, '__version__', None)\n"
    "if v is None and dist:\n"
    "    try:\n"
    "        from importlib import metadata\n"
    "        v = metadata.version(dist)\n"
    "    except Exception:\n"
    "        v = None\n"
    "sys.stdout.write('@@version %s\\n' % (v,))\n"
)
for name in names:
    left = budget - (time.time() - start)
    if left <= 0.5:
        report["modules"][name] = {"ok": False, "version": None,
                                   "error": "not checked: the %.0f s health-check budget ran out" % budget}
        continue
    try:
        proc = subprocess.Popen([sys.executable, "-c", child, name, dists.get(name, name)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except Exception as exc:
        report["modules"][name] = {"ok": False, "version": None, "error": "cannot start python: %s" % exc}
        continue
    deadline = time.time() + left
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        report["modules"][name] = {"ok": False, "version": None,
                                   "error": "import did not finish within %.0f s" % left}
        continue
    out, err = proc.communicate()
    out = out.decode("utf-8", "replace"); err = err.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        version = None
        for line in out.splitlines():
            if line.startswith("@@version "):
                version = line[len("@@version "):].strip()
        report["modules"][name] = {"ok": True, "version": None if version in (None, "None") else version,
                                   "error": None}
    else:
        lines = [l for l in err.splitlines() if l.strip()]
        message = lines[-1] if lines else "exit code %d" % proc.returncode
        if proc.returncode < 0:
            message = "import crashed with signal %d" % -proc.returncode
        report["modules"][name] = {"ok": False, "version": None, "error": message[:500]}
sys.stdout.write("@@bench-health " + json.dumps(report) + "\n")
"""


@dataclass
class ModuleStatus:
    ok: bool
    version: Optional[str] = None
    error: Optional[str] = None


@dataclass
class HealthReport:
    """What `bench devices check` shows; ``to_dict()`` is its --json form."""

    device: str
    checked_at: float  # controller wall clock, epoch seconds
    duration_s: float = 0.0
    reachable: bool = False
    host_key: Optional[str] = None  # SHA256 fingerprint of the key the SSH connection verified
    python: str = ""
    python_version: Optional[str] = None
    python_ok: bool = False
    arch: Optional[str] = None
    os: Optional[str] = None
    kernel: Optional[str] = None
    os_release: Optional[str] = None
    hostname: Optional[str] = None
    workdir: str = ""
    disk_free_mb: Optional[float] = None
    mem_total_mb: Optional[float] = None
    mem_available_mb: Optional[float] = None
    modules: Dict[str, ModuleStatus] = field(default_factory=dict)
    telemetry: Dict[str, bool] = field(default_factory=dict)
    tools: Dict[str, bool] = field(default_factory=dict)
    power_mode: Optional[str] = None
    governor: Optional[str] = None
    cpu0_mhz: Optional[float] = None
    cpu0_max_mhz: Optional[float] = None
    errors: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Usable for a benchmark: reachable, a new enough Python, and the tools we rely on."""
        return self.reachable and self.python_ok and all(self.tools.values())

    def to_dict(self) -> Dict[str, object]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _parse_kv(text: str) -> Dict[str, str]:
    values: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _number(value: Optional[str], scale: float) -> Optional[float]:
    try:
        return round(float(value) * scale, 1) if value not in (None, "") else None
    except ValueError:
        return None


def _power_mode(nvpmodel: Optional[str]) -> Optional[str]:
    if not nvpmodel:
        return None
    match = re.search(r"NV Power Mode:\s*(\S+)", nvpmodel)
    return match.group(1) if match else nvpmodel[:80]


def check_device(
    transport: Transport,
    python: str,
    workdir: str,
    timeout_s: float = 60.0,
    modules: Sequence[str] = DEFAULT_MODULES,
) -> HealthReport:
    """Probe one board; never raises (every problem is a message in ``errors``)."""
    started = time.monotonic()
    report = HealthReport(device=transport.name, checked_at=time.time(), python=python, workdir=workdir)
    deadline = started + timeout_s
    try:
        _shell_part(transport, report, workdir, min(timeout_s, 30.0))
        if report.reachable:
            _python_part(transport, report, python, modules, max(5.0, deadline - time.monotonic()))
    except Exception as exc:  # a report with the reason beats a traceback in a table of boards
        report.errors.append(
            "%s: health check failed: %s: %s" % (transport.name, type(exc).__name__, exc))
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _shell_part(transport: Transport, report: HealthReport, workdir: str, timeout_s: float) -> None:
    probes = ["file:%s" % p for p in TELEMETRY_FILES.values()]
    probes += ["cmd:%s" % c for c in TELEMETRY_COMMANDS + REQUIRED_TOOLS]
    try:
        result = transport.run(["sh", "-c", _SHELL_PROBE, "sh", workdir] + probes, timeout_s=timeout_s)
    except CommandTimeout as exc:
        report.reachable = True  # it answered, but the probe hung (a stuck NFS mount, ...)
        report.errors.append(str(exc))
        return
    except TransportError as exc:
        report.errors.append(str(exc))
        return
    report.reachable = True
    report.host_key = getattr(transport, "host_key_fingerprint", None)
    if result.exit_code != 0:
        report.errors.append("system probe exited with %d: %s" % (
            result.exit_code, result.stderr.decode("utf-8", errors="replace").strip()[-300:]))
    values = _parse_kv(result.text())
    report.arch = values.get("arch")
    report.os = values.get("os")
    report.kernel = values.get("kernel")
    report.hostname = values.get("hostname")
    report.os_release = values.get("os_release") or None
    report.mem_total_mb = _number(values.get("mem_total_kb"), 1 / 1024)
    report.mem_available_mb = _number(values.get("mem_available_kb"), 1 / 1024)
    report.disk_free_mb = _number(values.get("disk_free_kb"), 1 / 1024)
    if report.disk_free_mb is None:
        report.errors.append("free disk space in %s is unreadable (df failed)" % workdir)
    if report.mem_total_mb is None:
        report.errors.append("memory is unreadable (/proc/meminfo)")
    report.governor = values.get("governor")
    report.cpu0_mhz = _number(values.get("cpu0_cur_khz"), 1 / 1000)
    report.cpu0_max_mhz = _number(values.get("cpu0_max_khz"), 1 / 1000)
    report.power_mode = _power_mode(values.get("nvpmodel"))
    for label, path in TELEMETRY_FILES.items():
        report.telemetry[label] = values.get("file:%s" % path) == "yes"
    for command in TELEMETRY_COMMANDS:
        report.telemetry[command] = values.get("cmd:%s" % command) == "yes"
    for tool in REQUIRED_TOOLS:
        report.tools[tool] = values.get("cmd:%s" % tool) == "yes"
    missing = [t for t, ok in report.tools.items() if not ok]
    if missing:
        report.errors.append(
            "missing on the board: %s (install util-linux / coreutils)" % ", ".join(missing))


def _python_part(transport: Transport, report: HealthReport, python: str, modules: Sequence[str],
                 timeout_s: float) -> None:
    budget = max(1.0, timeout_s - 3.0)  # leave the probe time to report after its last import
    argv = [python, "-c", _PYTHON_PROBE, "%.1f" % budget, json.dumps(_DISTRIBUTIONS)] + list(modules)
    try:
        result = transport.run(argv, timeout_s=timeout_s)
    except TransportError as exc:
        report.errors.append("python %s: %s" % (python, exc))
        return
    payload = None
    for line in result.text().splitlines():
        if line.startswith("@@bench-health "):
            payload = line[len("@@bench-health "):]
    if payload is None:
        report.errors.append("python %s did not run the probe (exit %d): %s" % (
            python, result.exit_code, result.stderr.decode("utf-8", errors="replace").strip()[-300:]))
        # a Python too old to parse the probe still says who it is
        stderr = result.stderr.decode("utf-8", errors="replace")
        version = re.search(r"Python (\d+\.\d+(\.\d+)?)", stderr)
        if version:
            report.python_version = version.group(1)
        return
    try:
        data = json.loads(payload)
    except ValueError as exc:
        report.errors.append("python probe answer unreadable: %s" % exc)
        return
    report.python_version = str(data.get("version"))
    try:
        parts = tuple(int(p) for p in report.python_version.split(".")[:2])
    except ValueError:
        parts = (0, 0)
    report.python_ok = parts >= MIN_PYTHON
    if not report.python_ok:
        report.errors.append("python %s is %s; the runner needs >= %d.%d"
                             % (python, report.python_version, *MIN_PYTHON))
    for name, status in (data.get("modules") or {}).items():
        report.modules[name] = ModuleStatus(
            bool(status.get("ok")), status.get("version"), status.get("error"))
