"""The history page's "Nights" section (issue 14) without PostgreSQL: absent on a SQLite store,
and each kind of night rendered from the rows `harness.queue.schedule.stored_nights` returns.
The PostgreSQL side (a real night, `bench report --history --store postgresql://...`) is
tests/queue/test_history_nights.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.report.history import render_history
from harness.store import open_store

from ..journey.conftest import Bench
from ..regress.history_factory import BOARDS, build_history


@pytest.mark.journey
def test_history_on_a_sqlite_store_has_no_nights_section_and_works(tmp_path: Path) -> None:
    store = open_store(tmp_path / "bench.sqlite")
    build_history(store, nights=4, reps=3, seed=2, boards=BOARDS[:1], workloads=("image",))
    store.close()
    proc = Bench()(tmp_path, "--store", str(tmp_path / "bench.sqlite"), "report", "--history")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Nights" not in proc.stderr
    markdown = (tmp_path / "reports" / "history" / "history.md").read_text()
    assert "- runs: 4 (2026-01-01T02:00:00Z to 2026-01-04T02:00:00Z)" in markdown
    assert "## Change points (0)" in markdown and "Nights" not in markdown
    html = (tmp_path / "reports" / "history" / "history.html").read_text()
    assert 'id="nights"' not in html and "Nights" not in html
    assert 'id="change-table"' not in html and "No step of at least 3%" in html


def _nights(outputs_dir: Path) -> List[Dict[str, Any]]:
    junit = str(outputs_dir / "nightly-2026-01-03T020000Z.junit.xml")
    regressed = {"device": "orin<nano>", "suite": "s", "workload": "video-8f", "variant": "fp16",
                 "metric": "ttft_ms", "baseline_median": 382.0, "latest_median": 458.4, "rel_change": 0.2,
                 "p_value": 1e-5, "run_id": "r3", "direction": "higher is worse", "provenance_changes": []}
    return [
        {"schedule": "nightly", "period": "2026-01-05T02:00:00Z", "jobs": [7, 8], "runs": ["r5"], "verdict": None,
         "open_jobs": 1},
        {"schedule": "nightly", "period": "2026-01-04T02:00:00Z", "jobs": [5], "runs": ["r4"], "verdict": None,
         "open_jobs": 0},
        {"schedule": "nightly", "period": "2026-01-03T02:00:00Z", "jobs": [3], "runs": ["r3"], "open_jobs": 0,
         "verdict": {"jobs": 1, "runs": ["r3"], "failed_jobs": 0, "regressions": 1, "regressed": [regressed],
                     "checked_runs": 1, "problems": [], "verdicts": ["1 regression(s) against ..."],
                     "outputs": {"junit": [junit], "markdown": []},
                     "alert": [{"via": "command", "target": "mail", "ok": False, "detail": "exited 1: no route"}]}},
        {"schedule": "nightly", "period": "2026-01-02T02:00:00Z", "jobs": [2], "runs": ["r2"], "open_jobs": 0,
         "verdict": {"jobs": 1, "runs": ["r2"], "failed_jobs": 1, "regressions": 0, "regressed": [],
                     "checked_runs": 1, "problems": [], "verdicts": ["no regression against ..."],
                     "outputs": {"junit": [], "markdown": []}}},
        {"schedule": "weekly", "period": "2026-01-01T02:00:00Z", "jobs": [1], "runs": ["r1"], "open_jobs": 0,
         "verdict": {"jobs": 1, "runs": ["r1"], "failed_jobs": 0, "regressions": 0, "regressed": [],
                     "checked_runs": 0, "problems": ["r1: no baseline run before r1"],
                     "verdicts": ["r1: no baseline run before r1"], "outputs": {"junit": [], "markdown": []}}},
    ]


def test_every_kind_of_night_is_shown_in_markdown_and_html(tmp_path: Path) -> None:
    store = open_store(tmp_path / "bench.sqlite")
    build_history(store, nights=3, reps=3, seed=2, boards=BOARDS[:1], workloads=("image",))
    page = render_history(store, tmp_path / "out", metrics=["ttft_ms"], nights=_nights(tmp_path))
    store.close()
    markdown = (tmp_path / "out" / "history.md").read_text()
    nights = markdown[markdown.index("## Nights"):].splitlines()
    junit = str(tmp_path / "nightly-2026-01-03T020000Z.junit.xml").replace("_", "\\_")
    assert nights[0] == "## Nights (5)"
    assert nights[4:] == [
        "| nightly | 2026-01-05T02:00:00Z | not over: 1 of 2 job(s) queued or running | - | - |",
        "| nightly | 2026-01-04T02:00:00Z | pending: the regression check has not run yet | - | - |",
        "| nightly | 2026-01-03T02:00:00Z | 1 regression(s): orin&lt;nano&gt; video-8f ttft\\_ms +20.0%% "
        "(382 -&gt; 458) | command mail FAILED: exited 1: no route | JUnit %s |" % junit,
        "| nightly | 2026-01-02T02:00:00Z | clean; 1 of 1 job(s) failed | - | - |",
        "| weekly | 2026-01-01T02:00:00Z | not checked: r1: no baseline run before r1 | - | - |",
    ]
    html = page.read_text()
    table = re.search(r'<table id="night-table">.*?</table>', html, flags=re.S).group(0)
    assert re.findall(r'<tr class="night-([a-z-]+)">', table) == ["not-over", "pending", "regression", "clean",
                                                                 "not-checked"]
    assert "orin&lt;nano&gt;" in table and "<nano>" not in table  # a board's name is data, not markup
    assert '<td class="cp">command mail FAILED: exited 1: no route</td>' in table
    assert table.count("none written") == 4


def test_no_nights_recorded_yet_says_so(tmp_path: Path) -> None:
    store = open_store(tmp_path / "bench.sqlite")
    build_history(store, nights=2, reps=3, seed=2, boards=BOARDS[:1], workloads=("image",))
    page = render_history(store, tmp_path / "out", metrics=["ttft_ms"], nights=[])
    store.close()
    assert "## Nights (0)\n\nNo night of a schedule is recorded in this store yet." in (
        tmp_path / "out" / "history.md").read_text()
    assert "<h2>Nights (0)</h2>" in page.read_text()
