"""Turn a suite and a device selection into one RunSpec per device (controller side)."""

from __future__ import annotations

import datetime
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from . import __version__
from .config.devices import DeviceConfig, Inventory
from .config.suites import Suite
from .config.yaml_lines import ConfigError
from .errors import MissingError, install_hint
from .farm.controller import DevicePlan
from .models.marker import MARKER_NAME
from .runner.protocol import BackendSpec, GenerationSpec, ModelSpec, RunSpec
from .workloads import prepare_workloads


class ModelMissing(MissingError, RuntimeError):
    """A model directory named in devices.yaml does not exist (exit code 3)."""


class EngineMissing(MissingError, RuntimeError):
    """The controller needs an optional engine it does not have (exit code 3)."""


@dataclass
class Paths:
    devices_file: Path
    suites_dir: Path
    results_dir: Path
    reports_dir: Path
    store_url: Optional[str] = None  # a file, sqlite:///PATH or postgresql://...; None: store_path

    @property
    def store_path(self) -> Path:
        return self.results_dir / "bench.sqlite"

    @property
    def models_dir(self) -> Path:
        return self.results_dir / "models"


def new_run_id() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return "%s-%s" % (stamp, secrets.token_hex(3))


def controller_commit() -> str:
    """The controller's git commit (with '-dirty' for local changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_model_path(device: DeviceConfig, variant_index: int, paths: Paths,
                       notify: Callable[[str], None], build: bool = True) -> str:
    model = device.models[variant_index]
    if model.make is not None:
        target = paths.models_dir / ("%s-%s-seed%d" % (model.make.arch, model.make.preset, model.make.seed))
        if (target / MARKER_NAME).is_file() or not build:  # a dry run plans the build, does not do it
            return str(target.resolve())
        try:
            from .models import make_model
        except ImportError as exc:
            raise EngineMissing(
                "building the %s %s model needs torch and transformers (%s); %s"
                "%s" % (model.make.arch, model.make.preset, exc, install_hint("local"))
            ) from None
        notify("building random-weight %s (%s preset) into %s (once; later runs reuse it) ..."
               % (model.make.arch, model.make.preset, target))
        made = make_model(model.make.arch, model.make.preset, target, seed=model.make.seed)
        notify("built %s: %.1f M parameters in %.1f s" % (target.name, made.n_parameters / 1e6, made.seconds))
        return str(target.resolve())
    assert model.path is not None
    # the reference engine emulates its model; every other local backend needs the directory
    # (and a server's model is whatever the server serves: the path is only a label there)
    if device.transport == "local" and device.backend not in ("reference", "openai"):
        path = Path(os.path.expanduser(model.path))
        if not path.exists():
            raise ModelMissing(
                "device %r, variant %r: model directory %s does not exist; build one with "
                "`bench models make --arch qwen2.5-vl --preset small --out %s` or fix the path"
                % (device.name, model.variant, path, model.path)
            )
        return str(path.resolve())
    return model.path


def device_workdir(device: DeviceConfig) -> str:
    if device.transport == "local":
        return str(Path(os.path.expanduser(device.workdir)).resolve())
    return device.workdir


def device_python(device: DeviceConfig) -> str:
    if device.python:
        return device.python
    return sys.executable if device.transport == "local" else "python3"


def plan_run(
    suite: Suite,
    devices: List[DeviceConfig],
    inventory: Inventory,
    paths: Paths,
    notify: Callable[[str], None],
    run_id: Optional[str] = None,
    build_models: bool = True,
) -> List[DevicePlan]:
    run_id = run_id or new_run_id()
    for device in devices:
        if device.transport == "ssh" and not device.host:
            raise ConfigError(
                "device %r (%s) has no host: fill in host (and user, key_file) in %s"
                % (device.name, inventory.where(device.name), inventory.path)
            )
    prepared = prepare_workloads(suite)
    inputs = [item for p in prepared for item in p.files]
    gen = suite.config.generation
    commit = controller_commit()
    plans = []
    for device in devices:
        models = [
            ModelSpec(variant=m.variant, path=resolve_model_path(device, i, paths, notify, build_models),
                      quantization=m.quantization, options=dict(m.options))
            for i, m in enumerate(device.models)
        ]
        spec = RunSpec(
            run_id=run_id,
            device=device.name,
            suite=suite.name,
            backend=BackendSpec(name=device.backend, options=dict(device.backend_options)),
            models=models,
            workloads=[p.spec for p in prepared],
            generation=GenerationSpec(
                output_tokens=gen.output_tokens, warmup=gen.warmup,
                repetitions=gen.repetitions, timeout_s=gen.timeout_s,
                **({"until_stable": gen.until_stable.ci_width, "max_repetitions": gen.until_stable.max_repetitions,
                    "stable_metric": gen.until_stable.metric} if gen.until_stable else {}),
            ),
            telemetry=list(device.telemetry),
            device_info={"type": device.type, "expect": dict(device.expect), "tags": list(device.tags),
                         "telemetry_rate_hz": device.telemetry_rate_hz, "idle_s": device.idle_s},
            controller={"version": __version__, "git_commit": commit},
        )
        plans.append(DevicePlan(device=device, spec=spec, inputs=inputs,
                                python=device_python(device), workdir=device_workdir(device)))
    return plans
