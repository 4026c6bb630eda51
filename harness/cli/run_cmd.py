"""`bench run`."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from rich.markup import escape

from .. import __version__
from ..config.devices import load_devices, run_settings, settings_differences
from ..config.suites import find_suite, list_suites
from ..config.yaml_lines import ConfigError
from ..plan import Paths, new_run_id, plan_run
from ..store import RunRecord
from ..errors import install_hint
from ..farm.run_guard import RunGuard
from ..report.terminal import show
from .app import app
from .run_display import ProgressView, accuracy_table, print_end
from .common import EXIT_CONFIG, EXIT_FAILED, EXIT_MISSING, err, fail, open_paths_store, summary_rows, transport_factory


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

    with ProgressView(err) as view:
        outcomes = run_plans(plans, store, build_runner(), transport_factory(paths, inventory),
                             view.update, resume=bool(resume), mirror_dir=paths.results_dir / "pulled")
    accuracy_results: List[dict] = []
    if session is not None:
        from ..eval.suite import score

        accuracy_results = score(session, run_id, paths.results_dir, notify=lambda m: err.print(m, markup=False))
        show(err, accuracy_table(session.config.task, session.config.metric, accuracy_results))
    ok = all(o.state == "finished" and o.errors == 0 for o in outcomes)
    store.finish_run(run_id, "finished" if ok else "failed")
    records = store.measurements(run_id)

    failed_messages = sorted({r["error"] for r in records if r["status"] != "ok" and r.get("error")})
    summary = summary_rows(records)
    print_end(err, run_id, outcomes, summary, failed_messages)
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
