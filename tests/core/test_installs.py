"""Installs that work: without the [eval] extra the tests still collect (eval tests skip, saying
why), and every install hint names a command that works from a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import install_hint

REPO = Path(__file__).resolve().parents[2]
WITHOUT_EVAL = REPO / "tests" / "fixtures" / "no_eval_extra"


def test_without_the_eval_extra_the_suite_collects_and_eval_tests_skip_with_the_reason() -> None:
    env = dict(os.environ, PYTHONPATH=str(WITHOUT_EVAL))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/eval", "tests/regress"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) >= 5, proc.stdout[-3000:]
    assert all("bash scripts/setup-venv.sh local,dev,eval" in line for line in skipped)


def test_the_blocker_really_hides_lm_eval() -> None:
    # the test above proves nothing if lm_eval still imports under the blocker
    env = dict(os.environ, PYTHONPATH=str(WITHOUT_EVAL))
    proc = subprocess.run([sys.executable, "-c", "import lm_eval"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


@pytest.mark.parametrize("extras", ["local", "eval", "openvino", "postgres"])
def test_install_hints_name_a_command_that_exists_in_a_checkout(extras: str) -> None:
    hint = install_hint(extras)
    assert "edge-vlm-bench[" not in hint  # the package is on no index: that command cannot work
    assert "bash scripts/setup-venv.sh" in hint and (REPO / "scripts" / "setup-venv.sh").is_file()
    assert extras in hint
