"""summary.md: the summary tables, labels, failures, provenance and definitions as GFM markdown.

Cells are escaped so no value can break a table or inject markup: backslashes and ``|`` are
backslash-escaped (so is ``$``, which GitHub reads as math), ``& < >`` become entities, newlines become ``<br>``.
"""

from __future__ import annotations

from typing import List, Sequence

from .plots import Plot
from .tables import (
    DEFINITIONS_INTRO,
    METRIC_DEFINITIONS,
    SUMMARY_METHOD_NOTE,
    ReportData,
)


def cell(value: object) -> str:
    """One table cell: safe for GFM tables and for renderers that pass raw HTML through."""
    text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("$", "\\$")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    return text.replace("\n", "<br>")


def inline(value: object) -> str:
    """Text outside a table (headings, list items): one line, markup characters neutralised."""
    return " ".join(cell(value).replace("<br>", " ").split())


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> List[str]:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return lines


def render_markdown(data: ReportData, plots: Sequence[Plot] = ()) -> str:
    """The summary as markdown text."""
    out: List[str] = ["# edge-VLM bench: run %s" % inline(data.run.get("run_id", "")), ""]
    out += table(["field", "value"], data.header)
    out += ["", "%d measurements stored: %d ok, %d failed, %d warm-up (stored, excluded from summaries)."
            % (data.n_records, data.n_ok, len(data.failures), data.n_warmup), ""]
    for label in data.labels:
        out += ["> **%s / %s: %s**" % (inline(label.device), inline(label.variant), inline(label.text)), ""]

    out += ["## Summary", "",
            "median [95% CI of the median], p90 / min / max / CV over the measured repetitions "
            "(status ok, warm-up excluded); n = summarised / measured.", ""]
    header = ["metric", "device / variant (backend)", "median [95% CI]", "p90", "min", "max", "CV", "n",
              "excluded", "source", "engine's own figure"]
    for workload in data.workloads:
        out += ["### Workload: %s" % inline(workload.workload), ""]
        rows = []
        for row in workload.rows:
            group = row.group + "".join(" [%s]" % ("random weights" if b == "random" else "emulated")
                                        for b in row.badges)
            rows.append([row.metric, group, row.median_ci, row.p90, row.min, row.max, row.cv, row.n,
                         row.excluded, row.source, row.engine])
        out += table(header, rows) + [""]
    if not data.workloads:
        out += ["No measurements in this run.", ""]

    for plot in plots:
        if plot.details:
            out += ["%s %s" % (inline(plot.title) + ":", inline(plot.caption)), ""]
            out += ["- %s" % inline(line) for line in plot.details] + [""]
    notes = [note for plot in plots for note in plot.notes]
    if notes:
        out += ["Plot notes (see index.html for the figures):", ""]
        out += ["- %s" % inline(note) for note in notes] + [""]

    out += ["## Failed measurements (%d)" % len(data.failures), ""]
    if data.failures:
        out += table(["device", "variant", "workload", "repetition", "warm-up", "kind", "error"],
                     [[f.device, f.variant, f.workload, f.repetition, "yes" if f.warmup else "no",
                       f.error_kind, f.error] for f in data.failures]) + [""]
    else:
        out += ["None: every repetition succeeded.", ""]

    if data.engine_tables:
        out += ["## Engine's own figures", ""]
        for engine in data.engine_tables:
            out += ["### %s | %s" % (inline(engine.group), inline(engine.workload)), ""]
            out += table(["figure", "value"], engine.rows) + [""]

    out += ["## Provenance", ""]
    out += table(["key"] + data.provenance.groups, [[k] + v for k, v in data.provenance.rows]) + [""]
    out += ["Input sha256 per workload:", ""]
    out += table(["workload"] + data.inputs.groups, [[k] + v for k, v in data.inputs.rows]) + [""]

    out += ["## Metric definitions", "", DEFINITIONS_INTRO, ""]
    out += ["- %s" % line for line in METRIC_DEFINITIONS]
    out += ["", SUMMARY_METHOD_NOTE, ""]
    return "\n".join(out)
