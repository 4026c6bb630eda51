"""Command-line overrides of a suite's generation settings and prompt (`bench run --repetitions`...).

An override is validated by the same rules as the suite file (so `--repetitions 0` is refused the
same way), and recorded in the run so `--resume` measures with the same settings.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from pydantic import ValidationError

from .suites import GenerationConfig, Suite
from .yaml_lines import ConfigError

OPTION_NAMES = {"repetitions": "--repetitions", "warmup": "--warmup", "output_tokens": "--output-tokens",
                "prompt": "--prompt", "until_stable": "--until-stable"}


def collect_overrides(repetitions: Optional[int] = None, warmup: Optional[int] = None,
                      output_tokens: Optional[int] = None, prompt: Optional[str] = None) -> Dict[str, Any]:
    """The options the user gave, by setting name (None: not given)."""
    given = {"repetitions": repetitions, "warmup": warmup, "output_tokens": output_tokens, "prompt": prompt}
    return {name: value for name, value in given.items() if value is not None}


def apply_overrides(suite: Suite, overrides: Dict[str, Any]) -> Suite:
    """A copy of ``suite`` with ``overrides`` applied (ConfigError naming the option when invalid)."""
    if not overrides:
        return suite
    config = suite.config
    generation = {k: v for k, v in overrides.items() if k in ("repetitions", "warmup", "output_tokens", "until_stable")}
    if generation:
        try:
            new_gen = GenerationConfig.model_validate({**config.generation.model_dump(), **generation})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first.get("loc") else "?"
            raise ConfigError("%s %s: %s" % (OPTION_NAMES.get(name, name), generation.get(name), first["msg"])) \
                from None
        config = config.model_copy(update={"generation": new_gen})
    if "prompt" in overrides:
        prompt = str(overrides["prompt"])
        if not prompt.strip():
            raise ConfigError("--prompt: give a non-empty prompt")
        # every workload asks the new prompt, including those whose suite entry had its own
        config = config.model_copy(update={
            "prompt": prompt, "workloads": [w.model_copy(update={"prompt": prompt}) for w in config.workloads]})
    return Suite(suite.path, config)
