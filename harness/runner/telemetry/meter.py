"""External power meters, for boards without an on-board sensor (AX650N).

``meter_command`` runs a user-configured command that prints the power; ``meter_serial`` reads
text lines that a USB/serial meter sends to a device node (or that a logger appends to a file)
and takes the watts out with a configured regular expression.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any, Dict, List, Optional, Tuple

from .base import SourceConfigError, SourceUnavailable, TelemetrySource, Values, register_source, short_error

# ASCII digits only; a number may not start inside another one (the look-behind), so a search over a
# long run of digits tries one start, not one per digit (linear, not quadratic)
_NUMBER = r"(?<![0-9.])[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_WITH_UNIT = re.compile(r"(%s)[ \t]*(mW|kW|W)(?![A-Za-z])" % _NUMBER, re.IGNORECASE)
_ANY_NUMBER = re.compile(_NUMBER)
#: a meter line longer than this is cut before parsing (a real one is a few dozen characters)
MAX_LINE_CHARS = 4096
_SCALE = {"mw": 1e-3, "w": 1.0, "kw": 1e3}
DEFAULT_COVERS = "external power meter (covers whatever it is inserted in: wall plug or DC input)"


def parse_watts(text: str, default_unit: str = "W") -> Tuple[Optional[float], Optional[str]]:
    """(watts, warning) from meter output such as "12.3", "12.3 W", "12300 mW", "P=4.1W I=0.8A".

    A number with a power unit wins; otherwise the first number, in ``default_unit``.
    """
    if not text or not text.strip():
        return None, "meter printed nothing"
    text = text[:MAX_LINE_CHARS]
    m = _WITH_UNIT.search(text)
    if m:
        value, unit = float(m.group(1)), m.group(2).lower()
    else:
        m2 = _ANY_NUMBER.search(text)
        if not m2:
            return None, "no number in meter output %r" % text.strip()[:80]
        value, unit = float(m2.group(0)), default_unit.lower()
    if unit not in _SCALE:
        return None, "unknown power unit %r" % unit
    watts = value * _SCALE[unit]
    if math.isnan(watts) or math.isinf(watts) or watts < 0:
        return None, "implausible meter reading %r" % text.strip()[:80]
    return watts, None


def _unit(config: Dict[str, Any]) -> str:
    unit = str(config.get("unit") or "W")
    if unit.lower() not in _SCALE:
        raise SourceConfigError("unit must be W, mW or kW, got %r" % unit)
    return unit


@register_source("meter_command")
class MeterCommandSource(TelemetrySource):
    """Runs ``command`` at every read (default every 0.5 s) and parses the watts it prints."""

    kinds = ("power",)
    options = {"command": None, "timeout_s": 1.0, "unit": "W", "covers": DEFAULT_COVERS}
    default_interval_s = 0.5

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        command = self.config.get("command")
        if isinstance(command, str) and command.strip():
            self.argv: List[str] = shlex.split(command)
        elif isinstance(command, (list, tuple)) and command and all(isinstance(a, str) for a in command):
            self.argv = list(command)
        else:
            raise SourceConfigError("meter_command needs 'command': a command line or a list of arguments "
                                    "that prints the power in watts")
        self.unit = _unit(self.config)
        self.timeout_s = float(self.config.get("timeout_s") or 1.0)
        self.covers = str(self.config.get("covers") or DEFAULT_COVERS)
        rc, out, err = self.run_command(self.argv, self.timeout_s)
        if rc in (126, 127):
            raise SourceUnavailable("meter command %r cannot run: %s" % (self.argv[0], (err or out).strip()))
        if rc != 0:
            self.setup_warnings.append("meter command exited %d on its first run: %s" % (rc, (err or out).strip()[:120]))
        else:
            watts, problem = parse_watts(out, self.unit)
            if problem:
                self.setup_warnings.append("meter command's first output: " + problem)

    def read(self) -> Values:
        rc, out, err = self.run_command(self.argv, self.timeout_s)
        if rc != 0:
            self.warn("meter command exited %d: %s" % (rc, (err or out).strip()[:120]))
            return {"power_w": None}
        watts, problem = parse_watts(out, self.unit)
        if problem:
            self.warn(problem)
        return {"power_w": watts}

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"command": self.argv, "unit_if_unlabelled": self.unit, "timeout_s": self.timeout_s,
                     "timing": "each reading is timed when the command returns; the meter's own averaging "
                               "window is unknown to the runner"})
        return info


@register_source("meter_serial")
class MeterSerialSource(TelemetrySource):
    """Reads newline-terminated text from ``device`` without blocking; the watts are group
    ``watts`` (or group 1) of ``pattern``. A stub by design: no meter-specific protocol
    (Modbus, binary frames) and the reading is timed when the runner reads the line."""

    kinds = ("power",)
    options = {"device": None, "pattern": r"(?P<watts>%s)[ \t]*W\b" % _NUMBER, "unit": "W", "baud": None,
               "covers": DEFAULT_COVERS}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        device = self.config.get("device")
        if not isinstance(device, str) or not device:
            raise SourceConfigError("meter_serial needs 'device': a tty (e.g. /dev/ttyUSB0) or a file a logger appends to")
        try:
            self.pattern = re.compile(str(self.config.get("pattern")))
        except re.error as exc:
            raise SourceConfigError("pattern is not a valid regular expression: %s" % exc)
        self.unit = _unit(self.config)
        self.device = self.path(device) if os.path.isabs(device) else device
        self.covers = str(self.config.get("covers") or DEFAULT_COVERS)
        self._buffer = b""
        try:
            self.fd: Optional[int] = os.open(self.device, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        except FileNotFoundError:
            raise SourceUnavailable("meter device %s not found (is the meter plugged in?)" % self.device)
        except PermissionError as exc:
            raise SourceUnavailable("meter device %s: %s; add this user to group dialout "
                                    "(sudo usermod -aG dialout $USER)" % (self.device, short_error(exc)))
        baud = self.config.get("baud")
        if baud and os.isatty(self.fd):
            self._set_baud(int(baud))
        elif baud:
            self.setup_warnings.append("baud ignored: %s is not a tty" % self.device)

    def _set_baud(self, baud: int) -> None:
        try:
            import termios
            import tty

            speed = getattr(termios, "B%d" % baud, None)
            if speed is None:
                self.setup_warnings.append("baud %d not supported by termios" % baud)
                return
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        except Exception as exc:
            self.setup_warnings.append("could not set %d baud on %s: %s" % (baud, self.device, short_error(exc)))

    def _drain(self) -> bytes:
        chunks = []
        while self.fd is not None:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                break
            except OSError as exc:
                self.warn("reading %s failed: %s" % (self.device, short_error(exc)))
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def read(self) -> Values:
        self._buffer += self._drain()
        if b"\n" not in self._buffer:
            if len(self._buffer) > 65536:
                self.warn("no newline in 64 KiB from %s: is it a text meter?" % self.device)
                self._buffer = b""
            return {}  # nothing new: no sample
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in reversed(lines):
            line = raw[:MAX_LINE_CHARS].decode("utf-8", "replace").strip()
            if not line:
                continue
            m = self.pattern.search(line)
            if not m:
                continue
            text = m.group("watts") if "watts" in self.pattern.groupindex else m.group(1) if m.groups() else m.group(0)
            watts, problem = parse_watts(text, self.unit)
            if problem:
                self.warn(problem)
            return {"power_w": watts}
        self.warn("no line matched pattern %r (last: %r)" % (self.pattern.pattern, lines[-1][:80]))
        return {"power_w": None}

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"device": self.device, "pattern": self.pattern.pattern, "unit_if_unlabelled": self.unit,
                     "stub": "line protocol only; each reading is timed when the runner reads it"})
        return info

    def close(self) -> None:
        fd, self.fd = getattr(self, "fd", None), None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
