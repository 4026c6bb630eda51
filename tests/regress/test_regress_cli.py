"""`bench regress` and `bench report --history` from the command line, on a planted history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.store import open_store

from ..conftest import BENCH, bench_env
from .history_factory import Plant, build_history


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(BENCH + list(args), cwd=cwd, capture_output=True, text=True, env=bench_env(),
                          timeout=300)


def test_regress_cli_flags_the_planted_board_and_fails_the_job(tmp_path: Path) -> None:
    store_path = tmp_path / "history.sqlite"
    store = open_store(store_path)
    build_history(store, nights=14, plants=[Plant("orin-nano", "ttft_ms", 0.10, start=11, workload="image")])
    store.close()
    (tmp_path / "suites").mkdir()
    junit = tmp_path / "regress.xml"
    proc = bench(tmp_path, "--store", str(store_path), "regress", "--baseline", "last:7", "--tag", "nightly",
                 "--json", "--junit", str(junit), "--markdown", str(tmp_path / "regress.md"))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    flagged = {(c["device"], c["workload"]) for c in report["changes"] if c["status"] == "regression"}
    assert flagged == {("orin-nano", "image")}
    assert "<failure" in junit.read_text() and "orin-nano" in (tmp_path / "regress.md").read_text()

    page = bench(tmp_path, "--store", str(store_path), "--reports-dir", str(tmp_path / "reports"),
                 "report", "--history", "--metric", "ttft_ms")
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "reports" / "history" / "history.html").read_text()
    assert "orin-nano" in html and "data:image/png;base64," in html


def test_regress_cli_reports_a_bad_baseline(tmp_path: Path) -> None:
    store_path = tmp_path / "history.sqlite"
    store = open_store(store_path)
    build_history(store, nights=3)
    store.close()
    proc = bench(tmp_path, "--store", str(store_path), "regress", "--baseline", "tag:nope")
    assert proc.returncode == 2 and "nope" in proc.stderr
