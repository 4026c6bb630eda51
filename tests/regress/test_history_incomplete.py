"""`bench report --history` and `bench regress` leave interrupted and abandoned runs out unless
`--include-incomplete`, through the installed `bench` script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.store import Store

from ..conftest import bench_env
from .history_factory import build_history

BENCH_SCRIPT = str(Path(sys.executable).parent / "bench")


def bench(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BENCH_SCRIPT] + list(args), cwd=project, capture_output=True, text=True,
                          env=bench_env(), timeout=300)


@pytest.mark.journey
def test_history_and_regress_leave_incomplete_runs_out_unless_asked(tmp_path: Path) -> None:
    store = Store(tmp_path / "results" / "bench.sqlite")
    runs = build_history(store, nights=4, reps=3, seed=1)
    store.finish_run(runs[-1], "interrupted")  # the newest night was stopped part-way
    store.close()

    def runs_shown(*extra: str) -> int:
        proc = bench(tmp_path, "report", "--history", *extra)
        assert proc.returncode == 0, proc.stderr
        html = (tmp_path / "reports" / "history" / "history.html").read_text()
        return int(re.search(r"<th>runs</th><td>(\d+) \(", html).group(1))

    assert runs_shown() == 3
    assert runs_shown("--include-incomplete") == 4

    def judged(*extra: str) -> set:
        proc = bench(tmp_path, "regress", "--json", "--min-persist", "1", *extra)
        assert proc.returncode in (0, 1), proc.stderr
        return {c["latest_run"] for c in json.loads(proc.stdout)["changes"]}

    assert runs[-1] not in judged() and runs[-2] in judged()
    assert runs[-1] in judged("--include-incomplete")
