"""The accuracy part of a report: one table per board (VILA-README style) and a plot.

Per device and variant: accuracy with its 95% Wilson interval, the change against the reference
variant with McNemar's paired p-value, and the same variant's TTFT, decode tok/s, peak memory and
energy per query from the same run's measurements (medians over measured repetitions, warm-up
excluded). ``write_accuracy_report`` writes ``accuracy.md``, ``accuracy.csv``, ``accuracy.html``
(self-contained) and ``accuracy_vs_latency.png`` into a report directory, and returns the
markdown and HTML fragments so ``bench report`` can also embed them in its own pages.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .store import AccuracyStore

LATENCY = (("ttft_ms", "TTFT ms"), ("decode_tps", "decode tok/s"), ("peak_host_mb", "peak host MB"),
           ("peak_accel_mb", "peak accel MB"), ("energy_j", "energy J/query"))
COLUMNS = ("device", "variant", "backend", "n", "accuracy", "95% CI", "delta vs ref", "delta 95% CI", "agreement",
           "McNemar p", "verdict", "failed") + tuple(label for _, label in LATENCY) + ("latency workload",)


@dataclass
class AccuracyReport:
    rows: List[Dict[str, Any]]
    markdown: str
    html_fragment: str
    files: Dict[str, Path] = field(default_factory=dict)


def latency_by_variant(measurements: Sequence[Dict[str, Any]]) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """Medians of the latency/memory/energy metrics per (device, variant), measured reps only."""
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for record in measurements:
        if record.get("status") == "ok" and not record.get("warmup"):
            groups.setdefault((record["device"], record["variant"]), []).append(record)
    out: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for key, records in groups.items():
        item: Dict[str, Any] = {"workloads": sorted({r["workload"] for r in records}), "n": len(records)}
        for metric, _ in LATENCY:
            values = [r["metrics"].get(metric) for r in records if r.get("metrics")]
            values = [float(v) for v in values if v is not None]
            item[metric] = statistics.median(values) if values else None
        out[key] = item
    return out


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def _p(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else "%.3f" % value


def _ci_pp(low: Optional[float], high: Optional[float]) -> str:
    return "-" if low is None or high is None else "%+.1f to %+.1f pp" % (100 * low, 100 * high)


PAIR_COLUMNS = ("device", "b", "against a", "n", "delta (b - a)", "95% CI (paired bootstrap)", "agreement",
                "McNemar p", "verdict")


def pair_rows(results: Sequence[Dict[str, Any]]) -> List[Dict[str, str]]:
    """Every variant pair of every device (as scored: b against a)."""
    rows = []
    for result in results:
        for pair in result.get("pairs") or []:
            rows.append({
                "device": result["device"], "b": pair["b"], "against a": pair["a"], "n": str(pair["n_pairs"]),
                "delta (b - a)": "%+.1f pp" % (100 * pair["delta"]) if pair["delta"] is not None else "-",
                "95% CI (paired bootstrap)": _ci_pp(pair["ci_low"], pair["ci_high"]),
                "agreement": _fmt(100 * pair["agreement"]) + "%" if pair["agreement"] is not None else "-",
                "McNemar p": _p(pair["p_value"]), "verdict": pair["verdict"],
            })
    return rows


def table_rows(results: Sequence[Dict[str, Any]], measurements: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    latency = latency_by_variant(measurements)
    rows = []
    for result in results:
        lat = latency.get((result["device"], result["variant"]), {})
        accuracy = result.get("accuracy")
        ref = result.get("variant") == result.get("reference_variant")
        row = {
            "device": result["device"], "variant": result["variant"] + (" (ref)" if ref else ""),
            "backend": result.get("backend", "") + (" [emulated answers]" if result.get("emulated") else ""),
            "n": result.get("n"),
            "accuracy": _fmt(100 * accuracy, 1) + "%" if accuracy is not None else "-",
            "95% CI": ("%s-%s%%" % (_fmt(100 * result["ci_low"]), _fmt(100 * result["ci_high"]))
                       if result.get("ci_low") is not None else "-"),
            "delta vs ref": ("%+.1f pp" % (100 * result["delta"]) if result.get("delta") is not None and not ref else "-"),
            "delta 95% CI": _ci_pp(result.get("delta_ci_low"), result.get("delta_ci_high")) if not ref else "-",
            "agreement": _fmt(100 * result["agreement"]) + "%" if result.get("agreement") is not None else "-",
            "McNemar p": _p(result.get("mcnemar_p")) if not ref else "-",
            "verdict": result.get("verdict") or "-" if not ref else "-",
            "failed": result.get("n_failed", 0),
            "latency workload": ", ".join(lat.get("workloads", [])) or "none measured",
            "_raw": {"result": result, "latency": lat},
        }
        for metric, label in LATENCY:
            row[label] = _fmt(lat.get(metric), 2 if metric == "energy_j" else 1)
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Dict[str, Any]], task: str, metric: str) -> str:
    # a latency column no variant has a figure for is one sentence, not a column of dashes
    empty = [label for _, label in LATENCY if rows and all(str(r[label]) == "-" for r in rows)]
    columns = [c for c in COLUMNS if c not in empty]
    lines = ["## Accuracy vs quantization: %s (%s)" % (task, metric), "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in columns) + " |")
    if empty:
        lines += ["", "Not measured for any variant in this run: %s." % ", ".join(empty)]
    lines += ["", "Accuracy: lm-eval's %s over the task's questions, answers generated on the board by the "
              "runner; 95%% Wilson score interval. Delta and McNemar p: paired against the reference "
              "variant on the same questions (exact binomial test under 25 discordant pairs). Latency "
              "and memory: medians over measured repetitions of the same variant in the same run. "
              "Failed answers count as wrong." % metric]
    results = [r["_raw"]["result"] for r in rows]
    pairs = pair_rows(results)
    if pairs:
        margins = sorted({r.get("margin_pp") for r in results if r.get("margin_pp") is not None})
        lines += ["", "Variant pairs (b against a, same questions):", "",
                  "| " + " | ".join(PAIR_COLUMNS) + " |", "|" + "---|" * len(PAIR_COLUMNS)]
        lines += ["| " + " | ".join(p[c] for c in PAIR_COLUMNS) + " |" for p in pairs]
        lines += ["", "Delta: b's accuracy minus a's; its 95%% CI from 10,000 paired bootstrap resamples of the "
                  "questions. Agreement: share of questions both answered identically (normalised). Verdict "
                  "against the suite's non-inferiority margin of %s pp: non-inferior when the whole CI lies above "
                  "-margin, inferior when it lies below, else inconclusive at that n (more questions needed)."
                  % (", ".join("%g" % m for m in margins) or "(none declared)")]
    types = sorted({t for r in rows for t in (r["_raw"]["result"].get("by_type") or {})})
    if types:
        lines += ["", "By question type (accuracy, n):", "",
                  "| device | variant | " + " | ".join(types) + " |", "|---|---|" + "---|" * len(types)]
        for row in rows:
            by_type = row["_raw"]["result"].get("by_type") or {}
            cells = ["%.1f%% (%d)" % (100 * by_type[t]["accuracy"], by_type[t]["n"]) if t in by_type else "-"
                     for t in types]
            lines.append("| %s | %s | %s |" % (row["device"], row["variant"], " | ".join(cells)))
    if any(r["_raw"]["result"].get("emulated") for r in rows):
        lines.append("Rows marked [emulated answers] come from the reference engine's configured answer "
                     "policy: they test the path, not a model.")
    return "\n".join(lines) + "\n"


def plot_png(rows: Sequence[Dict[str, Any]]) -> Optional[bytes]:
    """Accuracy (with its CI) against median TTFT, one point per device/variant."""
    points = [(r, r["_raw"]) for r in rows
              if r["_raw"]["latency"].get("ttft_ms") is not None and r["_raw"]["result"].get("accuracy") is not None]
    if not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for row, raw in points:
        result, lat = raw["result"], raw["latency"]
        y = 100 * result["accuracy"]
        low = 100 * result["ci_low"] if result.get("ci_low") is not None else y
        high = 100 * result["ci_high"] if result.get("ci_high") is not None else y
        # a Wilson bound is a float: at 0% its lower end is ~1e-19, not 0.0, and errorbar refuses
        # the negative whisker that leaves; clamp rounding, not data
        ax.errorbar([lat["ttft_ms"]], [y], yerr=[[max(y - low, 0.0)], [max(high - y, 0.0)]], fmt="o", capsize=4)
        ax.annotate("%s/%s" % (result["device"], result["variant"]), (lat["ttft_ms"], y),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("median TTFT (ms), same run")
    ax.set_ylabel("accuracy (%), 95% Wilson CI")
    ax.set_title("accuracy vs latency per model variant")
    ax.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _markdown_cells(line: str) -> List[str]:
    cells = _CELL_SPLIT.split(line.strip())[1:-1]  # the line starts and ends with "|"
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_to_html(markdown: str) -> str:
    """The accuracy markdown (headings, GFM tables, paragraphs) as escaped HTML: every table the
    markdown has, the HTML has (the main one, variant pairs, by question type)."""
    out: List[str] = []
    lines = markdown.strip().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append("<h%d>%s</h%d>" % (level, html.escape(line.lstrip("# ")), level))
        elif line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].startswith("|"):
                block.append(lines[index])
                index += 1
            head, body = _markdown_cells(block[0]), [_markdown_cells(b) for b in block[2:]]
            out.append("<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (
                "".join("<th>%s</th>" % html.escape(c) for c in head),
                "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(c) for c in row) for row in body)))
            continue
        elif line.strip():
            out.append("<p>%s</p>" % html.escape(line))
        index += 1
    return "\n".join(out)


ACCURACY_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1rem 1.5rem 3rem; color: #1d1d1f; line-height: 1.4; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .86rem; }
th, td { border: 1px solid #d0d0d0; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f5; } p { max-width: 60rem; } img { max-width: 100%; border: 1px solid #eee; }
"""


def html_fragment(rows: Sequence[Dict[str, Any]], markdown: str, png: Optional[bytes]) -> str:
    image = ('<img alt="accuracy vs latency" src="data:image/png;base64,%s">' % base64.b64encode(png).decode()
             if png else "<p>No plot: no variant has both an accuracy and a TTFT.</p>")
    body = markdown_to_html(markdown).replace("<table>", '<div class="scroll"><table>').replace(
        "</table>", "</table></div>")
    return '<section id="accuracy">%s%s</section>' % (body, image)


def write_accuracy_report(run_id: str, results_dir: Path, measurements: Sequence[Dict[str, Any]],
                          out_dir: Path, store: Any = None) -> Optional[AccuracyReport]:
    """The accuracy files for ``run_id`` (None when the run has no accuracy results), read from
    ``store`` (default: results_dir/bench.sqlite)."""
    store = AccuracyStore.in_results(results_dir, store=store)
    try:
        results = store.results(run_id)
    finally:
        store.close()
    if not results:
        return None
    rows = table_rows(results, measurements)
    markdown = markdown_table(rows, results[0]["task"], results[0]["metric"])
    png = plot_png(rows)
    fragment = html_fragment(rows, markdown, png)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "accuracy.md", "csv": out / "accuracy.csv", "html": out / "accuracy.html"}
    files["markdown"].write_text(markdown, encoding="utf-8")
    with open(files["csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        raw_columns = ("device", "variant", "backend", "task", "metric", "n", "correct", "accuracy", "ci_low",
                       "ci_high", "reference_variant", "delta", "delta_ci_low", "delta_ci_high", "agreement",
                       "mcnemar_p", "test", "margin_pp", "verdict", "n_failed", "emulated")
        writer.writerow(raw_columns + tuple(m for m, _ in LATENCY))
        for row in rows:
            result, lat = row["_raw"]["result"], row["_raw"]["latency"]
            writer.writerow([result.get(c) for c in raw_columns] + [lat.get(m) for m, _ in LATENCY])
    files["html"].write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'><title>accuracy %s</title>"
        "<style>%s</style></head><body><p><a href='index.html'>&larr; run report %s</a></p>%s</body></html>\n"
        % (html.escape(run_id), ACCURACY_CSS, html.escape(run_id), fragment), encoding="utf-8")
    if png:
        files["plot"] = out / "accuracy_vs_latency.png"
        files["plot"].write_bytes(png)
    return AccuracyReport(rows=rows, markdown=markdown, html_fragment=fragment, files=files)
