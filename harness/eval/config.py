"""The ``accuracy:`` block of a suite (e.g. suites/vqa-quant.yaml), validated with file:line errors.

    accuracy:
      task: easy_vqa            # an lm-eval task: a YAML under tasks_dir, or one of lm-eval's own
      tasks_dir: tasks          # lm-eval --include_path, relative to the suite file
      limit: 500                # first N documents (default: all)
      metric: exact_match       # the per-question score the table, CI and McNemar use
      reference_variant: fp32   # the variant others are compared with (default: each device's first)
      min_accuracy: 0.85        # below this a device is flagged (the canary as a smoke test)
      margin_pp: 2              # non-inferiority margin (percentage points) for variant-pair verdicts

``SuiteConfig`` can carry it as ``accuracy: Optional[AccuracyConfig] = None``; until it does,
``load_suite_with_accuracy`` reads the block itself and validates the rest as a normal suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config.yaml_lines import ConfigError, format_validation_error, load_yaml

if TYPE_CHECKING:  # config.suites may import this module for its `accuracy` field
    from ..config.suites import Suite


class AccuracyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)
    tasks_dir: str = "tasks"
    limit: Optional[int] = Field(None, ge=1)
    metric: str = "exact_match"
    reference_variant: Optional[str] = None
    min_accuracy: Optional[float] = Field(None, ge=0, le=1)
    # a variant is "non-inferior" to another when the 95% paired-bootstrap CI of its accuracy change
    # lies above -margin_pp, "inferior" when it lies below, else "inconclusive at n=N"
    margin_pp: Optional[float] = Field(None, gt=0, le=100)

    def tasks_path(self, suite_file: Path) -> Path:
        path = Path(self.tasks_dir)
        return path if path.is_absolute() else (Path(suite_file).parent / path).resolve()


def accuracy_of(suite: "Suite") -> Optional[AccuracyConfig]:
    """The suite's accuracy block: from SuiteConfig once it has the field, else from the file."""
    block = getattr(suite.config, "accuracy", None)
    if block is not None:
        return block if isinstance(block, AccuracyConfig) else AccuracyConfig.model_validate(block)
    data, lines = load_yaml(suite.path)
    if not isinstance(data, dict) or data.get("accuracy") is None:
        return None
    try:
        return AccuracyConfig.model_validate(data["accuracy"])
    except ValidationError as exc:
        raise ConfigError(format_validation_error(suite.path, exc, lines, prefix=("accuracy",))) from None


def load_suite_with_accuracy(path: Path) -> Tuple["Suite", Optional[AccuracyConfig]]:
    """A suite file that may carry ``accuracy:`` (validated here) besides the usual fields."""
    from ..config.suites import Suite, SuiteConfig, load_suite

    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("%s:1: expected a mapping (name, workloads, accuracy ...)" % path)
    if "accuracy" in SuiteConfig.model_fields:
        suite = load_suite(path)  # SuiteConfig knows the field: one validation for everything
        return suite, accuracy_of(suite)
    block = data.pop("accuracy", None)
    try:
        config = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, lines)) from None
    try:
        accuracy = AccuracyConfig.model_validate(block) if block is not None else None
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, lines, prefix=("accuracy",))) from None
    suite = Suite(path, config)
    for index, workload in enumerate(config.workloads):
        if not suite.source_path(workload).is_file():
            line = lines.get(("workloads", index, "source"), 1)
            raise ConfigError("%s:%d: workloads.%d.source: file not found: %s"
                              % (path, line, index, suite.source_path(workload)))
    return suite, accuracy
