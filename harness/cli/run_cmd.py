"""`bench run`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text
from rich.markup import escape

from .. import __version__
from ..config.devices import load_devices, run_settings, settings_differences
from ..config.suites import find_suite, list_suites
from ..config.yaml_lines import ConfigError
from ..plan import Paths, new_run_id, plan_run
from ..store import RunRecord
from ..errors import install_hint
from ..farm.run_guard import RunGuard
from ..config.adhoc import adhoc_inventory
from ..config.overrides import apply_overrides, collect_overrides
from ..terminal import TerminalTable, num_col, say, show, text_col
from .app import app
from .run_display import ProgressView, accuracy_table, print_end
from .common import EXIT_FAILED, EXIT_MISSING, err, fail, open_paths_store, summary_rows, transport_factory


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
    repetitions: Optional[int] = typer.Option(None, "--repetitions", "-r", help="Override the suite's repetitions."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Override the suite's warm-up repetitions."),
    output_tokens: Optional[int] = typer.Option(None, "--output-tokens", "-n",
                                                help="Override the suite's fixed output length."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Override the prompt of every workload."),
    model: Optional[Path] = typer.Option(None, "--model", help="Ad-hoc run of this model directory on this machine "
                                         "(backend from its files; no devices.yaml needed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and an estimate; start nothing."),
    until_stable: Optional[float] = typer.Option(
        None, "--until-stable", metavar="WIDTH",
        help="Repeat past --repetitions until the 95 percent CI of the median e2e_ms is within WIDTH of it "
             "(0.05 = 5 percent), or --max-repetitions."),
    max_repetitions: int = typer.Option(30, "--max-repetitions", help="The cap for --until-stable."),
) -> None:
    """Run a suite on devices and store every measurement."""
    from ..farm.controller import run_plans
    from ..farm.deploy import build_runner

    paths: Paths = ctx.obj
    store = open_paths_store(paths)
    # ConfigError, StoreError (exit 2), ModelMissing, EngineMissing (exit 3) reach the app as they are
    overrides = collect_overrides(repetitions, warmup, output_tokens, prompt)
    if until_stable is not None:  # the runner repeats until stable (harness/runner/stability.py)
        overrides["until_stable"] = {"ci_width": until_stable, "max_repetitions": max_repetitions}
    if resume:
        if overrides or model is not None or dry_run:
            raise ConfigError("--resume continues run %s with the settings it started with; drop "
                              "--repetitions/--warmup/--output-tokens/--prompt/--model/--dry-run" % resume)
        previous = store.get_run(resume)
        info = previous.info or {}
        overrides = dict(info.get("overrides") or {})
        inventory = (adhoc_inventory(Path(info["adhoc_model"]), workdir=str(paths.results_dir / "work"))
                     if info.get("adhoc_model") else load_devices(paths.devices_file))
        suite_obj = apply_overrides(find_suite(previous.suite, paths.suites_dir), overrides)
        chosen = [inventory.get(name) for name in previous.devices]
        _same_settings(previous, chosen, inventory)
        run_id = previous.run_id
    else:
        if not suite:
            known = ", ".join(sorted(list_suites(paths.suites_dir))) or "(none)"
            raise ConfigError("give --suite NAME; suites in %s: %s" % (paths.suites_dir, known))
        if model is not None:
            if devices != "local":
                raise ConfigError("--model runs on this machine; drop --devices %s (or name the model in "
                                  "devices.yaml)" % devices)
            inventory = adhoc_inventory(model, workdir=str(paths.results_dir / "work"))
        else:
            inventory = load_devices(paths.devices_file)
        suite_obj = apply_overrides(find_suite(suite, paths.suites_dir), overrides)
        chosen = inventory.select("all" if model is not None else devices)
        run_id = new_run_id()
    plans = plan_run(suite_obj, chosen, inventory, paths, notify=lambda m: err.print(m, markup=False),
                     run_id=run_id, build_models=not dry_run)
    if dry_run:
        _print_dry_run(plans, store, suite_obj.name, overrides, json_out)
        return
    # preflight before the run exists: a missing extra or a bad task leaves no run behind
    session = None
    if suite_obj.config.accuracy is not None:
        try:
            from ..eval.suite import prepare
        except ImportError as exc:
            raise fail("suite %s measures accuracy with lm-eval (%s); %s"
                       % (suite_obj.name, exc, install_hint("eval")), EXIT_MISSING) from None
        try:
            session = prepare(suite_obj, suite_obj.config.accuracy, plans)
        except ConfigError:
            raise  # names its file and line already; the app prints it (--debug: its traceback)
        except ValueError as exc:
            raise ConfigError("suite %s: %s" % (suite_obj.path, exc)) from exc
    for plan in plans:
        plan.wait_for_lease, plan.lease_wait_s = wait, wait_timeout
    if not resume:
        store.create_run(RunRecord(
            run_id=run_id, created_at="", suite=suite_obj.name, devices=[p.device.name for p in plans],
            status="running", controller_commit=plans[0].spec.controller.get("git_commit", ""),
            tags=list(tag), info={"suite_file": str(suite_obj.path), "controller_version": __version__,
                                  "devices_file": str(inventory.path),
                                  "device_settings": {p.device.name: run_settings(p.device) for p in plans},
                                  "overrides": overrides,
                                  "adhoc_model": str(model.resolve()) if model is not None else None},
        ))
    # heartbeat, Ctrl-C -> interrupted (exit 130, with the resume command), any other early end -> failed
    guard = RunGuard(store, run_id)
    guard.start(resuming=bool(resume))
    ctx.call_on_close(guard.close)
    err.print("run [bold]%s[/]: suite %s on %s" % (escape(run_id), escape(suite_obj.name),
                                                   escape(", ".join(p.device.name for p in plans))))

    with ProgressView(err) as view:
        outcomes = run_plans(plans, store, build_runner(), transport_factory(paths, inventory),
                             view.update, resume=bool(resume), mirror_dir=paths.results_dir / "pulled")
    accuracy_results: List[dict] = []
    if session is not None:
        from ..eval.suite import score

        accuracy_results = score(session, run_id, paths.results_dir, notify=lambda m: err.print(m, markup=False),
                                 store=store)
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


def _print_dry_run(plans, store, suite: str, overrides: dict, json_out: bool) -> None:
    from .dry_run import as_json, estimate, total_seconds

    estimates = estimate(plans, store, suite)
    if json_out:
        sys.stdout.write(json.dumps(as_json(suite, estimates, overrides), indent=1, sort_keys=True) + "\n")
        return
    table = TerminalTable(["device", "backend", text_col("variants"), text_col("workloads"), num_col("warm-up"),
                           num_col("reps"), num_col("out tokens"), num_col("estimate s"), text_col("basis")],
                          title="dry run of suite %s: nothing is started" % suite)
    for e in estimates:
        table.add_row(e.device, e.backend, ", ".join(e.variants), ", ".join(e.workloads), str(e.warmup),
                      str(e.repetitions), str(e.output_tokens), "-" if e.seconds is None else "%.0f" % e.seconds,
                      e.basis)
    show(err, table)
    for e in estimates:
        for m in e.models:
            say(err, "  %s / %s: %s" % (e.device, m["variant"], m["path"]))
    total = total_seconds(estimates)
    if overrides:
        err.print(Text("overrides: " + ", ".join("%s=%s" % item for item in sorted(overrides.items()))))
    err.print(Text("estimated duration: %s (devices run in parallel)"
                   % ("unknown" if total is None else "%.0f s" % total)))
