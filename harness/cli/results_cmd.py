"""`bench results list|show|export`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..terminal import TerminalTable, num_col, show, text_col
from .app import results_app
from .common import EXIT_CONFIG, fail, open_paths_store, summary_rows


@results_app.command("list")
def results_list(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit"),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as JSON on stdout."),
) -> None:
    """Recent runs, newest first."""
    store = open_paths_store(ctx.obj)
    runs = [(r, store.count(r.run_id)) for r in store.list_runs(limit=limit)]
    if json_out:
        payload = [dict(r.as_dict(), measurements=n) for r, n in runs]
        sys.stdout.write(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")
        return
    table = TerminalTable(["run", "created", text_col("suite"), text_col("devices"), "status",
                           num_col("measurements"), text_col("tags")])
    for run_record, count in runs:
        # cells are text, never rich markup: tags and names come from users and devices files
        table.add_row(run_record.run_id, run_record.created_at, run_record.suite, ", ".join(run_record.devices),
                      run_record.status, str(count), ", ".join(run_record.tags))
    show(Console(), table)


@results_app.command("show")
def results_show(ctx: typer.Context, run_id: str = typer.Argument("latest")) -> None:
    """A run's summary as JSON."""
    store = open_paths_store(ctx.obj)
    record = store.get_run(run_id)
    payload = {"run": record.as_dict(), "summary": summary_rows(store.measurements(record.run_id))}
    sys.stdout.write(json.dumps(payload, indent=1, sort_keys=True) + "\n")


@results_app.command("export")
def results_export(
    ctx: typer.Context,
    format: str = typer.Option("csv", "--format", "-f", help="csv, parquet or json."),
    run_id: Optional[str] = typer.Option(None, "--run", help="One run (default: every run)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File (default: stdout for csv/json)."),
) -> None:
    """Export measurements: one flat row per measurement (json keeps the whole records)."""
    from ..analysis.stats import measurements_frame

    if format not in ("csv", "parquet", "json"):
        raise fail("unknown format %r; use csv, parquet or json" % format, EXIT_CONFIG)
    if out is not None and not (out.parent.is_dir() and os.access(out.parent, os.W_OK)):
        raise fail("--out %s: %s is not a directory this user can write to" % (out, out.parent), EXIT_CONFIG)
    store = open_paths_store(ctx.obj)
    rid = store.get_run(run_id).run_id if run_id else None
    records = store.measurements(rid)
    if format == "json":
        text = json.dumps(records, indent=1, sort_keys=True) + "\n"
        if out:
            out.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return
    frame = measurements_frame(records)
    if format == "parquet":
        if out is None:
            raise fail("parquet is binary: give --out FILE.parquet", EXIT_CONFIG)
        frame.to_parquet(out, index=False)
    elif out:
        frame.to_csv(out, index=False)
    else:
        sys.stdout.write(frame.to_csv(index=False))
