"""`bench regress` on a noisy series: a change is listed, but not a basis for a decision."""

from __future__ import annotations

from pathlib import Path

from harness.analysis.noise import NOISY_CV
from harness.analysis.regress import regress
from harness.analysis.regress_output import to_markdown
from harness.store import Store

from ..regress.history_factory import Plant, build_history


def _ttft_changes(store: Store, device: str) -> list:
    report = regress(store, "last:7")
    return report, [c for c in report.changes if c.device == device and c.metric == "ttft_ms"]


def test_a_step_in_a_noisy_series_is_unconfirmed_and_says_why(tmp_path: Path) -> None:
    noisy = Store(tmp_path / "noisy.sqlite")
    # repetitions scattered by ~25% (CV past the 10% threshold) and a doubled TTFT from night 12 on
    build_history(noisy, nights=16, seed=3, noise_cv=0.25, plants=[Plant("orin-nano", "ttft_ms", 1.0, 12)])
    report, changes = _ttft_changes(noisy, "orin-nano")
    assert changes and all(c.noisy and max(c.latest_cv, c.baseline_cv) > NOISY_CV for c in changes)
    detected = [c for c in changes if c.status != "unchanged"]  # significant past the threshold
    assert detected and all(c.status == "unconfirmed" and "not a basis for a decision" in c.step.note
                            for c in detected)
    assert not [c for c in report.regressions if c.device == "orin-nano"]
    assert "not a basis for a decision" in to_markdown(report)
    noisy.close()
    # the same step in a quiet series (CV 1.5%) is a regression that fails the job
    quiet = Store(tmp_path / "quiet.sqlite")
    build_history(quiet, nights=16, seed=3, noise_cv=0.015, plants=[Plant("orin-nano", "ttft_ms", 1.0, 12)])
    report, changes = _ttft_changes(quiet, "orin-nano")
    assert [c for c in report.regressions if c.device == "orin-nano" and c.metric == "ttft_ms"]
    assert not any(c.noisy for c in changes)
    quiet.close()
