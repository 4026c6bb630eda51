"""Reports of one stored run: ``index.html`` (self-contained), ``summary.md`` and ``results.csv``.

    from harness.report import write_report
    paths = write_report(run, records, Path("reports") / run["run_id"])

``run`` is the store's run record (run_id, suite, created_at, devices, controller_commit, tags);
``records`` are Measurement dicts (``dataclasses.asdict``), warm-up and failed ones included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .html import render_html
from .markdown import render_markdown
from .plots import all_plots
from .scaling import scaling_plots
from .tables import build_report_data


@dataclass(frozen=True)
class ReportPaths:
    index_html: Path
    summary_md: Path
    results_csv: Path


def write_report(run: Dict[str, Any], records: List[Dict[str, Any]], out_dir: Path,
                 accuracy_page: Optional[str] = None) -> ReportPaths:
    """Write the three report files into ``out_dir`` (created if needed) and return their paths.

    ``accuracy_page``: the accuracy page's file name beside index.html (``accuracy.html``, with
    ``accuracy.md`` beside summary.md) when the run measured accuracy; both pages link to it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = build_report_data(run, records)
    data.accuracy_page = accuracy_page or ""
    plots = all_plots(data.measurements, data.summary, data.itl) + scaling_plots(records)
    paths = ReportPaths(out_dir / "index.html", out_dir / "summary.md", out_dir / "results.csv")
    paths.index_html.write_text(render_html(data, plots), encoding="utf-8")
    paths.summary_md.write_text(render_markdown(data, plots), encoding="utf-8")
    data.measurements.to_csv(paths.results_csv, index=False)
    return paths


__all__ = ["ReportPaths", "write_report"]
