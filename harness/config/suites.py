"""suites/*.yaml: the workloads, prompt and generation settings of a benchmark suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..eval.config import AccuracyConfig
from .devices import NAME_PATTERN
from .sweep import SloConfig, SweepConfig, expand, slo_only, validate_against
from .yaml_lines import ConfigError, format_validation_error, load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadConfig(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["image", "video"]
    source: str  # a photograph, relative to the suite file
    size: Tuple[int, int]  # width, height of each frame
    frames: int = Field(1, ge=1, le=256)
    fps: float = Field(2.0, gt=0)
    prompt: Optional[str] = None  # defaults to the suite's prompt
    # set per sweep point (config/sweep.py); may also be given on a plain workload
    output_tokens: Optional[int] = Field(None, ge=2, le=8192)  # overrides generation.output_tokens
    concurrency: int = Field(1, ge=1, le=1024)  # streams at once (server backends)
    params: Dict[str, Any] = Field(default_factory=dict)  # the sweep point, copied into each record

    @model_validator(mode="after")
    def _frames_match_kind(self) -> "WorkloadConfig":
        if self.kind == "image" and self.frames != 1:
            raise ValueError("an image workload has frames: 1")
        if self.kind == "video" and self.frames < 2:
            raise ValueError("a video workload needs at least 2 frames")
        if min(self.size) < 28 or max(self.size) > 4096:
            raise ValueError("size must be between 28 and 4096 pixels per side")
        return self


class UntilStableConfig(_Strict):
    """Repeat past `repetitions` until the 95% CI of the median of `metric` is within `ci_width`
    of the median (relative), or `max_repetitions` measured repetitions (harness/runner/stability.py)."""

    ci_width: float = Field(gt=0, le=10)
    max_repetitions: int = Field(30, ge=1, le=10000)
    metric: Literal["ttft_ms", "e2e_ms", "decode_tps", "tpot_ms", "prefill_ms", "vision_encode_ms",
                    "preprocess_ms"] = "e2e_ms"


class GenerationConfig(_Strict):
    output_tokens: int = Field(32, ge=2, le=8192)
    warmup: int = Field(1, ge=0, le=100)
    repetitions: int = Field(5, ge=1, le=10000)
    timeout_s: float = Field(1800.0, gt=0)
    until_stable: Optional[UntilStableConfig] = None

    @model_validator(mode="after")
    def _cap_covers_the_planned(self) -> "GenerationConfig":
        if self.until_stable is not None and self.until_stable.max_repetitions < self.repetitions:
            raise ValueError("until_stable.max_repetitions (%d) must be >= repetitions (%d)"
                             % (self.until_stable.max_repetitions, self.repetitions))
        return self


class SuiteConfig(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    prompt: str = "Describe what you see."
    workloads: List[WorkloadConfig] = Field(min_length=1)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    # per-metric practical thresholds for regressions, e.g. {"ttft_ms": 0.05}
    thresholds: Dict[str, float] = Field(default_factory=dict)
    # an lm-eval task answered on the board by every model variant (harness/eval)
    accuracy: Optional[AccuracyConfig] = None
    # scaling: one workload per sweep point; concurrency levels; the SLO goodput is measured against
    sweep: Optional[SweepConfig] = None
    concurrency: Optional[List[int]] = Field(None, min_length=1)
    slo: Optional[SloConfig] = None

    @model_validator(mode="after")
    def _unique(self) -> "SuiteConfig":
        validate_against(self.workloads, self.sweep)
        if any(not 1 <= c <= 1024 for c in self.concurrency or []):
            raise ValueError("concurrency levels must be between 1 and 1024")
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names):
            raise ValueError("workload names must be unique: %s" % names)
        return self


class Suite:
    """A validated suite plus where it was read from (media paths are relative to it)."""

    def __init__(self, path: Path, config: SuiteConfig) -> None:
        self.path = path
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def source_path(self, workload: WorkloadConfig) -> Path:
        return (self.path.parent / workload.source).resolve()


def list_suites(suites_dir: Path) -> Dict[str, Path]:
    """Suite name (file stem) -> file, for every suites/*.yaml."""
    if not suites_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(suites_dir.glob("*.yaml"))}


def load_suite(path: Path) -> Suite:
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("%s:1: expected a mapping (name, workloads, generation ...)" % path)
    try:
        config = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, lines)) from None
    suite = Suite(path, config)
    for index, workload in enumerate(config.workloads):
        line = lines.get(("workloads", index, "source"), 1)
        try:
            source = suite.source_path(workload)
            found = source.is_file()
        except (OSError, ValueError) as exc:  # a name too long for the filesystem, a NUL byte
            raise ConfigError("%s:%d: workloads.%d.source: not a usable file name: %s"
                              % (path, line, index, exc.strerror if isinstance(exc, OSError) else exc)) from None
        if not found:
            raise ConfigError(
                "%s:%d: workloads.%d.source: file not found: %s" % (path, line, index, source)
            )
    if config.sweep is not None or config.concurrency:  # every sweep point becomes a workload
        suite.config = config.model_copy(update={"workloads": expand(
            config.workloads, config.prompt, config.sweep, config.concurrency, config.slo)})
    elif config.slo is not None:
        suite.config = config.model_copy(update={"workloads": slo_only(config.workloads, config.slo)})
    return suite


def find_suite(name: str, suites_dir: Path) -> Suite:
    known = list_suites(suites_dir)
    if name in known:
        return load_suite(known[name])
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_suite(candidate)
    raise ConfigError(
        "unknown suite %r; suites in %s: %s"
        % (name, suites_dir, ", ".join(sorted(known)) or "(none)")
    )
