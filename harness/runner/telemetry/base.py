"""The telemetry source protocol, the registry and small stdlib helpers.

A source is a small class registered by name. It is built from one config dict (validated when it
is built), reads every path relative to a ``root`` directory (so tests pass a fake sysfs/procfs
tree) and runs commands through an injectable ``command_runner``. ``read()`` returns named
numbers at one instant; keys are ``QUANTITY`` or ``QUANTITY:CHANNEL`` where QUANTITY is one of

    power_w     instantaneous power (the bare key is the source's total)
    energy_j    a monotonic energy counter in joules, already unwrapped (bare key = total)
    mem_mb      memory in MiB
    temp_c      temperature in degrees Celsius
    clock_mhz   clock frequency in MHz
    util_pct    utilisation in percent

A value that could not be read is None and the source records a warning with ``warn()``; a
source never invents a number. ``snapshot()`` may add strings (governors, power mode) and
``clock_max_mhz`` / ``clock_hw_max_mhz`` keys for the throttling guard.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

CommandResult = Tuple[int, str, str]  # (returncode, stdout, stderr)
CommandRunner = Callable[[Sequence[str], float], CommandResult]
Clock = Callable[[], int]
Values = Dict[str, Optional[float]]

#: the key a source may add to read() to say when its data was really taken (perf_counter_ns)
TIMESTAMP_KEY = "_t_ns"

QUANTITIES = ("power_w", "energy_j", "mem_mb", "temp_c", "clock_mhz", "util_pct")

# The only module-level mutable state: name -> source class.
_REGISTRY: Dict[str, Type["TelemetrySource"]] = {}


class SourceUnavailable(RuntimeError):
    """The source cannot work on this machine; the message says what to do about it."""


class SourceConfigError(ValueError):
    """The source's configuration is invalid; the message names the option."""


def register_source(name: str) -> Callable[[Type["TelemetrySource"]], Type["TelemetrySource"]]:
    """Class decorator: make a TelemetrySource subclass buildable by ``name``."""

    def decorate(cls: Type["TelemetrySource"]) -> Type["TelemetrySource"]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError("telemetry source %r is already registered by %s" % (name, existing.__name__))
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_sources() -> List[str]:
    """Names of every registered source (whether or not it works on this machine)."""
    return sorted(_REGISTRY)


def source_class(name: str) -> Optional[Type["TelemetrySource"]]:
    return _REGISTRY.get(name)


def run_command(argv: Sequence[str], timeout_s: float) -> CommandResult:
    """Run a command, never raising: 127 = not found, 124 = timed out, 126 = could not start."""
    try:
        proc = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=timeout_s,
            universal_newlines=True,
        )
    except FileNotFoundError:
        return 127, "", "command not found: %s" % (argv[0] if argv else "")
    except subprocess.TimeoutExpired:
        return 124, "", "%s timed out after %.1f s" % (argv[0], timeout_s)
    except OSError as exc:
        return 126, "", "%s could not start: %s" % (argv[0] if argv else "", exc)
    return proc.returncode, proc.stdout or "", proc.stderr or ""


def under_root(root: str, path: str) -> str:
    """``path`` (absolute, as on a board) inside the ``root`` directory."""
    return os.path.join(root, path.lstrip("/"))


#: sysfs/procfs files are small; a larger one is cut (bounded memory whatever the file holds)
MAX_READ_CHARS = 4 << 20
#: digits in a plausible sysfs figure (energy_uj wraps at ~2**40 (13 digits), clocks in Hz have 10)
MAX_NUMBER_CHARS = 32


def read_text(path: str) -> str:
    """The text of a (small) sysfs/procfs file, at most MAX_READ_CHARS; raises OSError like open().

    Bytes that are not UTF-8 become U+FFFD (a garbled block name in mem_cmm_info must not cost the
    summary line); a number file with such bytes then fails in ``parse_number`` with ValueError."""
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        return handle.read(MAX_READ_CHARS)


def parse_number(text: str) -> float:
    """A sysfs number ("48843\\n", "2133000000", "3.5"); raises ValueError on anything else
    (non-ASCII digits, absurd lengths, NaN/inf) - never OverflowError."""
    token = text.strip().split()[0] if text.strip() else ""
    if not token or len(token) > MAX_NUMBER_CHARS or not token.isascii():
        raise ValueError("not a plausible number: %r" % token[:40])
    try:
        value = float(int(token)) if token.lstrip("-").isdigit() else float(token)
    except OverflowError:
        raise ValueError("number out of range: %r" % token[:40])
    if math.isnan(value) or math.isinf(value):
        raise ValueError("not a finite number: %r" % token)
    return value


def short_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return "%s (%s)" % (exc.strerror, type(exc).__name__)
    return "%s: %s" % (type(exc).__name__, exc)


class CounterUnwrapper:
    """Turns a counter that wraps at ``max_range`` into a monotonic total.

    With a known range, a value lower than the previous one means one wrap (the counter restarted
    at 0 after ``max_range``). Without a range, a backwards step is reported as None.
    """

    def __init__(self, max_range: Optional[float]) -> None:
        self.max_range = max_range
        self.last: Optional[float] = None
        self.offset = 0.0
        self.wraps = 0

    def update(self, raw: float) -> Optional[float]:
        if self.last is not None and raw < self.last:
            if not self.max_range:
                self.last = raw
                self.offset = 0.0
                return None
            self.offset += self.max_range
            self.wraps += 1
        self.last = raw
        return raw + self.offset


class TelemetrySource:
    """Base class. Subclasses set ``kinds``/``options``, validate and probe in ``__init__``
    (raise SourceUnavailable with what to do), and implement ``read()``."""

    name = "base"
    #: what the source provides: "power", "energy", "memory", "temperature", "clock", "utilization", "state"
    kinds: Tuple[str, ...] = ()
    #: polled by the sampler thread (False: only asked for snapshots, e.g. power-mode commands)
    sampled = True
    #: option name -> default; "source", "label" and "interval_s" are always accepted
    options: Dict[str, Any] = {}
    #: minimum seconds between two reads (None: the sampler's rate); "interval_s" overrides it
    default_interval_s: Optional[float] = None
    #: told when a query's phase begins (on_phase): only an emulated source needs to know
    phase_aware = False

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        root: str = "/",
        command_runner: Optional[CommandRunner] = None,
    ) -> None:
        self.config: Dict[str, Any] = self._validate(dict(config or {}))
        self.root = root
        self.run_command: CommandRunner = command_runner or run_command
        self.label: str = str(self.config.get("label") or self.name)
        self.covers: str = ""
        #: energy_j is a counter and is preferred over power_w for this source
        self.counter = False
        #: the clock used for timestamps a source takes itself; the Sampler sets its own
        self.clock: Clock = time.perf_counter_ns
        #: warnings found while building the source (build_sources reports them)
        self.setup_warnings: List[str] = []
        self._pending: List[str] = []
        interval = self.config.get("interval_s", self.default_interval_s)
        if interval is not None:
            try:
                interval = float(interval)
            except (TypeError, ValueError):
                raise SourceConfigError("interval_s must be a number of seconds, got %r" % (interval,))
            if interval <= 0:
                raise SourceConfigError("interval_s must be > 0, got %r" % (interval,))
        self.interval_s: Optional[float] = interval

    # -- configuration --------------------------------------------------------------------------
    def _validate(self, config: Dict[str, Any]) -> Dict[str, Any]:
        known = set(self.options) | {"source", "label", "interval_s"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise SourceConfigError(
                "unknown option(s) %s for telemetry source %r; known: %s"
                % (", ".join(unknown), self.name, ", ".join(sorted(known)))
            )
        merged = dict(self.options)
        merged.update(config)
        return merged

    def path(self, board_path: str) -> str:
        return under_root(self.root, board_path)

    # -- warnings -------------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        """Record a warning for the current read (attached to that sample)."""
        if message not in self._pending:
            self._pending.append(message)

    def drain_warnings(self) -> List[str]:
        pending, self._pending = self._pending, []
        return pending

    # -- the protocol ---------------------------------------------------------------------------
    def read(self) -> Values:
        raise NotImplementedError

    def snapshot(self) -> Dict[str, Any]:
        """State right now for the throttling guard; by default the temperatures and clocks of read()."""
        if not set(self.kinds) & {"temperature", "clock", "utilization"}:
            return {}
        values = self.read()
        return {
            key: value
            for key, value in values.items()
            if key.split(":", 1)[0] in ("temp_c", "clock_mhz", "util_pct")
        }

    def describe(self) -> Dict[str, Any]:
        """Provenance: what was found, what is measured, versions."""
        return {
            "source": self.name,
            "label": self.label,
            "covers": self.covers,
            "kinds": list(self.kinds),
            "counter": self.counter,
            "interval_s": self.interval_s,
        }

    def on_phase(self, phase: str) -> None:
        """A phase began (preprocess, vision_encode, prefill, decode) or the query ended (idle).
        Real sensors measure whatever happens and ignore this."""

    def close(self) -> None:
        """Release what the source holds (processes, handles); safe to call twice."""
