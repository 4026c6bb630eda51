"""devices.yaml: what each board is, how we reach it and what runs on it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .yaml_lines import DEVICES_LIMITS, ConfigError, format_validation_error, gc_paused, load_yaml

BOARD_TYPES = ("ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc", "local")
BoardType = Literal["ax650n", "orin-nano", "agx-orin", "upsquared-n", "rtx-pc", "local"]

# Names end up in paths, table cells and SQL rows: keep them to a safe, readable alphabet.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SECRET_KEYS = {"password", "passphrase", "secret", "token"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MakeSpec(_Strict):
    """A random-weight model built on the controller by `bench models make` when missing."""

    arch: Literal["qwen2.5-vl", "qwen2-vl"] = "qwen2.5-vl"
    preset: Literal["tiny", "small", "3b"] = "small"
    seed: int = 0


class ModelVariant(_Strict):
    variant: str = Field(pattern=NAME_PATTERN)
    path: Optional[str] = None  # on the board
    make: Optional[MakeSpec] = None  # local devices only
    quantization: str = "none"
    options: Dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelVariant":
        if (self.path is None) == (self.make is None):
            raise ValueError("give exactly one of 'path' (a model on the device) or 'make'")
        return self


class Timeouts(_Strict):
    connect_s: float = Field(10.0, gt=0)
    command_s: float = Field(120.0, gt=0)
    run_s: float = Field(3600.0, gt=0)  # a runner still going after this is killed
    lease_s: float = Field(7200.0, gt=0)


class DeviceConfig(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    type: BoardType
    transport: Literal["local", "ssh"] = "ssh"
    host: Optional[str] = None
    port: int = Field(22, ge=1, le=65535)
    user: Optional[str] = None
    key_file: Optional[str] = None
    use_agent: bool = False
    password_env: Optional[str] = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    python: Optional[str] = None  # default: python3 over SSH, the controller's own python locally
    workdir: str = "~/.edge-vlm-bench"
    tags: List[str] = Field(default_factory=list)
    backend: str
    backend_options: Dict[str, Any] = Field(default_factory=dict)
    models: List[ModelVariant] = Field(min_length=1)
    # telemetry sources ([] = the board type's defaults); sampling rate; idle power measured
    # before the run for this many seconds (0 = no idle baseline)
    telemetry: List[Dict[str, Any]] = Field(default_factory=list)
    telemetry_rate_hz: float = Field(10.0, gt=0, le=1000)
    idle_s: float = Field(2.0, ge=0, le=600)
    expect: Dict[str, Any] = Field(default_factory=dict)  # power mode, governor ...
    price_usd: Optional[float] = Field(None, ge=0)
    memory_bandwidth_gbps: Optional[float] = Field(None, gt=0)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in _SECRET_KEYS:
                    raise ValueError(
                        "field %r: secrets are never stored in devices.yaml; use key_file, "
                        "use_agent: true, or password_env: NAME_OF_AN_ENVIRONMENT_VARIABLE" % key
                    )
        return data

    @field_validator("workdir")
    @classmethod
    def _workdir_confined(cls, workdir: str) -> str:
        # the runner, runs/ and the board's lease are written under the workdir (as root on some
        # boards): it must name one directory, never climb out of the one it names
        if not workdir.strip() or any(ch in workdir for ch in "\x00\n\r"):
            raise ValueError("give a directory path on one line")
        if ".." in workdir.replace("\\", "/").split("/"):
            raise ValueError(
                "'..' is refused: the runner, runs/ and the lease file are written under the workdir, "
                "and '..' would put them outside the directory it names; give that directory itself"
            )
        return workdir

    @field_validator("tags")
    @classmethod
    def _tags_safe(cls, tags: List[str]) -> List[str]:
        for tag in tags:
            if not re.match(NAME_PATTERN, tag):
                raise ValueError("tag %r: use letters, digits, '.', '_' and '-'" % tag)
        return tags

    @model_validator(mode="after")
    def _transport_matches(self) -> "DeviceConfig":
        if self.type == "local" and self.transport != "local":
            raise ValueError("a 'local' device uses transport: local")
        if self.transport == "local":
            for model in self.models:
                if model.make is None and model.path is None:
                    raise ValueError("model %r has no path" % model.variant)
        else:
            for model in self.models:
                if model.make is not None:
                    raise ValueError(
                        "model %r: 'make' builds on the controller and works for local devices "
                        "only; give the model's path on the board" % model.variant
                    )
        names = [m.variant for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model variant names must be unique per device: %s" % names)
        return self

    def variant(self, name: str) -> ModelVariant:
        for model in self.models:
            if model.variant == name:
                return model
        raise ConfigError(
            "device %r has no model variant %r; it has: %s"
            % (self.name, name, ", ".join(m.variant for m in self.models))
        )


class DevicesFile(_Strict):
    # the project's own known_hosts for these devices (relative to this file); default
    # results/known_hosts
    known_hosts: Optional[str] = None
    devices: List[DeviceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "DevicesFile":
        seen = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError("device name %r appears twice" % device.name)
            seen.add(device.name)
        return self


class Inventory:
    """The loaded devices file, with the line each device was defined on."""

    def __init__(self, path: Path, devices: List[DeviceConfig], lines: Dict[str, int],
                 known_hosts: Optional[Path] = None) -> None:
        self.path = path
        self.devices = devices
        self._lines = lines
        self.known_hosts = known_hosts  # None: the default under the results directory

    def names(self) -> List[str]:
        return [d.name for d in self.devices]

    def where(self, name: str) -> str:
        return "%s:%d" % (self.path, self._lines.get(name, 1))

    def get(self, name: str) -> DeviceConfig:
        for device in self.devices:
            if device.name == name:
                return device
        raise ConfigError(
            "unknown device %r; devices in %s: %s" % (name, self.path, ", ".join(self.names()))
        )

    def select(self, selector: str) -> List[DeviceConfig]:
        """`all`, device names, `tag:NAME`, `type:BOARD`, comma-separated; order kept, no repeats."""
        chosen: List[DeviceConfig] = []
        parts = [p.strip() for p in selector.split(",") if p.strip()]
        if not parts:
            raise ConfigError("no devices selected; use --devices all, a name, tag:NAME or type:TYPE")
        for part in parts:
            if part == "all":
                matched = list(self.devices)
            elif part.startswith("tag:"):
                tag = part[4:]
                matched = [d for d in self.devices if tag in d.tags]
                if not matched:
                    tags = sorted({t for d in self.devices for t in d.tags})
                    raise ConfigError("no device has tag %r; tags in use: %s" % (tag, ", ".join(tags)))
            elif part.startswith("type:"):
                board = part[5:]
                if board not in BOARD_TYPES:
                    raise ConfigError(
                        "unknown board type %r; types: %s" % (board, ", ".join(BOARD_TYPES))
                    )
                matched = [d for d in self.devices if d.type == board]
                if not matched:
                    raise ConfigError("no device of type %r in %s" % (board, self.path))
            else:
                matched = [self.get(part)]
            for device in matched:
                if device not in chosen:
                    chosen.append(device)
        return chosen


# What a device's measurements depend on: a resumed run must measure with the same settings.
# (Timeouts, tags, prices and the description may change between the start and a resume.)
RUN_SETTINGS = ("type", "transport", "host", "port", "user", "python", "workdir", "backend",
                "backend_options", "models", "telemetry", "telemetry_rate_hz", "idle_s", "expect")


def run_settings(device: DeviceConfig) -> Dict[str, Any]:
    """The settings of ``device`` a run records, as plain JSON values."""
    return device.model_dump(mode="json", include=set(RUN_SETTINGS))


def settings_differences(recorded: Dict[str, Any], device: DeviceConfig) -> List[str]:
    """'field: recorded -> now' for every run setting of ``device`` that differs from ``recorded``."""
    now = run_settings(device)
    return ["%s: %s -> %s" % (name, _short(recorded.get(name)), _short(now.get(name)))
            for name in RUN_SETTINGS if name in recorded and recorded.get(name) != now.get(name)]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_devices(path: Path) -> Inventory:
    data, lines = load_yaml(path, DEVICES_LIMITS)
    if not isinstance(data, dict):
        raise ConfigError("%s:1: expected a mapping with a 'devices:' list" % path)
    with gc_paused():  # ~200,000 pydantic objects for 10,000 devices (or as many errors): see gc_paused
        try:
            parsed = DevicesFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(path, exc, lines)) from None
    device_lines = {d.name: lines.get(("devices", i), 1) for i, d in enumerate(parsed.devices)}
    known_hosts = None
    if parsed.known_hosts:
        known_hosts = (path.parent / Path(parsed.known_hosts).expanduser()).resolve()
    return Inventory(path, parsed.devices, device_lines, known_hosts)
