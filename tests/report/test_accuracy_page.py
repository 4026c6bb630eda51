"""The accuracy page's pieces without lm-eval: the plot of a 0% variant, every markdown table in HTML."""

from __future__ import annotations

import re

from harness.eval.report import markdown_table, markdown_to_html, plot_png


def _row(variant: str, accuracy: float, low: float, high: float) -> dict:
    result = {"device": "emu", "variant": variant, "accuracy": accuracy, "ci_low": low, "ci_high": high,
              "by_type": {"color": {"accuracy": accuracy, "n": 10}, "shape": {"accuracy": accuracy, "n": 20}}}
    return {"device": "emu", "variant": variant, "_raw": {"result": result, "latency": {"ttft_ms": 12.5}}}


def test_a_zero_percent_variant_is_plotted() -> None:
    # the stored Wilson lower bound of a 0% variant in issue 11 was 4e-19, a hair above the 0.0
    # accuracy: the whisker below the point came out negative and matplotlib refused it
    low, high = 4e-19, 0.113
    png = plot_png([_row("fp32", 0.0, low, high), _row("int4", 0.5, 0.33, 0.67)])
    assert png is not None and png.startswith(b"\x89PNG")


def test_every_markdown_table_is_a_table_in_html() -> None:
    rows = [dict(_row("fp32", 0.5, 0.3, 0.7), **{c: "x|y" if c == "backend" else "1" for c in (
        "backend", "n", "accuracy", "95% CI", "delta vs ref", "delta 95% CI", "agreement", "McNemar p", "verdict",
        "failed", "TTFT ms", "decode tok/s", "peak host MB", "peak accel MB", "energy J/query",
        "latency workload")})]
    markdown = markdown_table(rows, "easy_vqa", "exact_match")
    html = markdown_to_html(markdown)
    separators = [line for line in markdown.splitlines() if line.startswith("|---")]
    assert html.count("<table>") == len(separators) == 2
    by_type = html[html.index("By question type"):]
    assert re.findall(r"<th>([^<]*)</th>", by_type) == ["device", "variant", "color", "shape"]
    assert "<td>50.0% (10)</td>" in by_type
    assert "<td>x|y</td>" in html  # an escaped pipe in a cell stays one cell, unescaped


def test_a_latency_column_without_figures_becomes_one_sentence() -> None:
    cells = {c: "1" for c in ("backend", "n", "accuracy", "95% CI", "delta vs ref", "delta 95% CI", "agreement",
                              "McNemar p", "verdict", "failed", "TTFT ms", "decode tok/s", "peak host MB",
                              "latency workload")}
    rows = [dict(_row(v, 0.5, 0.3, 0.7), **cells, **{"peak accel MB": "-", "energy J/query": "-"})
            for v in ("fp32", "int4")]
    markdown = markdown_table(rows, "easy_vqa", "exact_match")
    header = markdown.splitlines()[2]
    assert "peak accel MB" not in header and "energy J/query" not in header and "TTFT ms" in header
    assert "Not measured for any variant in this run: peak accel MB, energy J/query." in markdown
