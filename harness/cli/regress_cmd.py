"""`bench regress`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..plan import Paths
from .app import app
from .common import EXIT_CONFIG, err, fail, open_paths_store


@app.command()
def regress(
    ctx: typer.Context,
    baseline: str = typer.Option("last:7", "--baseline", help="A run id, tag:NAME or last:N."),
    metric: List[str] = typer.Option([], "--metric", help="Metrics to compare (default: all)."),
    threshold: float = typer.Option(0.05, "--threshold", help="Practical threshold (0.05 = 5%)."),
    alpha: float = typer.Option(0.01, "--alpha", help="Mann-Whitney U significance level."),
    run: Optional[str] = typer.Option(None, "--run", help="The run to judge (default: the latest per series)."),
    suite: Optional[str] = typer.Option(None, "--suite"),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma-separated device names."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Only runs with this tag (e.g. nightly)."),
    min_persist: int = typer.Option(2, "--min-persist", help="Runs a new level must hold to count (1 for a PR gate)."),
    window: int = typer.Option(30, "--window", help="Runs of history for the step detector."),
    json_out: bool = typer.Option(False, "--json", help="JSON on stdout."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a markdown summary (CI comment)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML."),
    show_all: bool = typer.Option(False, "--all", help="Also list unchanged series."),
    include_incomplete: bool = typer.Option(False, "--include-incomplete",
                                            help="Also judge and compare against interrupted and abandoned runs."),
) -> None:
    """Compare the latest runs with a baseline; exit 1 on a confirmed regression."""
    from ..analysis.regress import suite_thresholds
    from ..analysis.regress import regress as run_regress
    from ..analysis.regress_output import emit
    from ..eval.store import AccuracyStore

    paths: Paths = ctx.obj
    store = open_paths_store(paths)
    if baseline.startswith("tag:"):
        wanted = baseline[4:]
        known = sorted({t for r in store.list_runs() for t in r.tags})
        if wanted not in known:
            raise fail("no run is tagged %r; tags in the store: %s" % (wanted, ", ".join(known) or "(none)"),
                        EXIT_CONFIG)
    # per-sample answers of accuracy suites (bench run --suite vqa-quant) are in the same store
    # (a results/accuracy.sqlite from before schema 4 is imported into it first)
    accuracy_store = AccuracyStore.in_results(paths.results_dir, store=store)
    accuracy_samples = accuracy_store.scores if store.has_accuracy() else None
    try:
        result = run_regress(
            store, baseline=baseline, metrics=metric or None, threshold=threshold, alpha=alpha,
            suite_thresholds=suite_thresholds(paths.suites_dir), run=run, suite=suite,
            devices=[d.strip() for d in devices.split(",")] if devices else None, tag=tag,
            min_persist=min_persist, window=window, accuracy_samples=accuracy_samples,
            include_incomplete=include_incomplete,
        )
    finally:  # RegressError, StoreError (exit 2), StepDetectorMissing (exit 3) reach the app as they are
        accuracy_store.close()
    code = emit(result, err, json_stdout=sys.stdout if json_out else None, markdown=markdown, junit=junit,
                show_unchanged=show_all)
    raise typer.Exit(code)
