"""Power, energy, memory and throttling in the report, checked against records the real Sampler made
over fake sources with a known power function (see telemetry_records.py)."""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
import pytest

from harness.report import ReportPaths, write_report
from harness.report.tables import NO_SENSOR_TEXT, NO_TELEMETRY_TEXT, ReportData, build_report_data

from .telemetry_records import (
    AX650N,
    FLAGGED_REPS,
    HOSTILE_WARNING,
    IDLE_W,
    JETSON,
    OLD,
    POWER_COVERS,
    REPS,
    Truth,
    make_telemetry_records,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN = {"run_id": "run-t", "suite": "image-1", "created_at": "2025-01-01T00:00:00Z",
       "devices": [JETSON, AX650N, OLD], "controller_commit": "abc", "tags": []}
ENERGY_FIELDS = ("energy_j", "avg_power_w", "j_per_token", "energy_above_idle_j")


@pytest.fixture(scope="module")
def made() -> Tuple[List[dict], List[Truth]]:
    return make_telemetry_records()


@pytest.fixture(scope="module")
def data(made) -> ReportData:
    return build_report_data(RUN, made[0])


@pytest.fixture(scope="module")
def written(made, tmp_path_factory) -> Tuple[ReportPaths, str, str]:
    paths = write_report(RUN, made[0], tmp_path_factory.mktemp("telemetry-report"))
    return paths, paths.index_html.read_text(encoding="utf-8"), paths.summary_md.read_text(encoding="utf-8")


def _row(data: ReportData, device: str):
    rows = [r for r in data.telemetry.energy if r.group.startswith(device + " /")]
    assert len(rows) == 1
    return rows[0]


def _rows_html(html: str) -> List[str]:
    return re.findall(r"<tr\b.*?</tr>", html, flags=re.S)


def test_energy_table_matches_the_synthetic_truth(data: ReportData, made) -> None:
    _, truths = made
    assert len(truths) == REPS
    row = _row(data, JETSON)
    assert row.note == "" and row.n == "%d/%d" % (REPS, REPS)
    for name in ENERGY_FIELDS:  # medians over the measured repetitions (the 3x-long warm-up excluded)
        truth = float(np.median([getattr(t, name) for t in truths]))
        assert row.values[name] == pytest.approx(truth, rel=0.01), name
    for phase in ("preprocess", "vision_encode", "prefill", "decode"):
        truth = float(np.median([t.phase_power[phase] for t in truths]))
        assert row.phase_power[phase] == pytest.approx(truth, rel=0.01), phase
    assert row.values["idle_power_w"] == pytest.approx(IDLE_W)
    assert row.sensor.startswith("ina: " + POWER_COVERS) and "Hz achieved" in row.sensor


def test_energy_figures_reach_html_and_markdown(data: ReportData, written) -> None:
    _, html, md = written
    row = _row(data, JETSON)
    html_row = [r for r in _rows_html(html) if JETSON in r and "energy" not in r and row.cell("energy_j") in r]
    assert html_row, "no energy row for the Jetson in the HTML"
    for name in ENERGY_FIELDS + ("idle_power_w", "preprocess", "decode"):
        assert row.cell(name) in html_row[0], name
    md_rows = [line for line in md.splitlines() if line.startswith("| " + JETSON) and "Hz achieved" in line]
    assert len(md_rows) == 1
    cells = [c.strip() for c in md_rows[0].strip("|").split("|")]
    assert cells[4:7] == [row.cell("energy_j"), row.cell("j_per_token"), row.cell("avg_power_w")]
    assert cells[-2] == "2.00"


def test_no_power_sensor_and_no_telemetry_are_said_never_zero(data: ReportData, written) -> None:
    _, html, md = written
    ax, old = _row(data, AX650N), _row(data, OLD)
    assert ax.note == NO_SENSOR_TEXT and all(v is None for v in ax.values.values())
    assert old.note == NO_TELEMETRY_TEXT and all(v is None for v in old.values.values())
    for text, start, end in ((html, 'id="energy"', 'id="memory"'), (md, "## Power and energy", "## Memory by source")):
        energy = text[text.index(start):text.index(end)]
        assert NO_SENSOR_TEXT in energy and NO_TELEMETRY_TEXT in energy
    # a board without data is one sentence, not a table row of blanks (that could read as zeros)
    ax_html = re.findall(r'<p class="no-sensor">([^<]*)</p>', html)
    assert [p for p in ax_html if AX650N in p] == ["%s | image: %s" % (_row(data, AX650N).group, NO_SENSOR_TEXT)]
    energy_table = re.search(r'<table class="energy">.*?</table>', html, flags=re.S).group(0)
    assert not [r for r in _rows_html(energy_table) if AX650N in r]
    jetson_html = [r for r in _rows_html(html) if JETSON in r]
    assert not any("no power sensor" in r for r in jetson_html)
    ax_md = [line for line in md.splitlines() if line.startswith("**" + AX650N) and NO_SENSOR_TEXT in line]
    assert len(ax_md) == 1  # the one sentence (the power-trace list names it again, as text)
    assert not [line for line in md.splitlines() if line.startswith("| " + AX650N) and NO_SENSOR_TEXT in line]


def test_power_plot_is_an_embedded_png_of_the_median_e2e_rep(data: ReportData, written, made) -> None:
    _, html, md = written
    _, truths = made
    images = re.findall(r'<img src="([^"]+)" alt="([^"]*)"', html)
    power = [(src, alt) for src, alt in images if alt.startswith("Power over time")]
    assert [alt for _, alt in power] == ["Power over time: %s" % JETSON]  # only the board with a sensor
    prefix = "data:image/png;base64,"
    assert power[0][0].startswith(prefix)
    assert base64.b64decode(power[0][0][len(prefix):], validate=True).startswith(PNG_MAGIC)
    # the drawn repetition is the median-e2e unflagged one, and its shaded phases are where they really were
    by_e2e = sorted((t for t in truths if not t.flagged), key=lambda t: (t.e2e_ms, t.repetition))
    chosen = by_e2e[(len(by_e2e) - 1) // 2]
    (board,) = [b for b in data.telemetry.power if b.device == JETSON]
    (trace,) = board.traces
    assert trace.repetition == chosen.repetition and trace.n_candidates == REPS - len(FLAGGED_REPS)
    assert not trace.flagged
    spans = {label: (a, b) for label, a, b in trace.phases}
    for name, label in (("preprocess", "preprocess"), ("vision_encode", "vision encode"),
                        ("prefill", "prefill"), ("decode", "decode")):
        assert spans[label] == pytest.approx(chosen.phase_ms[name], abs=1e-3), name
    assert min(trace.t_ms) <= 0.0 and max(trace.t_ms) >= chosen.e2e_ms  # the neighbour samples too
    described = "repetition %d (median e2e" % chosen.repetition
    assert described in html and described in md
    power_section = html[html.index('id="energy"'):html.index('id="memory"')]
    assert "Power over time: %s: no power trace to draw (" % AX650N in power_section  # one sentence, no empty figure


def test_throttle_badge_is_on_the_flagged_device_only(data: ReportData, written) -> None:
    _, html, md = written
    (group,) = [g for g in data.telemetry.flag_groups if g.n_flagged]
    assert group.device == JETSON and group.n_flagged == len(FLAGGED_REPS) and group.n_checked == REPS
    assert sorted(f.repetition for f in data.telemetry.flagged_reps) == list(FLAGGED_REPS)
    flags = [flag for flag, _ in group.flags]
    assert any(f.startswith("temperature ina/soc 91.0 C after") for f in flags)
    assert "nvpmodel was '15W' before the measurement, expected 'MAXN'" in flags
    badged = [r for r in _rows_html(html) if "badge-throttled" in r]
    # the Jetson's first summary row per workload (once per variant, as the random/emulated
    # badges) and each flagged repetition's row
    n_tables = sum(1 for t in data.workloads if any(r.group.startswith(JETSON) for r in t.rows))
    assert n_tables and len(badged) == n_tables + len(FLAGGED_REPS)
    assert all(JETSON in r and AX650N not in r and OLD not in r for r in badged)
    alert = html[html.index('<div class="alert-throttled">'):]
    alert = alert[:alert.index("</div>")]
    assert "2 of 10 checked measured repetitions" in alert and JETSON in alert and AX650N not in alert
    assert "throttled / power mode: 2 of 5 reps" in alert
    assert "nvpmodel was &#39;15W&#39; before the measurement" in alert
    badge_lines = [line for line in md.splitlines() if "[throttled / power mode" in line or "[flagged]" in line]
    assert badge_lines and all(JETSON in line for line in badge_lines)
    assert "old-board / fp16 (reference) | image: 5 of 5 measured repetitions not checked" in html


def test_hostile_telemetry_warnings_are_escaped_and_collapsed(written) -> None:
    _, html, md = written
    assert "<script" not in html.lower() and "<script" not in md.lower()
    details = html[html.index("<details><summary>Telemetry warnings"):]
    details = details[:details.index("</details>")]
    assert "CMM line &lt;script&gt;alert(&#39;cmm&#39;)&lt;/script&gt; | unparsed &amp; odd" in details
    assert "no power or energy figure for this query" in details
    assert "CMM line &lt;script&gt;alert('cmm')&lt;/script&gt; \\| unparsed &amp;amp; odd" not in md
    assert "CMM line &lt;script&gt;alert('cmm')&lt;/script&gt; \\| unparsed &amp; odd" in md
    assert HOSTILE_WARNING not in html and HOSTILE_WARNING not in md


def test_memory_by_source(data: ReportData, made, written) -> None:
    records, _ = made
    rows: Dict[Tuple[str, str], float] = {(m.group.split(" /")[0], m.source): m.median_mb
                                          for m in data.telemetry.memory}
    measured = [r for r in records if r["device"] == JETSON and not r["warmup"]]
    for channel in ("ina/rss", "ina/nvmap"):
        truth = float(np.median([r["telemetry"]["window"]["peak_mb"][channel] for r in measured]))
        assert rows[(JETSON, channel)] == pytest.approx(truth)
    assert (AX650N, "cmm/cmm_used") in rows and (JETSON, "peak_host_mb (VmHWM)") in rows
    assert (OLD, "peak_host_mb (VmHWM)") in rows  # the runner's own figure survives without telemetry
    memory = written[1][written[1].index('id="memory"'):]
    assert "<code>ina/nvmap</code>" in memory and "<code>cmm/cmm_used</code>" in memory


def test_csv_carries_the_energy_columns(written) -> None:
    df = pd.read_csv(written[0].results_csv)
    for column in ("energy_j", "avg_power_w", "j_per_token", "idle_power_w", "energy_above_idle_j",
                   "energy_j_source"):
        assert column in df.columns, column
    assert df.loc[df["device"] == JETSON, "energy_j"].notna().all()
    assert df.loc[df["device"] != JETSON, "energy_j"].isna().all()  # empty, never 0


def test_partial_and_odd_telemetry_does_not_break_the_report(made, tmp_path: Path) -> None:
    records = copy.deepcopy(made[0])
    jetson = [r for r in records if r["device"] == JETSON]
    for record in jetson:
        record["telemetry"]["window"].pop("power_trace")  # a runner that did not ask for a trace
    jetson[1]["telemetry"]["window"]["phases"] = None
    jetson[2]["telemetry"] = {"throttled": True}  # flagged with no reason and no window
    jetson[2]["metrics"]["energy_j"] = None
    jetson[3]["telemetry"]["window"]["peak_mb"] = {"ina/rss": "n/a"}
    ax = [r for r in records if r["device"] == AX650N]
    ax[1]["telemetry"] = None
    paths = write_report(RUN, records, tmp_path)
    html = paths.index_html.read_text(encoding="utf-8")
    assert "energy was measured but no power trace was kept" in html
    assert "flagged as throttled by the runner (no reason recorded)" in html
    assert 'alt="Power over time' not in html
    data = build_report_data(RUN, records)
    assert _row(data, JETSON).n == "%d/%d" % (REPS - 1, REPS)  # the rep without a window has no energy
    assert _row(data, AX650N).note == NO_SENSOR_TEXT
