"""`bench report --history --store postgresql://...` and `bench queue nights` show the nightly's
verdicts (issue 14), through the installed `bench` script, on a real PostgreSQL holding a night
checked by :func:`check_night` (set up as in test_night_alerts.py: no farm, no worker)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.queue import schedule as nightly

from ..journey.conftest import Bench
from .test_night_alerts import PERIOD, Hook, hook, make_night  # noqa: F401  (hook: the fixture)

pytestmark = [pytest.mark.queue, pytest.mark.journey]


def test_report_history_on_the_team_store_shows_the_nights_and_their_verdicts(pg_server, hook: Hook,
                                                                             tmp_path: Path) -> None:
    hook.status = 500  # the verdict and the failed alert are both on the page
    night = make_night(pg_server, tmp_path, {"webhook": hook.url})
    night.check()
    assert nightly._claim_night(night.url, "nightly", "2026-01-11T02:00:00Z")  # not checked yet
    junit = tmp_path / "reports" / ("nightly-%s.junit.xml" % PERIOD.replace(":", ""))
    port = hook.server.server_address[1]
    bench = Bench()

    proc = bench(tmp_path, "--store", night.url, "report", "--history", "--out", str(tmp_path / "history"),
                 timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    written = " ".join(proc.stderr.split())
    assert "history.html" in written and "history.md" in written
    markdown = (tmp_path / "history" / "history.md").read_text()
    section = markdown[markdown.index("## Nights"):]
    lines = section.splitlines()
    assert lines[0] == "## Nights (2)"
    assert lines[2] == "| schedule | period | verdict | alert | JUnit / markdown |"
    # newest first: the night whose check has not run, then the checked one
    assert lines[4] == ("| nightly | 2026-01-11T02:00:00Z | pending: the regression check has not run yet | - | - |")
    checked = lines[5]
    assert checked.startswith("| nightly | %s | 1 regression(s): ax650n video-8f peak\\_host\\_mb +" % PERIOD)
    assert ("| webhook http://127.0.0.1:%d/... FAILED: answered 500 Internal Server Error |" % port) in checked
    assert ("JUnit %s" % str(junit).replace("_", "\\_")) in checked
    assert "T0-B0" not in markdown  # the hook's secret path is never shown

    html = (tmp_path / "history" / "history.html").read_text()
    table = re.search(r'<table id="night-table">.*?</table>', html, flags=re.S).group(0)
    assert "<h2>Nights (2)</h2>" in html
    assert '<tr class="night-regression">' in table and '<tr class="night-pending">' in table
    assert re.search(r'<td class="cp">1 regression\(s\): ax650n video-8f peak_host_mb \+3\d\.\d%', table)
    assert "FAILED: answered 500 Internal Server Error" in table
    assert '<a href="%s">%s</a>' % (junit.as_uri(), junit) in table
    assert night.run_ids[-1] in table

    shown = bench(tmp_path, "--store", night.url, "queue", "nights", timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    table_text = " ".join(shown.stderr.split())
    assert "1 regression(s): ax650n video-8f peak_host_mb +" in table_text
    assert "FAILED: answered 500 Internal Server Error" in table_text
    assert "pending: the regression check has not run yet" in table_text
