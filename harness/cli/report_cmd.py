"""`bench report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer

from ..plan import Paths
from .app import app
from .common import EXIT_CONFIG, err, fail, inventory_of, open_paths_store


@app.command()
def report(
    ctx: typer.Context,
    run_ids: Optional[List[str]] = typer.Argument(None, help="Run id(s) or 'latest' (default latest)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory (default reports/RUN_ID, reports/history, reports/compare-...)."),
    history: bool = typer.Option(False, "--history", help="Per-board, per-metric time series with change points."),
    compare: bool = typer.Option(False, "--compare", help="Procurement report ranking the boards of RUN_IDS."),
    suite: Optional[str] = typer.Option(None, "--suite", help="History: only this suite."),
    tag: Optional[str] = typer.Option(None, "--tag", help="History: only runs with this tag."),
    last: Optional[int] = typer.Option(None, "--last", help="History: only the last N runs."),
    metric: List[str] = typer.Option([], "--metric", help="History: metrics to plot (default: the main ones)."),
    include_incomplete: bool = typer.Option(False, "--include-incomplete",
                                            help="History: also interrupted and abandoned runs (left out by default)."),
) -> None:
    """A run's report (index.html, summary.md, results.csv), the history dashboard, or a comparison."""
    paths: Paths = ctx.obj
    store = open_paths_store(paths)
    if history and compare:
        raise fail("choose one of --history and --compare", EXIT_CONFIG)
    if history:
        from ..report.history import render_history

        page = render_history(store, out or paths.reports_dir / "history", metrics=metric or None,
                              suite=suite, tag=tag, last_runs=last, include_incomplete=include_incomplete,
                              nights=_stored_nights(paths))
        err.print("wrote %s, %s" % (page, page.with_name("history.md")), markup=False, soft_wrap=not err.is_terminal)
        return
    ids = run_ids or ["latest"]
    records = [store.get_run(run_id) for run_id in ids]
    if compare:
        from ..report.compare import render_compare

        inventory = inventory_of(paths)
        target = out or paths.reports_dir / ("compare-" + "-".join(r.run_id for r in records)[:120])
        page = render_compare(store, [r.run_id for r in records], inventory, target,
                              reference_inventory=_reference_inventory(paths),
                              accuracy=_variant_accuracy(paths, store, [r.run_id for r in records]))
        err.print("wrote %s" % page, markup=False, soft_wrap=not err.is_terminal)
        return
    from ..report import write_report

    for record in records:
        target = out if (out and len(records) == 1) else paths.reports_dir / record.run_id
        measurements = store.measurements(record.run_id)
        accuracy = None
        try:
            from ..eval.report import write_accuracy_report
        except ImportError:
            pass  # no accuracy tooling installed: runs without accuracy need none
        else:  # first, so index.html can link to accuracy.html
            accuracy = write_accuracy_report(record.run_id, paths.results_dir, measurements, target, store=store)
        written = write_report(record.as_dict(), measurements, target,
                               accuracy_page="accuracy.html" if accuracy is not None else None)
        err.print("wrote %s, %s, %s" % (written.index_html, written.summary_md, written.results_csv), markup=False, soft_wrap=not err.is_terminal)
        if accuracy is not None:
            err.print("wrote the accuracy table and plot in %s" % target, markup=False, soft_wrap=not err.is_terminal)


def _stored_nights(paths: Paths) -> Optional[List[Dict[str, Any]]]:
    """The nightly schedule's nights when the store is the team's PostgreSQL (where the workers
    keep ``bench_nights``); None for SQLite or a PostgreSQL store no schedule ran on."""
    from ..queue.db import POSTGRES_PREFIXES, conninfo

    if not (paths.store_url or "").startswith(POSTGRES_PREFIXES):
        return None
    from ..errors import MissingError

    try:
        from ..queue.schedule import stored_nights

        return stored_nights(conninfo(paths.store_url))
    except (ImportError, MissingError) as exc:  # the store reads without the queue's packages; the page still can
        err.print("no Nights section: %s" % exc, markup=False, soft_wrap=not err.is_terminal)
        return None


def _reference_inventory(paths: Paths):
    """Prices and bandwidths by board type for devices whose own entry lacks them: the project's
    devices.yaml (when another devices file is in use), else the emulated farm's devices file."""
    from ..config.devices import load_devices

    used = Path(paths.devices_file).resolve()
    for candidate in (Path("devices.yaml"), paths.results_dir / "farm" / "devices.emulated.yaml"):
        if candidate.exists() and candidate.resolve() != used:
            return load_devices(candidate)
    return None


def _variant_accuracy(paths: Paths, store, run_ids: List[str]) -> Dict[Tuple[str, str, str], Tuple[float, str, int]]:
    """Accuracy per (run, device, variant) from the store (a results/accuracy.sqlite beside it is
    imported first); {} when there is none."""
    from ..eval.store import AccuracyStore

    accuracy = AccuracyStore.in_results(paths.results_dir, store=store)
    try:
        return accuracy.variant_accuracy(run_ids)
    finally:
        accuracy.close()
