"""The procurement demo as a user runs it, through the installed `bench` script: a fresh project,
`bench farm up`, two `bench run`s, `bench report --compare RUN RUN`. The emulated boards carry
prices and an emulated power trace, so price, energy per query, perf/W and perf/$ are filled and a
Pareto plot is drawn - every one of them labelled emulated."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from ..conftest import REPO, bench_env
from ..farm.conftest import require_sshd

BENCH_SCRIPT = str(Path(sys.executable).parent / "bench")
BASE_IP = "127.0.0.100"  # away from tests/farm (20), queue/journey (40), procurement (60), eval (70)
QUICK = """\
name: quick-image
prompt: Describe this image in one sentence.
workloads:
  - {name: image, kind: image, source: media/grace_hopper.jpg, size: [448, 448]}
generation: {output_tokens: 8, warmup: 1, repetitions: 2}
"""


def bench(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([BENCH_SCRIPT] + list(args), cwd=project, capture_output=True, text=True,
                          env=bench_env(), timeout=timeout)


@pytest.mark.journey
def test_farm_up_two_runs_and_compare_fill_price_energy_and_perf_per_watt(tmp_path: Path) -> None:
    require_sshd()
    project = tmp_path / "project"
    shutil.copytree(REPO / "suites", project / "suites")
    shutil.copy(REPO / "devices.yaml", project / "devices.yaml")
    (project / "suites" / "quick-image.yaml").write_text(QUICK)
    up = bench(project, "farm", "up", "--boards", "3", "--base-ip", BASE_IP)
    assert up.returncode == 0, up.stderr
    try:
        farm_file = project / "results" / "farm" / "devices.emulated.yaml"
        data = yaml.safe_load(farm_file.read_text())
        # what `farm up` wrote: a price and an emulated power source per board
        for device in data["devices"]:
            assert device["price_usd"] > 0
            assert device["telemetry"][0] == {"source": "emulated_power", "profile": device["backend_options"]["profile"]}
            device["backend_options"]["time_scale"] = 0.1  # seconds, not minutes; scaled back in the report
            device["idle_s"] = 0.3
        devices_file = project / "farm-devices.yaml"
        devices_file.write_text(yaml.safe_dump(data, sort_keys=False))
        runs: List[str] = []
        for devices in ("ax650n,orin-nano", "agx-orin"):
            proc = bench(project, "--devices-file", str(devices_file), "run", "--suite", "quick-image",
                         "--devices", devices, "--json")
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs.append(json.loads(proc.stdout)["run_id"])
    finally:
        down = bench(project, "farm", "down")
        assert down.returncode == 0, down.stderr

    compared = bench(project, "--devices-file", str(devices_file), "report", "--compare", *runs)
    assert compared.returncode == 0, compared.stderr
    page = project / re.search(r"wrote (\S+)", compared.stderr).group(1)
    html = page.read_text()
    markdown = (page.parent / "compare.md").read_text()
    rows: Dict[str, Dict[str, str]] = {r["device"]: r for r in csv.DictReader((page.parent / "compare.csv").open())}
    assert set(rows) == {"ax650n", "orin-nano", "agx-orin"}

    assert "EMULATED RESULTS, NOT HARDWARE MEASUREMENTS" in html and "EMULATED RESULTS" in markdown
    assert "data:image/png;base64," in html  # the latency-energy Pareto plot is drawn
    assert "Different models, ranked separately" not in html  # all three emulate 3 B models
    prices = {"ax650n": "$260", "orin-nano": "$249", "agx-orin": "$1,999"}
    for device, row in rows.items():
        line = next(l for l in markdown.splitlines() if l.startswith("| ") and " %s / " % device in l)
        cells = [c.strip() for c in line.strip("|").split("|")]
        price, ttft, tps, energy, power, per_w, per_kusd = cells[3:10]
        assert price == prices[device].replace("$", "\\$"), line
        for value in (ttft, tps, energy, power, per_w, per_kusd):
            assert value not in ("-", "", "unknown"), line
        # perf/W is decode tok/s over the emulated average power, both as the report shows them
        assert float(row["perf_per_w"]) == pytest.approx(float(row["decode_tps"]) / float(row["avg_power_w"]), rel=1e-6)
        # the emulated power of a board lies within its budget's per-phase range (watts: 20%-90% of it)
        budget = {"ax650n": 8.0, "orin-nano": 25.0, "agx-orin": 60.0}[device]
        assert 0.2 * budget < float(row["avg_power_w"]) < 0.9 * budget, row
        assert "EMULATED power" in row["energy_source"]
        assert prices[device] in html
    assert "power of ax650n: emulated_power: EMULATED power" in html
    assert "unknown" not in "".join(r["price_usd"] for r in rows.values())
