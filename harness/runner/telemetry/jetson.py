"""Jetson sources: jtop (jetson-stats), INA3221 sysfs, tegrastats, and the power mode (nvpmodel)."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .base import (
    TIMESTAMP_KEY,
    SourceConfigError,
    SourceUnavailable,
    TelemetrySource,
    Values,
    parse_number,
    read_text,
    register_source,
    short_error,
)
from .jetson_parsers import (
    MODULES,
    TEMP_OFFLINE_C,
    RailTotal,
    is_placeholder_temperature,
    parse_jetson_clocks_show,
    parse_nvpmodel_q,
    parse_tegrastats,
    sum_rails,
)

JTOP_HINT = (
    "install jetson-stats (pip install -U jetson-stats), make sure jtop.service runs "
    "(sudo systemctl restart jtop.service) and that this user is in group jtop "
    "(sudo usermod -aG jtop $USER, then log in again)"
)


def _check_module(config: Dict[str, Any]) -> Tuple[str, Optional[List[str]]]:
    module = str(config.get("module") or "auto").lower()
    if module not in MODULES:
        raise SourceConfigError("module must be one of %s, got %r" % (", ".join(MODULES), module))
    rails = config.get("rails")
    if rails is not None and (not isinstance(rails, (list, tuple)) or not all(isinstance(r, str) for r in rails)):
        raise SourceConfigError("rails must be a list of rail names, got %r" % (rails,))
    return module, list(rails) if rails else None


def _covers(total: RailTotal) -> str:
    if total.rails_summed:
        return "Jetson module power: %s (%s)" % (" + ".join(total.rails_summed), total.method)
    return "Jetson power rails (no module total identified)"


def _rail_describe(total: Optional[RailTotal]) -> Dict[str, Any]:
    if total is None:
        return {}
    return {"rails_summed": total.rails_summed, "total_method": total.method, "caveat": total.caveat}


@register_source("jtop")
class JtopSource(TelemetrySource):
    """jtop client: instantaneous ``power`` per rail (not the ``avg`` moving average), RAM and
    NvMap memory, temperatures, GPU/EMC clocks, nvpmodel and jetson_clocks."""

    kinds = ("power", "memory", "temperature", "clock", "utilization", "state")
    options = {"module": "auto", "rails": None, "jtop_interval_s": None}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None,
                 client: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.module, self.rails = _check_module(self.config)
        self._last_total: Optional[RailTotal] = None
        self._update_ns: Optional[int] = None
        self._owns_client = client is None
        self.version = "unknown"
        if client is None:
            client = self._connect()
        self.client = client
        attach = getattr(client, "attach", None)
        if callable(attach):
            try:
                attach(self._on_update)
            except Exception as exc:  # timestamps then come from the sampler
                self.setup_warnings.append("jtop attach() failed (%s): samples are timed at read" % short_error(exc))
        self.jtop_interval_s = self._interval()
        if self.jtop_interval_s:
            self.setup_warnings.append(
                "jtop updates every %.3g s (set by jtop.service): that is its real sampling rate"
                % self.jtop_interval_s
            )
        values = self.read()
        self.drain_warnings()
        self.covers = _covers(self._last_total) if self._last_total else "Jetson power rails"
        if not any(k.startswith("power_w") for k, v in values.items() if v is not None):
            self.setup_warnings.append("jtop reports no power rails on this board")

    def _connect(self) -> Any:
        try:
            from jtop import jtop  # type: ignore  # optional: pip install jetson-stats
        except ImportError:
            raise SourceUnavailable("jtop is not importable: " + JTOP_HINT)
        try:
            import jtop as jtop_module  # type: ignore

            self.version = str(getattr(jtop_module, "__version__", "unknown"))
        except Exception:
            pass
        interval = self.config.get("jtop_interval_s")
        try:
            client = jtop(interval=float(interval)) if interval else jtop()
            client.start()
        except Exception as exc:  # JtopException: service not running / no permission on the socket
            raise SourceUnavailable("jtop service not reachable (%s): %s" % (short_error(exc), JTOP_HINT))
        return client

    def _interval(self) -> Optional[float]:
        try:
            value = getattr(self.client, "interval", None)
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def _on_update(self, *_args: Any, **_kwargs: Any) -> None:
        self._update_ns = self.clock()

    def read(self) -> Values:
        values: Values = {}
        client = self.client
        rails_w: Dict[str, Optional[float]] = {}
        try:
            power = client.power or {}
            for name, rail in (power.get("rail") or {}).items():
                rails_w[name] = self._mw(rail, name)
            tot = power.get("tot") or {}
            tot_name = tot.get("name")
            if tot_name:  # jtop moves VDD_IN / POM_5V_IN out of 'rail' into 'tot'
                rails_w[tot_name] = self._mw(tot, tot_name)
        except Exception as exc:
            self.warn("jtop power unreadable: %s" % short_error(exc))
        if rails_w:
            total = sum_rails(rails_w, self.module, self.rails)
            self._last_total = total
            for message in total.warnings:
                self.warn(message)
            values["power_w"] = total.total_w
            for name, watts in rails_w.items():
                values["power_w:" + name] = watts
        else:
            values["power_w"] = None
            self.warn("jtop reports no power rails")
        try:
            ram = (client.memory or {}).get("RAM") or {}
            values["mem_mb:ram_used"] = self._kb_to_mb(ram.get("used"))
            values["mem_mb:nvmap"] = self._kb_to_mb(ram.get("shared"))
            emc = (client.memory or {}).get("EMC") or {}
            if emc.get("cur") is not None:
                values["clock_mhz:emc"] = float(emc["cur"]) / 1000.0  # kHz
        except Exception as exc:
            self.warn("jtop memory unreadable: %s" % short_error(exc))
        try:
            for name, temp in (client.temperature or {}).items():
                celsius = temp.get("temp") if isinstance(temp, dict) else temp
                online = temp.get("online", True) if isinstance(temp, dict) else True
                if celsius is None or not online or float(celsius) <= TEMP_OFFLINE_C:
                    continue
                if is_placeholder_temperature(str(name), float(celsius)):
                    continue  # JetPack 4's PMIC@100C: a constant, not a reading
                values["temp_c:" + str(name)] = float(celsius)
        except Exception as exc:
            self.warn("jtop temperature unreadable: %s" % short_error(exc))
        try:
            for name, gpu in (client.gpu or {}).items():
                freq = gpu.get("freq") or {}
                if freq.get("cur") is not None:
                    values["clock_mhz:gpu_%s" % name] = float(freq["cur"]) / 1000.0  # kHz
                load = (gpu.get("status") or {}).get("load")
                if load is not None:
                    values["util_pct:gpu_%s" % name] = float(load)
        except Exception as exc:
            self.warn("jtop gpu unreadable: %s" % short_error(exc))
        if self._update_ns is not None:
            values[TIMESTAMP_KEY] = self._update_ns  # type: ignore[assignment]
        return values

    def _mw(self, rail: Any, name: str) -> Optional[float]:
        try:
            return float(rail["power"]) / 1000.0  # instantaneous mW; 'avg' is a moving average
        except (KeyError, TypeError, ValueError):
            self.warn("jtop rail %s has no instantaneous 'power' value" % name)
            return None

    def _kb_to_mb(self, value: Any) -> Optional[float]:
        try:
            return float(value) / 1024.0 if value is not None else None
        except (TypeError, ValueError):
            return None

    def snapshot(self) -> Dict[str, Any]:
        snap = super().snapshot()
        try:
            for name, gpu in (self.client.gpu or {}).items():
                freq = gpu.get("freq") or {}
                if freq.get("max") is not None:
                    snap["clock_max_mhz:gpu_%s" % name] = float(freq["max"]) / 1000.0
        except Exception as exc:
            self.warn("jtop gpu max clock unreadable: %s" % short_error(exc))
        nvp = getattr(self.client, "nvpmodel", None)
        if nvp is not None:
            snap["power_mode:nvpmodel"] = str(getattr(nvp, "name", None) or nvp)
        clocks = getattr(self.client, "jetson_clocks", None)
        if clocks is not None:
            try:
                snap["power_mode:jetson_clocks"] = bool(clocks)
            except Exception:
                pass
        return snap

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"jetson_stats_version": self.version, "jtop_interval_s": self.jtop_interval_s,
                     "module": self.module, "power_value": "instantaneous 'power' (mW), integrated here"})
        info.update(_rail_describe(self._last_total))
        board = getattr(self.client, "board", None)
        if isinstance(board, dict):
            info["board"] = {k: v for k, v in board.items() if k in ("hardware", "platform", "libraries")}
        return info

    def close(self) -> None:
        if self._owns_client and self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None


INA3221_GLOB = "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"
#: JetPack 4 (L4T 32.x) NVIDIA staging iio driver: rail_name_N, in_power N (mW), in_voltageN (mV),
#: in_currentN (mA), N = 0..2 (energymon's ina3221x.c, jetson-stats power.py)
INA3221X_GLOB = "/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"
#: Jetson Thor carrier: an INA238 on the board input (VIN), power1_input in microwatts (Linux ina238 hwmon
#: driver); jtop reports it as the total (jetson_stats PR #900)
INA238_GLOB = "/sys/bus/i2c/drivers/ina238/*/hwmon/hwmon*/power1_input"


@register_source("ina3221")
class Ina3221Source(TelemetrySource):
    """INA3221 power monitors through sysfs (no daemon needed): V x I per rail from hwmon
    (JetPack 5+), or the iio driver's power/voltage/current files (JetPack 4)."""

    kinds = ("power",)
    options = {"module": "auto", "rails": None}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.module, self.rails = _check_module(self.config)
        self.channels: Dict[str, Tuple[str, str]] = {}  # rail -> (voltage mV file, current mA file)
        self.power_files: Dict[str, str] = {}  # rail -> power mW file (iio driver), read instead of V x I
        self.skipped: List[str] = []
        self.interface = "hwmon"
        self.power_uw_files: Dict[str, str] = {}  # rail -> power in microwatts (INA238)
        for label_path in sorted(glob.glob(self.path(INA3221_GLOB))):
            m = re.match(r"in(\d+)_label$", os.path.basename(label_path))
            if not m:
                continue
            folder, n = os.path.dirname(label_path), m.group(1)
            label = self._label(label_path)
            if label is None:
                continue
            volt, curr = os.path.join(folder, "in%s_input" % n), os.path.join(folder, "curr%s_input" % n)
            if not os.path.exists(curr):
                self.skipped.append("%s (%s: no curr%s_input)" % (label_path, label, n))
                continue
            self._add(label, os.path.basename(os.path.dirname(os.path.dirname(folder))), volt, curr)
        if not self.channels:
            for label_path in sorted(glob.glob(self.path(INA3221X_GLOB))):
                m = re.match(r"rail_name_(\d+)$", os.path.basename(label_path))
                if not m:
                    continue
                folder, n = os.path.dirname(label_path), m.group(1)
                label = self._label(label_path)
                if label is None:
                    continue
                volt = os.path.join(folder, "in_voltage%s_input" % n)
                curr = os.path.join(folder, "in_current%s_input" % n)
                power = os.path.join(folder, "in_power%s_input" % n)
                if not os.path.exists(power) and not (os.path.exists(volt) and os.path.exists(curr)):
                    self.skipped.append("%s (%s: no in_power%s_input nor voltage/current)" % (label_path, label, n))
                    continue
                name = self._add(label, os.path.basename(os.path.dirname(folder)), volt, curr)
                if os.path.exists(power):
                    self.power_files[name] = power
                self.interface = "iio (ina3221x, JetPack 4)"
        ina238 = sorted(glob.glob(self.path(INA238_GLOB)))
        if len(ina238) == 1 and "VIN" not in self.channels:
            self.power_uw_files["VIN"] = ina238[0]
            self.channels["VIN"] = ("", "")
        elif len(ina238) > 1:
            self.skipped.extend("%s (one of %d INA238s: which is VIN is unknown)" % (p, len(ina238)) for p in ina238)
        if not self.channels:
            raise SourceUnavailable(
                "no INA3221 rails under %s or %s (not a Jetson, or the ina3221 driver is not loaded); "
                "use the jtop or tegrastats source" % (self.path("/sys/bus/i2c/drivers/ina3221"),
                                                       self.path("/sys/bus/i2c/drivers/ina3221x"))
            )
        self._total = sum_rails({k: 0.0 for k in self.channels}, self.module, self.rails)
        self.covers = _covers(self._total)
        self.setup_warnings.extend(self._total.warnings)

    def _label(self, label_path: str) -> Optional[str]:
        """The rail name in a label file, or None (recorded in ``skipped``) for NC / shunt sum."""
        try:
            label = read_text(label_path).strip()
        except (OSError, UnicodeDecodeError) as exc:
            self.setup_warnings.append("%s unreadable: %s" % (label_path, short_error(exc)))
            return None
        if not label:
            self.skipped.append("%s (empty label)" % label_path)
            return None
        if label.upper() == "NC" or label.upper().startswith("NC "):
            self.skipped.append("%s (not connected)" % label_path)
            return None
        if "sum of shunt" in label.lower():
            self.skipped.append("%s (%s)" % (label_path, label))
            return None
        return label

    def _add(self, label: str, device: str, volt: str, curr: str) -> str:
        name = label if label not in self.channels else "%s@%s" % (label, device)
        self.channels[name] = (volt, curr)
        return name

    def read(self) -> Values:
        rails_w: Dict[str, Optional[float]] = {}
        for label, (volt_path, curr_path) in self.channels.items():
            try:
                uw_path = self.power_uw_files.get(label)
                if uw_path is not None:
                    rails_w[label] = parse_number(read_text(uw_path)) / 1e6  # microwatts
                    continue
                power_path = self.power_files.get(label)
                if power_path is not None:
                    rails_w[label] = parse_number(read_text(power_path)) / 1000.0  # mW
                    continue
                mv = parse_number(read_text(volt_path))
                ma = parse_number(read_text(curr_path))
                rails_w[label] = mv * ma / 1e6
            except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
                self.warn("INA3221 rail %s unreadable: %s" % (label, short_error(exc)))
                rails_w[label] = None
        total = sum_rails(rails_w, self.module, self.rails)
        for message in total.warnings:
            self.warn(message)
        values: Values = {"power_w": total.total_w}
        for label, watts in rails_w.items():
            values["power_w:" + label] = watts
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        rails: Dict[str, Any] = {}
        for k, (v, c) in self.channels.items():
            rails[k] = {"volt_mV": v, "curr_mA": c}
            if k in self.power_files:
                rails[k]["power_mW"] = self.power_files[k]
            if k in self.power_uw_files:
                rails[k] = {"power_uW": self.power_uw_files[k], "chip": "INA238 (board input)"}
        info.update({"module": self.module, "rails": rails, "skipped": self.skipped, "interface": self.interface})
        info.update(_rail_describe(self._total))
        return info


@register_source("tegrastats")
class TegrastatsSource(TelemetrySource):
    """Runs ``tegrastats --interval N`` and keeps its latest line (timed when it arrived)."""

    kinds = ("power", "memory", "temperature", "clock", "utilization")
    options = {"module": "auto", "rails": None, "command": "tegrastats", "tegrastats_interval_ms": 100,
               "stale_s": 2.0}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None,
                 lines: Optional[Iterable[str]] = None) -> None:
        super().__init__(config, root, command_runner)
        self.module, self.rails = _check_module(self.config)
        self._lock = threading.Lock()
        self._latest: Optional[Tuple[int, str]] = None
        self._last_total: Optional[RailTotal] = None
        self._proc: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self.n_lines = 0
        interval_ms = int(self.config.get("tegrastats_interval_ms") or 100)
        self.argv = [str(self.config.get("command") or "tegrastats"), "--interval", str(interval_ms)]
        self.covers = "Jetson power rails from tegrastats"
        if lines is not None:  # lines fed by the caller (tests, or a log being replayed)
            for line in lines:
                self.feed_line(line)
            return
        try:
            self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL, universal_newlines=True, bufsize=1)
        except OSError as exc:
            raise SourceUnavailable("cannot run %s (%s): tegrastats ships with JetPack (L4T); "
                                    "use the jtop or ina3221 source elsewhere" % (self.argv[0], short_error(exc)))
        self._thread = threading.Thread(target=self._pump, name="tegrastats-reader", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            self.feed_line(line)

    def feed_line(self, line: str, t_ns: Optional[int] = None) -> None:
        """Hand one tegrastats line to the source, timed at ``t_ns`` (default: now)."""
        with self._lock:
            self._latest = (self.clock() if t_ns is None else t_ns, line)
            self.n_lines += 1

    def read(self) -> Values:
        with self._lock:
            latest = self._latest
        if latest is None:
            self.warn("no tegrastats line received yet")
            return {"power_w": None}
        t_ns, line = latest
        age_s = (self.clock() - t_ns) / 1e9
        if age_s > float(self.config.get("stale_s") or 2.0):
            self.warn("last tegrastats line is %.1f s old (tegrastats stopped?)" % age_s)
            return {"power_w": None}
        try:
            rec = parse_tegrastats(line)
        except Exception as exc:  # a parser bug must cost one sample, never the sampler
            self.warn("tegrastats line unparsable (%s): %r" % (short_error(exc), str(line)[:120]))
            values_none: Values = {"power_w": None, TIMESTAMP_KEY: t_ns}  # type: ignore[dict-item]
            return values_none
        for message in rec.warnings:
            self.warn(message)
        values, total = rec.values(self.module, self.rails)
        if rec.rails_w:
            self._last_total = total
            self.covers = _covers(total)
            for message in total.warnings:
                self.warn(message)
        values[TIMESTAMP_KEY] = t_ns  # type: ignore[assignment]
        return values

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"command": self.argv, "lines_received": self.n_lines, "module": self.module,
                     "power_value": "instantaneous (first) figure of each rail; the running average is ignored"})
        info.update(_rail_describe(self._last_total))
        return info

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2)


@register_source("jetson_mode")
class JetsonModeSource(TelemetrySource):
    """Power mode (``nvpmodel -q``) and clocks (``jetson_clocks --show``), for snapshots only."""

    kinds = ("state", "clock")
    sampled = False
    options = {"show_clocks": True, "sudo": False, "timeout_s": 10.0}

    def __init__(self, config: Optional[Dict[str, Any]] = None, root: str = "/", command_runner: Any = None) -> None:
        super().__init__(config, root, command_runner)
        self.covers = "Jetson power mode and clocks"
        self.last_mode: Optional[str] = None
        prefix = ["sudo", "-n"] if self.config.get("sudo") else []
        self.nvpmodel_argv = ["nvpmodel", "-q"]
        self.clocks_argv = prefix + ["jetson_clocks", "--show"]
        rc, out, err = self.run_command(self.nvpmodel_argv, float(self.config["timeout_s"]))
        if rc == 127:
            raise SourceUnavailable("nvpmodel not found: not a Jetson, or JetPack's nvpmodel is not installed")
        parsed = parse_nvpmodel_q(out)
        if rc != 0 or parsed.name is None:
            self.setup_warnings.append("nvpmodel -q failed (rc %d): %s" % (rc, (err or out).strip()[:200]))
        self.last_mode = parsed.name

    def read(self) -> Values:
        return {}

    def snapshot(self) -> Dict[str, Any]:
        snap: Dict[str, Any] = {}
        timeout = float(self.config["timeout_s"])
        rc, out, err = self.run_command(self.nvpmodel_argv, timeout)
        parsed = parse_nvpmodel_q(out)
        if rc != 0 or parsed.name is None:
            self.warn("nvpmodel -q failed (rc %d): %s" % (rc, (err or out).strip()[:200]))
        else:
            snap["power_mode:nvpmodel"] = parsed.name
            if parsed.mode_id is not None:
                snap["power_mode:nvpmodel_id"] = parsed.mode_id
            self.last_mode = parsed.name
        if self.config.get("show_clocks"):
            rc, out, err = self.run_command(self.clocks_argv, timeout)
            if rc != 0:
                self.warn("jetson_clocks --show failed (rc %d: %s): it needs root - run the runner with sudo, "
                          "or set sudo: true with a sudoers rule for 'jetson_clocks --show'"
                          % (rc, (err or out).strip()[:120]))
            else:
                state = parse_jetson_clocks_show(out)
                for message in state.warnings:
                    self.warn(message)
                locked = state.locked
                if locked is not None:
                    snap["power_mode:jetson_clocks"] = locked
                for cpu, dom in state.cpus.items():
                    if not dom.online:
                        continue
                    snap["clock_mhz:%s" % cpu] = dom.cur_mhz
                    snap["clock_max_mhz:%s" % cpu] = dom.max_mhz
                    if dom.governor:
                        snap["governor:%s" % cpu] = dom.governor
                for name, dom in (("gpu", state.gpu), ("emc", state.emc)):
                    if dom is not None:
                        snap["clock_mhz:%s" % name] = dom.cur_mhz
                        snap["clock_max_mhz:%s" % name] = dom.max_mhz
        return snap

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info.update({"nvpmodel": self.last_mode, "commands": [self.nvpmodel_argv, self.clocks_argv]})
        return info
