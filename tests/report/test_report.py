"""The report files: self-contained and escaped HTML, markdown tables that hold their shape,
a CSV with every measurement, and plots that survive missing metrics and hostile names."""

from __future__ import annotations

import base64
import copy
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Tuple

import pandas as pd
import pytest

from harness.report import ReportPaths, write_report
from harness.report.markdown import cell
from harness.report.tables import EMULATED_LABEL, RANDOM_LABEL
from harness.runner.protocol import ALL_METRICS
from tests.analysis.synthetic import (
    HOSTILE_DEVICE,
    HOSTILE_VARIANT,
    REPS,
    WARMUP,
    make_records,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN = {"run_id": "run-1 <i>x</i>", "suite": "video-8f", "created_at": "2025-01-01T00:00:00Z",
       "devices": [HOSTILE_DEVICE, "b"], "controller_commit": "abc123", "tags": ["nightly|x"]}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: List[Tuple[str, Dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Tuple[ReportPaths, List[dict]]:
    records = make_records()
    paths = write_report(RUN, records, tmp_path_factory.mktemp("report") / "nested" / "dir")
    return paths, records


def split_row(line: str) -> List[str]:
    """Cells of a GFM table row, the way cmark-gfm splits them: a backslash escapes any char."""
    body = line.strip()
    assert body.startswith("|") and body.endswith("|"), line
    return re.findall(r"((?:\\.|[^|\\])*)\|", body[1:])


def test_files_exist(report) -> None:
    paths, _ = report
    for path in (paths.index_html, paths.summary_md, paths.results_csv):
        assert path.is_file() and path.stat().st_size > 0
    assert paths.index_html.name == "index.html" and paths.summary_md.name == "summary.md"


def test_html_escapes_hostile_text(report) -> None:
    html = report[0].index_html.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # device name and model output
    assert "CUDA OOM &lt;script&gt;alert(" in html  # the failure's error text
    assert "Jetson &lt;b&gt;Orin&lt;/b&gt;" in html  # provenance
    assert "run-1 &lt;i&gt;x&lt;/i&gt;" in html and "<i>x</i>" not in html
    assert "ünïcødé 🚀" in html


def test_html_is_self_contained(report) -> None:
    html = report[0].index_html.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 3  # phase breakdown, TTFT/tok/s, ITL
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name, "").strip().lower()
            assert not re.match(r"^(https?:)?//", value), (tag, name, value)
        assert tag not in ("link", "script", "iframe")
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        assert base64.b64decode(attrs["src"][len(prefix):], validate=True).startswith(PNG_MAGIC)
    assert not re.search(r"url\(\s*['\"]?https?:", html)


def test_html_carries_labels_metrics_definitions_and_failures(report) -> None:
    html = report[0].index_html.read_text(encoding="utf-8")
    assert RANDOM_LABEL in html and EMULATED_LABEL in html and "profile ax650n" in html
    for metric in ALL_METRICS:
        assert metric in html, metric
    for source in ("VmHWM", "CMM", "none: this backend reports no accelerator memory"):
        assert source in html
    assert "vision tower + merger/projector." in html  # ARCHITECTURE.md wording
    assert "<code>time.perf_counter_ns</code>" in html
    assert "Failed measurements (1)" in html
    assert "configured_ms.prefill_ms" in html  # the engine's own figures
    assert "Workload: image" in html and "Workload: video-8f" in html
    assert "rep %d" % WARMUP in html  # sample of the first measured repetition, not the warm-up
    assert "rep 0" not in html


def test_markdown_tables_keep_their_shape(report) -> None:
    text = report[0].summary_md.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert RANDOM_LABEL in text and EMULATED_LABEL in text
    assert "vision tower + merger/projector." in text
    tables: List[List[str]] = []
    current: List[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    assert len(tables) >= 5
    summary_rows = 0
    for table in tables:
        width = len(split_row(table[0]))
        assert re.fullmatch(r"\|(---\|)+", table[1]) and table[1].count("---") == width
        for line in table[2:]:
            assert len(split_row(line)) == width, line
        if split_row(table[0])[0].strip() == "metric":
            summary_rows += len(table) - 2
    # every (group, metric) is a table row, or named in its group's one "no value" sentence
    no_value = [line for line in text.splitlines() if ": no value in any measured repetition for " in line]
    named = sum(1 for line in no_value for metric in ALL_METRICS if re.search(r"\b%s\b" % metric, line))
    assert no_value and summary_rows + named == 2 * 2 * len(ALL_METRICS)
    assert cell(HOSTILE_VARIANT) in text and "int8\\|q4" in text


def test_markdown_cell_escaping() -> None:
    assert cell("a|b") == "a\\|b"
    assert cell("a\\|b") == "a\\\\\\|b"  # an escaped pipe in the data stays a literal
    assert cell("x\ny") == "x<br>y"
    assert cell("<script>") == "&lt;script&gt;"
    assert len(split_row("| %s | %s |" % (cell("a\\|b|"), cell("c")))) == 2


def test_csv_has_every_measurement(report) -> None:
    paths, records = report
    df = pd.read_csv(paths.results_csv)
    assert len(df) == len(records) == 2 * 2 * (WARMUP + REPS)
    for column in ("run_id", "device", "workload", "variant", "backend", "repetition", "warmup",
                   "status", "error", "weights", "emulated", "input_sha256") + ALL_METRICS:
        assert column in df.columns, column
    assert int(df["warmup"].sum()) == 2 * 2 * WARMUP
    assert (df["status"] == "error").sum() == 1
    assert set(df["device"]) == {r["device"] for r in records}  # newlines and | survive quoting


def test_missing_metrics_and_hostile_labels_do_not_break_plots(tmp_path: Path) -> None:
    records = copy.deepcopy(make_records())
    for record in records:
        if record["status"] == "ok":
            record["metrics"]["ttft_ms"] = None
            record["metrics"]["prefill_ms"] = None
            record["metrics"]["decode_tps"] = None
            record["itl_ms"] = []
        record["device"] = record["device"] + " $\\frac{1}{$ \n" + "x" * 200
    paths = write_report(RUN, records, tmp_path)
    html = paths.index_html.read_text(encoding="utf-8")
    assert "no prefill figure, segment skipped" in html
    assert "no TTFT figure, rest-of-TTFT segment skipped" in html
    assert "no decode_tps figure, bar skipped" in html
    assert "no inter-token gaps recorded" in html
    assert "no inter-token gaps recorded" in paths.summary_md.read_text(encoding="utf-8")


def test_empty_run_still_reports(tmp_path: Path) -> None:
    paths = write_report(RUN, [], tmp_path)
    html = paths.index_html.read_text(encoding="utf-8")
    assert "No measurements in this run." in html and "<img" not in html
    assert pd.read_csv(paths.results_csv).empty


def test_only_failures_are_listed_not_dropped(tmp_path: Path) -> None:
    records = [r for r in make_records() if r["device"] == HOSTILE_DEVICE]
    for record in records:
        record.update(status="error", metrics={}, itl_ms=[], error="engine missing: pip install x")
    paths = write_report(RUN, records, tmp_path)
    html = paths.index_html.read_text(encoding="utf-8")
    assert "Failed measurements (%d)" % len(records) in html
    assert html.count("engine missing: pip install x") == len(records)
    assert "0/%d" % REPS in html
