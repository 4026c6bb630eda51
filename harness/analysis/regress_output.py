"""A :class:`~harness.analysis.regress.RegressionReport` as a terminal table (rich), JSON,
markdown for a CI comment, and JUnit XML for CI test views.

Every string that came from a board or a model (device names, variants, provenance values) is
treated as data: rich cells are ``Text`` (no markup parsing), markdown cells are escaped, and the
XML is built with ElementTree (which escapes).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.text import Text

from ..terminal import TerminalTable, num_col, show, text_col
from .regress import MetricChange, RegressionReport

_STATUS_STYLE = {"regression": "bold red", "unconfirmed": "yellow", "improvement": "green",
                 "no_baseline": "dim", "unchanged": ""}
_MD_STATUS = {"regression": "REGRESSION", "unconfirmed": "unconfirmed", "improvement": "improvement",
              "no_baseline": "no baseline", "unchanged": "unchanged"}


def _num(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return "%.0f" % value
    if magnitude >= 10:
        return "%.1f" % value
    return "%.3g" % value


def _pct(value: Optional[float]) -> str:
    return "-" if value is None or not math.isfinite(value) else "%+.1f%%" % (100 * value)


def _p(value: Optional[float]) -> str:
    return "-" if value is None else "%.2g" % value


def _provenance(change: MetricChange, limit: int = 4) -> str:
    items = [c.text() for c in change.provenance_changes]
    if len(items) > limit:
        items = items[:limit] + ["(+%d more)" % (len(items) - limit)]
    return "; ".join(items)


def verdict(report: RegressionReport) -> str:
    if report.regressions:
        return "%d regression(s) against %s" % (len(report.regressions), report.baseline_description)
    return "no regression against %s" % report.baseline_description


# -- terminal -----------------------------------------------------------------------------------
def rich_table(report: RegressionReport, show_unchanged: bool = False) -> TerminalTable:
    """The changes (regressions first); unchanged series only with ``show_unchanged``. Printed by
    `harness.report.terminal.show`: at 80 columns each change becomes a block of lines."""
    table = TerminalTable(["status", "device", "suite / workload", "variant", "metric", num_col("baseline"),
                           num_col("latest"), num_col("change"), num_col("threshold"), num_col("p"), text_col("step"),
                           text_col("provenance changes")], title=verdict(report))
    for change in report.changes:
        if change.status == "unchanged" and not show_unchanged:
            continue
        table.add_row(
            Text(change.status, style=_STATUS_STYLE.get(change.status, "")), Text(change.device),
            Text("%s / %s" % (change.suite, change.workload)), Text(change.variant), Text(change.metric),
            _num(change.baseline_median), _num(change.latest_median), _pct(change.rel_change),
            "%.1f%%" % (100 * change.threshold), _p(change.p_value),
            Text(change.step.note if change.step.checked or change.step.note else ""),
            Text(_provenance(change)),
        )
    return table


def print_report(report: RegressionReport, console: Console, show_unchanged: bool = False) -> None:
    show(console, rich_table(report, show_unchanged))
    counts = "%d compared, %d regression(s), %d unconfirmed, %d improvement(s), %d without baseline" % (
        len(report.changes), len(report.regressions), len(report.unconfirmed), len(report.improvements),
        len(report.no_baseline))
    console.print(Text(counts))
    if report.emulated:
        console.print(Text("note: some results come from emulated boards (reference backend), not hardware",
                           style="yellow"))
    for note in report.notes:
        console.print(Text("note: " + note, style="dim"))


# -- JSON ---------------------------------------------------------------------------------------
def to_json(report: RegressionReport) -> str:
    def clean(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None  # JSON has no inf/NaN
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(report.as_dict()), indent=1, sort_keys=True, allow_nan=False) + "\n"


# -- markdown -----------------------------------------------------------------------------------
def md_cell(text: object) -> str:
    """A markdown table cell that cannot break the table or inject HTML."""
    value = str(text)
    for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`"), ("*", "\\*"),
                     ("_", "\\_"), ("[", "\\["), ("]", "\\]")):
        value = value.replace(old, new)
    return " ".join(value.split())


def _md_rows(changes: List[MetricChange]) -> List[str]:
    lines = ["| device | suite / workload | variant | metric | baseline | latest | change | p | evidence |"
             " provenance changes |", "|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for c in changes:
        lines.append("| %s |" % " | ".join([
            md_cell(c.device), md_cell("%s / %s" % (c.suite, c.workload)), md_cell(c.variant), md_cell(c.metric),
            _num(c.baseline_median), _num(c.latest_median), _pct(c.rel_change), _p(c.p_value),
            md_cell(c.step.note or c.reason), md_cell(_provenance(c, limit=6)) or "none"]))
    return lines


def to_markdown(report: RegressionReport) -> str:
    """A summary for a CI comment: the verdict, then each non-trivial section."""
    icon = ":red_circle:" if report.regressions else ":white_check_mark:"
    lines = ["## %s edge-VLM bench: %s" % (icon, md_cell(verdict(report))), ""]
    if report.emulated:
        lines += ["> **Emulated boards**: some results come from the reference backend's emulated profiles, "
                  "not hardware.", ""]
    for title, changes in (("Regressions", report.regressions),
                           ("Unconfirmed (one run so far; not failing)", report.unconfirmed),
                           ("Improvements", report.improvements)):
        if changes:
            lines += ["### %s (%d)" % (title, len(changes)), ""] + _md_rows(changes) + [""]
    if report.no_baseline:
        lines += ["%d series had no baseline: %s" % (len(report.no_baseline), md_cell(", ".join(
            "%s/%s/%s" % (c.device, c.workload, c.metric) for c in report.no_baseline[:10]))), ""]
    unchanged = len(report.changes) - len(report.regressions) - len(report.unconfirmed) - \
        len(report.improvements) - len(report.no_baseline)
    lines += ["%d series compared, %d unchanged. Baseline: %s. %s" % (
        len(report.changes), unchanged, md_cell(report.baseline_description),
        " ".join(md_cell(n) for n in report.notes)), ""]
    return "\n".join(lines)


# -- JUnit XML ----------------------------------------------------------------------------------
def to_junit_xml(report: RegressionReport) -> str:
    """One testcase per compared series; a regression is a failure, no baseline is a skip."""
    suite = ET.Element("testsuite", {
        "name": "bench regress", "tests": str(len(report.changes)), "failures": str(len(report.regressions)),
        "errors": "0", "skipped": str(len(report.no_baseline)), "timestamp": report.generated_at,
    })
    properties = ET.SubElement(suite, "properties")
    for name, value in (("baseline", report.baseline), ("store", report.store)):
        ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    for c in report.changes:
        case = ET.SubElement(suite, "testcase", {
            "classname": "%s.%s.%s.%s" % (c.device, c.suite, c.workload, c.variant), "name": c.metric})
        detail = "%s: baseline %s, latest %s (%s), threshold %.1f%%, %s p=%s. %s%s" % (
            c.status, _num(c.baseline_median), _num(c.latest_median), _pct(c.rel_change), 100 * c.threshold,
            c.test, _p(c.p_value), c.reason,
            (" Provenance: " + _provenance(c, limit=20)) if c.provenance_changes else "")
        if c.status == "regression":
            failure = ET.SubElement(case, "failure", {"message": "%s %s %s" % (c.metric, _pct(c.rel_change),
                                                                               c.direction), "type": "regression"})
            failure.text = detail
        elif c.status == "no_baseline":
            ET.SubElement(case, "skipped", {"message": c.reason})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = detail
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def emit(report: RegressionReport, console: Console, json_stdout: Optional[object] = None,
         markdown: Optional[Path] = None, junit: Optional[Path] = None, json_file: Optional[Path] = None,
         show_unchanged: bool = False) -> int:
    """What `bench regress` does with a report: the table on ``console``, JSON on ``json_stdout``
    (a text stream) when given, the markdown / JUnit / JSON files when given; the exit code."""
    print_report(report, console, show_unchanged)
    if json_stdout is not None:
        json_stdout.write(to_json(report))  # type: ignore[attr-defined]
    for path, text in ((markdown, to_markdown), (junit, to_junit_xml), (json_file, to_json)):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text(report), encoding="utf-8")
    return report.exit_code
