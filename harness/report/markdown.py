"""summary.md: the summary tables, labels, failures, provenance and definitions as GFM markdown.

Cells are escaped so no value can break a table or inject markup: backslashes and ``|`` are
backslash-escaped (so is ``$``, which GitHub reads as math), ``& < >`` become entities, newlines become ``<br>``.
"""

from __future__ import annotations

from typing import List, Sequence

from ..analysis.noise import NOISE_NOTE
from .plots import Plot
from .tables import (
    DEFINITIONS_INTRO,
    ENERGY_NOTE,
    METRIC_DEFINITIONS,
    POWER_PHASES,
    SUMMARY_METHOD_NOTE,
    ReportData,
    TelemetryData,
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


def throttling_lines(tel: TelemetryData) -> List[str]:
    """The flags, up front in the summary: a count, a badge per flagged group, every flag listed."""
    out = ["### Throttling and power-mode flags", ""]
    if tel.n_flagged:
        out += ["> **%d of %d checked measured repetitions were taken while throttled or in a power mode "
                "other than devices.yaml expects**; their figures are in the summaries below." % (
                    tel.n_flagged, tel.n_checked), ""]
        for group in tel.flag_groups:
            if not group.n_flagged:
                continue
            out.append("- %s | %s **[%s]**" % (inline(group.group), inline(group.workload), inline(group.badge)))
            out += ["  - %s (%d of %d flagged reps)" % (inline(flag), count, group.n_flagged)
                    for flag, count in group.flags]
        out.append("")
    elif tel.n_checked:
        out += ["No measured repetition was flagged: %d checked (clocks, temperatures and power mode "
                "before and after each)." % tel.n_checked, ""]
    else:
        out += ["No measurement carries telemetry, so throttling and power mode could not be checked.", ""]
    if tel.n_checked:
        out += ["%s | %s: %d of %d measured repetitions not checked (no telemetry, or failed)."
                % (inline(g.group), inline(g.workload), g.n_measured - g.n_checked, g.n_measured)
                for g in tel.flag_groups if g.n_checked < g.n_measured]
        out.append("")
    if tel.flagged_reps:
        out += table(["device / variant (backend)", "workload", "repetition", "flags"],
                     [["%s [flagged]" % f.group, f.workload,
                       "%d%s" % (f.repetition, " (warm-up)" if f.warmup else ""), "\n".join(f.flags)]
                      for f in tel.flagged_reps]) + [""]
    return out


def telemetry_lines(tel: TelemetryData) -> List[str]:
    """Power and energy, the power traces (figures are in index.html), memory by source, warnings."""
    out = ["## Power and energy", "", ENERGY_NOTE, ""]
    header = (["device / variant (backend)", "workload", "sensor: what it covers", "n", "energy / query (J)",
               "J / output token (decode)", "avg power, query (W)"]
              + ["%s (W)" % label for _, label in POWER_PHASES]
              + ["idle (W)", "energy above idle / query (J)"])
    rows = []
    for row in tel.energy:
        if row.note:
            # a sensor-less board says so in one sentence, not a row of blanks that read as zero
            out += ["**%s | %s: %s**" % (inline(row.group), inline(row.workload), inline(row.note)), ""]
        else:
            rows.append([row.group, row.workload, row.sensor, row.n, row.cell("energy_j"), row.cell("j_per_token"),
                         row.cell("avg_power_w")] + [row.cell(name) for name, _ in POWER_PHASES]
                        + [row.cell("idle_power_w"), row.cell("energy_above_idle_j")])
    if rows:
        out += table(header, rows) + [""]
    elif not tel.energy:
        out += ["No measurements in this run.", ""]
    traces = [t for board in tel.power for t in board.traces]
    notes = [note for board in tel.power for note in board.notes]
    if traces or notes:
        out += ["Power over time, one figure per board (see index.html for the figures):", ""]
        out += ["- %s" % inline(t.describe()) for t in traces]
        out += ["- %s" % inline(note) for note in notes] + [""]

    out += ["## Memory by source", "",
            "Peak MB during each query from every memory source, median and max over the measured "
            "repetitions; n = repetitions with the figure / measured.", ""]
    if tel.memory:
        out += table(["device / variant (backend)", "workload", "source",
                      "the source's description (what it covers)", "peak MB (median)", "max", "n"],
                     [[m.group, m.workload, m.source, m.covers, m.median, m.max, m.n] for m in tel.memory]) + [""]
    else:
        out += ["No measurements in this run.", ""]
    if tel.warnings:
        # collapsed as in the HTML (GitHub renders <details>), but every warning is there
        out += ["<details><summary>Telemetry warnings (%d distinct)</summary>" % len(tel.warnings), ""]
        out += table(["device / variant (backend)", "records", "warning"],
                     [[group, count, text] for group, text, count in tel.warnings])
        out += ["", "</details>", ""]
    return out


def render_markdown(data: ReportData, plots: Sequence[Plot] = ()) -> str:
    """The summary as markdown text."""
    out: List[str] = ["# edge-VLM bench: run %s" % inline(data.run.get("run_id", "")), ""]
    out += table(["field", "value"], data.header)
    out += ["", "%d measurements stored: %d ok, %d failed, %d warm-up (stored, excluded from summaries)."
            % (data.n_records, data.n_ok, len(data.failures), data.n_warmup), ""]
    for label in data.labels:
        out += ["> **%s / %s: %s**" % (inline(label.device), inline(label.variant), inline(label.text)), ""]

    if data.accuracy_page:
        out += ["This run also measured accuracy: [accuracy per model variant](%s)."
                % data.accuracy_page.replace(".html", ".md"), ""]
    out += ["## Summary", "",
            "median [95% CI of the median], p90 / min / max / CV over the measured repetitions "
            "(status ok, warm-up excluded); n = summarised / measured.", ""]
    out += throttling_lines(data.telemetry)
    header = ["metric", "device / variant (backend)", "median [95% CI]", "p90", "min", "max", "CV", "n",
              "excluded", "source", "engine's own figure"]
    for workload in data.workloads:
        out += ["### Workload: %s" % inline(workload.workload), ""]
        rows = []
        for row in workload.rows:
            group = row.group + "".join(" [%s]" % ("random weights" if b == "random" else "emulated")
                                        for b in row.badges)
            if row.flagged:
                group += " [%s]" % row.flagged
            if row.noisy:
                group += " [noisy]"
            rows.append([row.metric, group, row.median_ci, row.p90, row.min, row.max, row.cv, row.n,
                         row.excluded, row.source, row.engine])
        out += table(header, rows) + [""]
        out += [inline(sentence) for sentence in workload.no_data] + ([""] if workload.no_data else [])
        out += ["Machine load during the repetitions:", ""]
        out += ["- %s%s: %s" % (inline(group), " **[disturbed]**" if disturbed else "", inline(text))
                for group, text, disturbed in workload.noise] + [""]
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

    out += telemetry_lines(data.telemetry)

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
    out += [NOISE_NOTE, ""]
    out += ["- %s" % line for line in METRIC_DEFINITIONS]
    out += ["", SUMMARY_METHOD_NOTE, ""]
    return "\n".join(out)
