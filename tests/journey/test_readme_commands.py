"""Every row of the README's command table, run as a user runs it: the installed `bench` script in
a subprocess, on an emulated farm of real OpenSSH sshd "boards" (`bench farm up`) or on this
machine, with the exit code and the output asserted.

One farm and two runs are shared by the module (the README's "Try it without boards" sequence);
each test then runs one more command against that state. `test_every_readme_command_row_has_a_
journey_test` keeps the README and these tests in step.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterator, List

import pandas as pd
import pytest
import yaml

from .conftest import REPO, Bench, bench_script

pytestmark = pytest.mark.journey

BASE_IP = "127.0.0.40"  # away from tests/farm (127.0.0.20-24), tests/eval (127.0.0.70) and a user's 127.0.0.2
BOARDS = 3  # ax650n, orin-nano, agx-orin profiles


class Farm:
    def __init__(self, project: Path, bench: Bench) -> None:
        self.project = project
        self.bench = bench
        self.devices_file = project / "results" / "farm" / "devices.emulated.yaml"
        self.runs: List[str] = []
        self.names: List[str] = []

    def farm_bench(self, *args: str, **kwargs) -> "object":
        return self.bench(self.project, "--devices-file", str(self.devices_file), *args, **kwargs)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    from ..farm.conftest import require_sshd

    require_sshd()
    project = tmp_path_factory.mktemp("journey")
    shutil.copytree(REPO / "suites", project / "suites")
    bench = Bench()
    up = bench(project, "farm", "up", "--boards", str(BOARDS), "--base-ip", BASE_IP)
    assert up.returncode == 0, up.stderr
    assert "run it: bench --devices-file" in up.stderr
    state = Farm(project, bench)
    try:
        data = yaml.safe_load(state.devices_file.read_text())
        state.names = [d["name"] for d in data["devices"]]
        assert len(state.names) == BOARDS
        for _ in range(2):  # two runs: a comparison and a history need more than one
            proc = state.farm_bench("run", "--suite", "image", "--devices", "all", "--repetitions", "2",
                                    "--output-tokens", "8", "--json", timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            payload = json.loads(proc.stdout)
            assert payload["ok"] is True and {d["device"] for d in payload["devices"]} == set(state.names)
            # 3 boards x (1 warm-up + 2 repetitions)
            assert len(payload["measurements"]) == BOARDS * 3
            state.runs.append(payload["run_id"])
        yield state
    finally:
        down = bench(project, "farm", "down")
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stderr


def test_run_prints_progress_and_medians_through_a_pipe(farm: Farm) -> None:
    # the fixture's runs went through --json; this one is what a CI log shows
    proc = farm.farm_bench("run", "--suite", "image", "--devices", farm.names[0], "-r", "2", "-n", "6",
                           "--tag", "journey", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6}): suite image", proc.stderr).group(1)
    # through a pipe every row is one line: the run id and the numbers are never split
    assert "outcome of run %s" % run_id in proc.stderr
    medians = [line for line in proc.stderr.splitlines() if farm.names[0] in line and "image" in line
               and "│" in line]
    assert medians, proc.stderr[-2000:]
    assert "last TTFT" in proc.stderr  # progress lines say the live figure is the latest repetition
    assert "report: bench report %s" % run_id in proc.stderr
    listed = farm.farm_bench("results", "list", "--json")
    assert listed.returncode == 0
    tagged = [r for r in json.loads(listed.stdout) if r["run_id"] == run_id]
    assert tagged and tagged[0]["tags"] == ["journey"] and tagged[0]["measurements"] == 3


def test_report_of_a_run(farm: Farm) -> None:
    run_id = farm.runs[-1]
    proc = farm.farm_bench("report", run_id)
    assert proc.returncode == 0, proc.stderr
    out = farm.project / "reports" / run_id
    html = (out / "index.html").read_text()
    assert run_id in html and "emulated" in html
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert len(rows) == BOARDS * 3
    assert "TTFT" in (out / "summary.md").read_text()
    latest = farm.farm_bench("report", "latest")
    assert latest.returncode == 0 and "wrote" in latest.stderr


def test_report_compare_ranks_the_boards_with_price_energy_and_perf_per_watt(farm: Farm) -> None:
    proc = farm.farm_bench("report", "--compare", *farm.runs)
    assert proc.returncode == 0, proc.stderr
    page = _wrote(farm, proc.stderr)
    text = page.read_text()
    for name in farm.names:
        assert name in text
    markdown = (page.parent / "compare.md").read_text()
    # the emulated boards carry prices and an emulated power trace: these cells are filled
    header = next(line for line in markdown.splitlines() if line.startswith("| rank"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for name in farm.names:
        cells = [c.strip() for c in _row(markdown, name).split("\n")[0].strip("|").split("|")]
        row = dict(zip(columns, cells))
        for column in ("price", "energy per query J", "tok/s per W", "tok/s per \\$1000"):
            assert row[column] not in ("", "-"), (name, column, row)
    assert "EMULATED" in markdown  # and they are labelled what they are


def _wrote(farm: Farm, stderr: str) -> Path:
    """The first file a report command says it wrote (relative to the project, where it ran)."""
    match = re.search(r"wrote (\S+?),?(\s|$)", stderr)
    assert match, stderr
    page = farm.project / match.group(1)
    assert page.is_file(), page
    return page


def _row(markdown: str, name: str) -> str:
    lines = [line for line in markdown.splitlines() if line.startswith("|") and name in line]
    return "\n".join(lines)


def test_report_history_and_an_unknown_metric(farm: Farm) -> None:
    proc = farm.farm_bench("report", "--history", "--suite", "image", "--last", "5", "--metric", "ttft_ms")
    assert proc.returncode == 0, proc.stderr
    page = _wrote(farm, proc.stderr)
    assert "ttft_ms" in page.read_text()
    bad = farm.farm_bench("report", "--history", "--metric", "nosuch")
    assert bad.returncode == 2 and "nosuch" in bad.stderr and "ttft_ms" in bad.stderr


def test_regress_writes_junit_and_markdown(farm: Farm) -> None:
    junit = farm.project / "regress.xml"
    markdown = farm.project / "regress.md"
    proc = farm.farm_bench("regress", "--baseline", farm.runs[0], "--junit", str(junit), "--markdown",
                           str(markdown))
    # two runs of the same emulated boards: no confirmed regression (a step needs --min-persist runs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tree = ET.parse(junit)
    cases = tree.getroot().iter("testcase")
    assert sum(1 for _ in cases) > 0
    assert "regression" in markdown.read_text().lower()
    as_json = farm.farm_bench("regress", "--baseline", farm.runs[0], "--json")
    assert as_json.returncode == 0
    assert "changes" in json.loads(as_json.stdout)


def test_results_list_show_and_export(farm: Farm, tmp_path: Path) -> None:
    listed = farm.farm_bench("results", "list")
    assert listed.returncode == 0
    for run_id in farm.runs:
        assert run_id in listed.stdout
    shown = farm.farm_bench("results", "show", farm.runs[0])
    assert shown.returncode == 0 and json.loads(shown.stdout)["run"]["run_id"] == farm.runs[0]
    parquet = tmp_path / "all.parquet"
    proc = farm.farm_bench("results", "export", "--format", "parquet", "--out", str(parquet))
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(parquet)
    assert set(farm.runs) <= set(frame["run_id"]) and "ttft_ms" in frame.columns
    as_csv = farm.farm_bench("results", "export", "--format", "csv", "--run", farm.runs[0])
    assert as_csv.returncode == 0 and len(list(csv.DictReader(io.StringIO(as_csv.stdout)))) == BOARDS * 3
    as_json = farm.farm_bench("results", "export", "--format", "json", "--run", farm.runs[1])
    assert as_json.returncode == 0 and {r["run_id"] for r in json.loads(as_json.stdout)} == {farm.runs[1]}
    refused = farm.farm_bench("results", "export", "--format", "parquet")
    assert refused.returncode == 2 and "--out" in refused.stderr


def test_run_resume_stores_nothing_twice(farm: Farm) -> None:
    before = json.loads(farm.farm_bench("results", "show", farm.runs[0]).stdout)
    count = _count(farm, farm.runs[0])
    proc = farm.farm_bench("run", "--resume", farm.runs[0], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _count(farm, farm.runs[0]) == count == BOARDS * 3
    after = json.loads(farm.farm_bench("results", "show", farm.runs[0]).stdout)
    assert after["run"]["devices"] == before["run"]["devices"]


def _count(farm: Farm, run_id: str) -> int:
    listed = json.loads(farm.farm_bench("results", "list", "--json", "--limit", "100").stdout)
    return next(r["measurements"] for r in listed if r["run_id"] == run_id)


def test_devices_list_and_check(farm: Farm) -> None:
    listed = farm.farm_bench("devices", "list", "--json")
    assert listed.returncode == 0 and [d["name"] for d in json.loads(listed.stdout)] == farm.names
    table = farm.farm_bench("devices", "list")
    assert table.returncode == 0 and all(name in table.stdout for name in farm.names)
    check = farm.farm_bench("devices", "check", "--devices", "all", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    reports = json.loads(check.stdout)
    assert [r["device"] for r in reports] == farm.names and all(r["ok"] for r in reports)


def test_devices_trust_shows_the_fingerprint(farm: Farm) -> None:
    # the farm recorded its boards' keys already: trusting again shows the same key and changes nothing
    proc = farm.farm_bench("devices", "trust", farm.names[0], "--yes")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"SHA256:[A-Za-z0-9+/]{43}", proc.stderr)
    assert "already" in proc.stderr


def test_devices_trust_refuses_a_changed_key_until_replace(farm: Farm) -> None:
    """A reinstalled board (here: a different key on record for it) is refused with both
    fingerprints; `--replace --yes` records the key it presents now."""
    name = farm.names[2]
    known_hosts = farm.project / "results" / "farm" / "known_hosts"
    original = known_hosts.read_text()
    # an ed25519 key that is no board's host key: the farm's client key
    other = (farm.project / "results" / "farm" / "keys" / "client_ed25519.pub").read_text().split()[1]
    lines = [line if not line.endswith("bench-farm:%s" % name) else
             "%s ssh-ed25519 %s bench-farm:%s" % (line.split()[0], other, name)
             for line in original.splitlines()]
    known_hosts.write_text("\n".join(lines) + "\n")
    try:
        refused = farm.farm_bench("devices", "trust", name, "--yes")
        assert refused.returncode == 1, refused.stderr
        assert len(set(re.findall(r"SHA256:[A-Za-z0-9+/]{43}", refused.stderr))) == 2  # both keys named
        assert "--replace" in refused.stderr
        replaced = farm.farm_bench("devices", "trust", name, "--replace", "--yes")
        assert replaced.returncode == 0, replaced.stderr
        assert other not in known_hosts.read_text()
        check = farm.farm_bench("devices", "check", "--devices", name, "--json")
        assert check.returncode == 0 and json.loads(check.stdout)[0]["ok"]
    finally:
        known_hosts.write_text(original)


def test_devices_lock_blocks_a_run_and_unlock_frees_the_board(farm: Farm) -> None:
    name = farm.names[1]
    locked = farm.farm_bench("devices", "lock", name, "--ttl", "120")
    assert locked.returncode == 0 and "locked %s" % name in locked.stderr
    busy = farm.farm_bench("run", "--suite", "image", "--devices", name, "-r", "1", "-n", "4", timeout=300)
    assert busy.returncode == 1
    # the message says who holds the board and how to free it
    assert "locked by hand" in busy.stderr and "bench devices unlock %s" % name in busy.stderr
    unlocked = farm.farm_bench("devices", "unlock", name)
    assert unlocked.returncode == 0 and "unlocked %s" % name in unlocked.stderr
    again = farm.farm_bench("devices", "unlock", name)
    assert again.returncode == 0 and "not locked" in again.stderr


def test_suites_list(farm: Farm) -> None:
    proc = farm.bench(farm.project, "suites", "list", "--json")
    assert proc.returncode == 0
    names = {s["name"] for s in json.loads(proc.stdout)}
    assert {"image", "video-8f", "vqa-quant"} <= names
    table = farm.bench(farm.project, "suites", "list")
    assert table.returncode == 0 and "video-8f" in table.stdout


def test_version_and_dry_run(farm: Farm) -> None:
    version = farm.bench(farm.project, "--version")
    assert version.returncode == 0 and re.match(r"bench \(edge-VLM bench\) \d+\.\d+", version.stdout)
    dry = farm.farm_bench("run", "--suite", "image", "--devices", "all", "--dry-run", "--json", "-r", "6")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True and plan["overrides"] == {"repetitions": 6}
    assert [d["device"] for d in plan["devices"]] == farm.names
    # an estimate from the earlier runs' medians: 7 queries each instead of 3
    assert plan["estimated_s"] is not None and plan["estimated_s"] > 0
    assert all(d["basis"].startswith("medians of run") for d in plan["devices"])


def test_run_json_error_object(farm: Farm) -> None:
    proc = farm.farm_bench("run", "--suite", "nosuch", "--devices", "all", "--json")
    assert proc.returncode == 2
    error = json.loads(proc.stdout)
    assert error["ok"] is False and error["error"]["exit_code"] == 2 and "nosuch" in error["error"]["message"]
    assert "Traceback" not in proc.stderr


# -- this machine: models and the accuracy suite ------------------------------------------------
def test_models_make_quantize_and_the_vqa_quant_suite_on_the_canary(tmp_path: Path) -> None:
    """`models make`, `models quantize` and `run --suite vqa-quant`: the canary (a real Qwen2.5-VL
    trained on easy-VQA, tests/fixtures/canary) and its int8 variant answer 40 questions."""
    pytest.importorskip("lm_eval", reason="the vqa-quant suite needs the [eval] extra")
    bench = Bench()
    made = bench(tmp_path, "models", "make", "--arch", "qwen2.5-vl", "--preset", "tiny", "--out",
                 str(tmp_path / "tiny"))
    assert made.returncode == 0, made.stderr
    assert "random weights" in made.stderr and (tmp_path / "tiny" / "config.json").is_file()
    shutil.copytree(REPO / "suites", tmp_path / "suites")
    # an ad-hoc run of that directory, no devices.yaml, with every generation override
    adhoc = bench(tmp_path, "run", "--suite", "image", "--model", str(tmp_path / "tiny"), "--warmup", "0",
                  "--repetitions", "1", "--output-tokens", "3", "--prompt", "What is this?", "--json", timeout=600)
    assert adhoc.returncode == 0, adhoc.stderr[-3000:]
    payload = json.loads(adhoc.stdout)
    [record] = payload["measurements"]
    assert record["device"] == "local" and record["variant"] == "tiny" and record["status"] == "ok"
    assert record["metrics"]["n_output_tokens"] == 3 and record["provenance"]["weights"] == "random"
    assert record["provenance"]["load_ms"] > 0  # the variant's load time is recorded
    quant = bench(tmp_path, "models", "quantize", "--model", str(REPO / "tests" / "fixtures" / "canary"),
                  "--method", "int8-dynamic", "--out", str(tmp_path / "q"))
    assert quant.returncode == 0, quant.stderr
    assert "int8-dynamic" in quant.stderr and (tmp_path / "q" / "int8-dynamic").is_dir()
    suite = tmp_path / "suites" / "vqa-quant.yaml"
    suite.write_text(suite.read_text().replace("  task: easy_vqa\n", "  task: easy_vqa\n  limit: 40\n")
                     .replace("repetitions: 5", "repetitions: 2"))
    device = {"name": "canary", "type": "local", "transport": "local", "workdir": "results/work", "idle_s": 0,
              "backend": "transformers", "backend_options": {"device": "cpu", "threads": 1},
              "models": [{"variant": "fp32", "path": str(REPO / "tests" / "fixtures" / "canary")},
                         {"variant": "int8-dynamic", "path": str(tmp_path / "q" / "int8-dynamic"),
                          "quantization": "int8-dynamic"}]}
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": [device]}))
    proc = bench(tmp_path, "run", "--suite", "vqa-quant", "--devices", "canary", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy: Dict[str, dict] = {a["variant"]: a for a in json.loads(proc.stdout)["accuracy"]}
    assert set(accuracy) == {"fp32", "int8-dynamic"}
    assert all(a["n"] == 40 for a in accuracy.values())
    assert accuracy["fp32"]["accuracy"] >= 0.75  # 86.8% on all 500; a broken path answers nothing right
    report = bench(tmp_path, "report", "latest")
    assert report.returncode == 0, report.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    index = (tmp_path / "reports" / run_id / "index.html").read_text()
    assert "accuracy.html" in index  # the run page links its accuracy page


# -- the README and these tests stay in step ---------------------------------------------------
def _readme_command_rows() -> List[str]:
    rows = []
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"^\| `bench ([^`]*)`", line)
        if match:
            rows.append(match.group(1))
    return rows


def test_every_readme_command_row_has_a_journey_test() -> None:
    """Each README row's command and its flags appear in a journey test (a test module that
    runs the installed script and is marked journey)."""
    rows = _readme_command_rows()
    assert len(rows) >= 10
    journey_text = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py")
                             if "journey" in p.read_text())
    missing = []
    for row in rows:
        words = re.findall(r"--[a-z-]+|\b[a-z][a-z-]+\b", row.split("[")[0].split("|")[0])
        command = [w for w in words if not w.startswith("--")][:2]
        flags = re.findall(r"--[a-z][a-z-]+", row)
        for token in command:
            if '"%s"' % token not in journey_text and "'%s'" % token not in journey_text:
                missing.append("%s (%s)" % (row, token))
        for flag in flags:
            if '"%s"' % flag not in journey_text:
                missing.append("%s (%s)" % (row, flag))
    assert not missing, "README commands without a journey test: %s" % "; ".join(missing)


def test_the_installed_bench_script_is_what_these_tests_run() -> None:
    script = bench_script()
    assert script.name == "bench" and script.is_file()
    assert "harness.cli" in script.read_text()
