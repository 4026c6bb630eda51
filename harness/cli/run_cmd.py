"""`bench run`."""

from __future__ import annotations

import json
import sys
import threading
from typing import Dict, List, Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..config.devices import load_devices, run_settings, settings_differences
from ..config.suites import find_suite, list_suites
from ..config.yaml_lines import ConfigError
from ..plan import Paths, new_run_id, plan_run
from ..store import RunRecord
from ..errors import install_hint
from ..farm.run_guard import RunGuard
from .app import app
from .common import EXIT_CONFIG, EXIT_FAILED, EXIT_MISSING, err, fail, open_paths_store, summary_rows, transport_factory


def _progress_table(rows: Dict[str, object]) -> Table:
    table = Table(title="edge-VLM bench", expand=False)
    for column in ("device", "state", "workload", "variant", "rep", "TTFT ms", "tok/s", "stored", "errors", "message"):
        table.add_column(column, overflow="fold")
    for progress in rows.values():
        rep = ""
        if progress.repetition is not None:
            rep = "%d/%s" % (progress.repetition + 1, progress.total or "?")
        # boards, engines and devices.yaml write these cells: shown, never read as rich markup
        table.add_row(*(escape(str(cell)) for cell in (
            progress.device, progress.state, progress.workload, progress.variant, rep,
            "%.1f" % progress.last_ttft_ms if progress.last_ttft_ms is not None else "",
            "%.2f" % progress.last_decode_tps if progress.last_decode_tps is not None else "",
            str(progress.stored), str(progress.errors), progress.message,
        )))
    return table


def _same_settings(previous, chosen, inventory) -> None:
    """A resumed run measures with the settings it started with: refuse a devices file that changed
    them (runs recorded before settings were kept are resumed as before)."""
    recorded = (previous.info or {}).get("device_settings") or {}
    changed = ["%s: %s" % (device.name, "; ".join(diffs)) for device in chosen
               for diffs in [settings_differences(recorded.get(device.name) or {}, device)] if diffs]
    if changed:
        raise ConfigError(
            "run %s was started with other settings than %s now gives (%s); resume it with the devices file "
            "it started with (%s) or start a new run" % (
                previous.run_id, inventory.path, " | ".join(changed),
                (previous.info or {}).get("devices_file", "?")))







@app.command()
def run(
    ctx: typer.Context,
    suite: Optional[str] = typer.Option(None, "--suite", "-s", help="Suite name (suites/NAME.yaml)."),
    devices: str = typer.Option("local", "--devices", "-d",
                                help="all, names, tag:NAME, type:BOARD (comma-separated)."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable results on stdout."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Resume RUN_ID: pull what is missing."),
    tag: List[str] = typer.Option([], "--tag", help="Label the run (e.g. nightly); repeatable."),
    wait: bool = typer.Option(False, "--wait", help="Wait for boards leased by someone else."),
    wait_timeout: Optional[float] = typer.Option(None, "--wait-timeout", help="Seconds to wait for a lease."),
) -> None:
    """Run a suite on devices and store every measurement."""
    from ..farm.controller import run_plans
    from ..farm.deploy import build_runner

    paths: Paths = ctx.obj
    store = open_paths_store(paths)
    # ConfigError, StoreError (exit 2), ModelMissing, EngineMissing (exit 3) reach the app as they are
    inventory = load_devices(paths.devices_file)
    if resume:
        previous = store.get_run(resume)
        suite_obj = find_suite(previous.suite, paths.suites_dir)
        chosen = [inventory.get(name) for name in previous.devices]
        _same_settings(previous, chosen, inventory)
        run_id = previous.run_id
    else:
        if not suite:
            known = ", ".join(sorted(list_suites(paths.suites_dir))) or "(none)"
            raise ConfigError("give --suite NAME; suites in %s: %s" % (paths.suites_dir, known))
        suite_obj = find_suite(suite, paths.suites_dir)
        chosen = inventory.select(devices)
        run_id = new_run_id()
    plans = plan_run(suite_obj, chosen, inventory, paths, notify=lambda m: err.print(m, markup=False),
                     run_id=run_id)
    for plan in plans:
        plan.wait_for_lease, plan.lease_wait_s = wait, wait_timeout
    if not resume:
        store.create_run(RunRecord(
            run_id=run_id, created_at="", suite=suite_obj.name, devices=[p.device.name for p in plans],
            status="running", controller_commit=plans[0].spec.controller.get("git_commit", ""),
            tags=list(tag), info={"suite_file": str(suite_obj.path), "controller_version": __version__,
                                  "devices_file": str(inventory.path),
                                  "device_settings": {p.device.name: run_settings(p.device) for p in plans}},
        ))
    # heartbeat, Ctrl-C -> interrupted (exit 130, with the resume command), any other early end -> failed
    guard = RunGuard(store, run_id)
    guard.start(resuming=bool(resume))
    ctx.call_on_close(guard.close)
    session = None
    if suite_obj.config.accuracy is not None:
        try:
            from ..eval.suite import prepare
        except ImportError as exc:
            raise fail("suite %s measures accuracy with lm-eval (%s); %s"
                       % (suite_obj.name, exc, install_hint("eval")), EXIT_MISSING) from None
        try:
            session = prepare(suite_obj, suite_obj.config.accuracy, plans)
        except (ValueError, ConfigError) as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
    err.print("run [bold]%s[/]: suite %s on %s" % (escape(run_id), escape(suite_obj.name),
                                                   escape(", ".join(p.device.name for p in plans))))

    rows: Dict[str, object] = {}
    lock = threading.Lock()
    live = Live(_progress_table(rows), console=err, refresh_per_second=4, transient=False)

    def on_progress(progress) -> None:
        with lock:
            rows[progress.device] = progress
            live.update(_progress_table(rows))

    with live:
        outcomes = run_plans(plans, store, build_runner(), transport_factory(paths, inventory),
                             on_progress, resume=bool(resume), mirror_dir=paths.results_dir / "pulled")
    accuracy_results: List[dict] = []
    if session is not None:
        from ..eval.suite import score

        accuracy_results = score(session, run_id, paths.results_dir, notify=lambda m: err.print(m, markup=False))
        acc_table = Table(title="accuracy (%s, %s)" % (session.config.task, session.config.metric))
        for column in ("device", "variant", "accuracy", "95% CI", "n"):
            acc_table.add_column(column)
        for item in accuracy_results:
            acc = item.get("accuracy")
            ci = (item.get("ci_low"), item.get("ci_high"))
            acc_table.add_row(escape(str(item.get("device"))), escape(str(item.get("variant"))),
                              "%.3f" % acc if acc is not None else "-",
                              "%.3f-%.3f" % ci if None not in ci else "-", str(item.get("n", "")))
        err.print(acc_table)
    ok = all(o.state == "finished" and o.errors == 0 for o in outcomes)
    store.finish_run(run_id, "finished" if ok else "failed")
    records = store.measurements(run_id)

    table = Table(title="outcome of run %s" % run_id)
    for column in ("device", "state", "stored", "failed measurements", "error"):
        table.add_column(column, overflow="fold")
    for outcome in outcomes:
        table.add_row(escape(outcome.device), escape(outcome.state), str(outcome.stored), str(outcome.errors),
                      escape(outcome.error or ""))
    err.print(table)
    failed_messages = sorted({r["error"] for r in records if r["status"] != "ok" and r.get("error")})
    for message in failed_messages[:10]:
        err.print("  failed: ", end="")
        err.print(message, markup=False, highlight=False)
    summary = summary_rows(records)
    if summary:
        stable = Table(title="medians over measured repetitions (warm-up excluded)")
        for column in ("device", "workload", "variant", "TTFT ms", "decode tok/s", "e2e ms", "n"):
            stable.add_column(column)
        index = {(s["device"], s["workload"], s["variant"], s["metric"]): s for s in summary}
        for key in sorted({(s["device"], s["workload"], s["variant"]) for s in summary}):
            def med(metric: str) -> str:
                item = index.get(key + (metric,))
                return "%.2f" % item["median"] if item and item.get("median") is not None else "-"
            n = index.get(key + ("ttft_ms",), {}).get("n", 0)
            stable.add_row(escape(str(key[0])), escape(str(key[1])), escape(str(key[2])), med("ttft_ms"),
                           med("decode_tps"), med("e2e_ms"), str(n))
        err.print(stable)
    err.print("report: bench report %s" % run_id)
    if json_out:
        payload = {
            "run_id": run_id,
            "suite": suite_obj.name,
            "ok": ok,
            "devices": [o.__dict__ for o in outcomes],
            "summary": summary,
            "accuracy": accuracy_results,
            "measurements": records,
        }
        sys.stdout.write(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    if not ok:
        kinds = {k for o in outcomes for k in o.error_kinds}
        missing_only = kinds and kinds <= {"unavailable", "model_not_found"}
        raise typer.Exit(EXIT_MISSING if missing_only else EXIT_FAILED)
