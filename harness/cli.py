"""`bench`: the controller's command line.

Exit codes: 0 success; 1 a device or a measurement failed (each failure is stored and shown);
2 bad usage or configuration (unknown suite/device, invalid YAML, unknown run); 3 a model or an
engine is missing (the message says what to build or install).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import __version__
from .config.devices import load_devices
from .config.suites import find_suite, list_suites
from .config.yaml_lines import ConfigError
from .plan import EngineMissing, ModelMissing, Paths, new_run_id, plan_run
from .store import RunRecord, StoreError

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_MISSING = 3

app = typer.Typer(name="bench", help="edge-VLM bench: benchmark vision-language models on edge boards.",
                  no_args_is_help=True, add_completion=False)
results_app = typer.Typer(help="Stored results: list, show, export.", no_args_is_help=True)
models_app = typer.Typer(help="Models that need no download.", no_args_is_help=True)
devices_app = typer.Typer(help="The device inventory (devices.yaml).", no_args_is_help=True)
suites_app = typer.Typer(help="Benchmark suites (suites/*.yaml).", no_args_is_help=True)
farm_app = typer.Typer(help="An emulated farm of local sshd boards.", no_args_is_help=True)
app.add_typer(results_app, name="results")
app.add_typer(models_app, name="models")
app.add_typer(devices_app, name="devices")
app.add_typer(suites_app, name="suites")
app.add_typer(farm_app, name="farm")

err = Console(stderr=True)


def _fail(message: str, code: int) -> "typer.Exit":
    err.print("[bold red]error:[/] ", end="")
    err.print(message, markup=False, highlight=False)
    return typer.Exit(code)


@app.callback()
def main(
    ctx: typer.Context,
    devices_file: Path = typer.Option(Path("devices.yaml"), "--devices-file", envvar="BENCH_DEVICES_FILE",
                                      help="Device inventory."),
    suites_dir: Path = typer.Option(Path("suites"), "--suites-dir", envvar="BENCH_SUITES_DIR"),
    results_dir: Path = typer.Option(Path("results"), "--results-dir", envvar="BENCH_RESULTS_DIR",
                                     help="Where the results database and built models live."),
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir", envvar="BENCH_REPORTS_DIR"),
    store: Optional[str] = typer.Option(None, "--store", envvar="BENCH_STORE",
                                        help="Results store: a file, sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
                                             "(default RESULTS_DIR/bench.sqlite)."),
) -> None:
    ctx.obj = Paths(devices_file=devices_file, suites_dir=suites_dir, results_dir=results_dir,
                    reports_dir=reports_dir, store_url=store)


def _store(paths: Paths):
    from .store import open_store

    try:
        return open_store(paths.store_url or paths.store_path)
    except (StoreError, ImportError) as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


# -- bench run ---------------------------------------------------------------------------------
def _progress_table(rows: Dict[str, object]) -> Table:
    table = Table(title="edge-VLM bench", expand=False)
    for column in ("device", "state", "workload", "variant", "rep", "TTFT ms", "tok/s", "stored", "errors", "message"):
        table.add_column(column, overflow="fold")
    for progress in rows.values():
        rep = ""
        if progress.repetition is not None:
            rep = "%d/%s" % (progress.repetition + 1, progress.total or "?")
        table.add_row(
            progress.device, progress.state, progress.workload, progress.variant, rep,
            "%.1f" % progress.last_ttft_ms if progress.last_ttft_ms is not None else "",
            "%.2f" % progress.last_decode_tps if progress.last_decode_tps is not None else "",
            str(progress.stored), str(progress.errors), progress.message,
        )
    return table


def _summary_rows(records: List[dict]) -> List[dict]:
    from .analysis.stats import measurements_frame, summary_frame

    if not records:
        return []
    frame = summary_frame(measurements_frame(records))
    return json.loads(frame.to_json(orient="records"))


def _known_hosts(paths: Paths, inventory) -> Path:
    return inventory.known_hosts or paths.results_dir / "known_hosts"


def _make_transport_factory(paths: Paths, inventory):
    known_hosts = _known_hosts(paths, inventory)

    def make(device):
        from .farm.transport import LocalTransport

        if device.transport == "local":
            return LocalTransport()
        from .farm.ssh import SSHTransport

        return SSHTransport.from_device(device, known_hosts_path=known_hosts)

    return make


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
    from .farm.controller import run_plans
    from .farm.deploy import build_runner

    paths: Paths = ctx.obj
    store = _store(paths)
    try:
        inventory = load_devices(paths.devices_file)
        if resume:
            previous = store.get_run(resume)
            suite_obj = find_suite(previous.suite, paths.suites_dir)
            chosen = [inventory.get(name) for name in previous.devices]
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
    except (ConfigError, StoreError) as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    except (ModelMissing, EngineMissing) as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    if not resume:
        store.create_run(RunRecord(
            run_id=run_id, created_at="", suite=suite_obj.name, devices=[p.device.name for p in plans],
            status="running", controller_commit=plans[0].spec.controller.get("git_commit", ""),
            tags=list(tag), info={"suite_file": str(suite_obj.path), "controller_version": __version__},
        ))
    session = None
    if suite_obj.config.accuracy is not None:
        try:
            from .eval.suite import prepare
        except ImportError as exc:
            raise _fail("suite %s measures accuracy with lm-eval (%s); install it with: "
                        "pip install 'edge-vlm-bench[eval]'" % (suite_obj.name, exc), EXIT_MISSING) from None
        try:
            session = prepare(suite_obj, suite_obj.config.accuracy, plans)
        except (ValueError, ConfigError) as exc:
            raise _fail(str(exc), EXIT_CONFIG) from None
    err.print("run [bold]%s[/]: suite %s on %s" % (run_id, suite_obj.name, ", ".join(p.device.name for p in plans)))

    rows: Dict[str, object] = {}
    lock = threading.Lock()
    live = Live(_progress_table(rows), console=err, refresh_per_second=4, transient=False)

    def on_progress(progress) -> None:
        with lock:
            rows[progress.device] = progress
            live.update(_progress_table(rows))

    with live:
        outcomes = run_plans(plans, store, build_runner(), _make_transport_factory(paths, inventory),
                             on_progress, resume=bool(resume), mirror_dir=paths.results_dir / "pulled")
    accuracy_results: List[dict] = []
    if session is not None:
        from .eval.suite import score

        accuracy_results = score(session, run_id, paths.results_dir, notify=lambda m: err.print(m, markup=False))
        acc_table = Table(title="accuracy (%s, %s)" % (session.config.task, session.config.metric))
        for column in ("device", "variant", "accuracy", "95% CI", "n"):
            acc_table.add_column(column)
        for item in accuracy_results:
            acc = item.get("accuracy")
            ci = (item.get("ci_low"), item.get("ci_high"))
            acc_table.add_row(str(item.get("device")), str(item.get("variant")),
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
        table.add_row(outcome.device, outcome.state, str(outcome.stored), str(outcome.errors),
                      outcome.error or "")
    err.print(table)
    failed_messages = sorted({r["error"] for r in records if r["status"] != "ok" and r.get("error")})
    for message in failed_messages[:10]:
        err.print("  failed: ", end="")
        err.print(message, markup=False, highlight=False)
    summary = _summary_rows(records)
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
            stable.add_row(key[0], key[1], key[2], med("ttft_ms"), med("decode_tps"), med("e2e_ms"), str(n))
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


# -- bench report ------------------------------------------------------------------------------
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
) -> None:
    """A run's report (index.html, summary.md, results.csv), the history dashboard, or a comparison."""
    paths: Paths = ctx.obj
    store = _store(paths)
    if history and compare:
        raise _fail("choose one of --history and --compare", EXIT_CONFIG)
    if history:
        from .analysis.history import StepDetectorMissing
        from .report.history import render_history

        try:
            page = render_history(store, out or paths.reports_dir / "history", metrics=metric or None,
                                  suite=suite, tag=tag, last_runs=last)
        except StepDetectorMissing as exc:
            raise _fail(str(exc), EXIT_MISSING) from None
        except StoreError as exc:
            raise _fail(str(exc), EXIT_CONFIG) from None
        err.print("wrote %s" % page)
        return
    ids = run_ids or ["latest"]
    try:
        records = [store.get_run(run_id) for run_id in ids]
    except StoreError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    if compare:
        from .report.compare import CompareError, render_compare

        inventory = _inventory(paths)
        target = out or paths.reports_dir / ("compare-" + "-".join(r.run_id for r in records)[:120])
        try:
            page = render_compare(store, [r.run_id for r in records], inventory, target,
                                  accuracy=_variant_accuracy(paths, [r.run_id for r in records]))
        except CompareError as exc:
            raise _fail(str(exc), EXIT_CONFIG) from None
        err.print("wrote %s" % page)
        return
    from .report import write_report

    for record in records:
        target = out if (out and len(records) == 1) else paths.reports_dir / record.run_id
        measurements = store.measurements(record.run_id)
        written = write_report(record.as_dict(), measurements, target)
        err.print("wrote %s, %s, %s" % (written.index_html, written.summary_md, written.results_csv))
        try:
            from .eval.report import write_accuracy_report
        except ImportError:
            continue  # no accuracy tooling installed: runs without accuracy need none
        accuracy = write_accuracy_report(record.run_id, paths.results_dir, measurements, target)
        if accuracy is not None:
            err.print("wrote the accuracy table and plot in %s" % target)


def _variant_accuracy(paths: Paths, run_ids: List[str]) -> Dict[Tuple[str, str, str], Tuple[float, str, int]]:
    """Accuracy per (run, device, variant) from results/accuracy.sqlite; {} when there is none."""
    from .eval.store import FILE_NAME as ACCURACY_FILE, AccuracyStore

    if not (paths.results_dir / ACCURACY_FILE).exists():
        return {}
    accuracy = AccuracyStore.in_results(paths.results_dir)
    try:
        return accuracy.variant_accuracy(run_ids)
    finally:
        accuracy.close()


# -- bench regress -----------------------------------------------------------------------------
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
) -> None:
    """Compare the latest runs with a baseline; exit 1 on a confirmed regression."""
    from .analysis.history import StepDetectorMissing
    from .analysis.regress import RegressError, regress as run_regress, suite_thresholds
    from .analysis.regress_output import emit
    from .eval.store import FILE_NAME as ACCURACY_FILE, AccuracyStore

    paths: Paths = ctx.obj
    store = _store(paths)
    if baseline.startswith("tag:"):
        wanted = baseline[4:]
        known = sorted({t for r in store.list_runs() for t in r.tags})
        if wanted not in known:
            raise _fail("no run is tagged %r; tags in the store: %s" % (wanted, ", ".join(known) or "(none)"),
                        EXIT_CONFIG)
    # per-sample answers of accuracy suites (bench run --suite vqa-quant) live beside the store
    accuracy_store = None
    accuracy_samples = None
    if (paths.results_dir / ACCURACY_FILE).exists():
        accuracy_store = AccuracyStore.in_results(paths.results_dir)
        accuracy_samples = accuracy_store.scores
    try:
        result = run_regress(
            store, baseline=baseline, metrics=metric or None, threshold=threshold, alpha=alpha,
            suite_thresholds=suite_thresholds(paths.suites_dir), run=run, suite=suite,
            devices=[d.strip() for d in devices.split(",")] if devices else None, tag=tag,
            min_persist=min_persist, window=window, accuracy_samples=accuracy_samples,
        )
    except (RegressError, StoreError) as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    except StepDetectorMissing as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    finally:
        if accuracy_store is not None:
            accuracy_store.close()
    code = emit(result, err, json_stdout=sys.stdout if json_out else None, markdown=markdown, junit=junit,
                show_unchanged=show_all)
    raise typer.Exit(code)


# -- bench results -----------------------------------------------------------------------------
@results_app.command("list")
def results_list(ctx: typer.Context, limit: int = typer.Option(20, "--limit")) -> None:
    """Recent runs, newest first."""
    store = _store(ctx.obj)
    table = Table()
    for column in ("run", "created", "suite", "devices", "status", "measurements", "tags"):
        table.add_column(column, overflow="fold")
    for run_record in store.list_runs(limit=limit):
        table.add_row(run_record.run_id, run_record.created_at, run_record.suite, ", ".join(run_record.devices),
                      run_record.status, str(store.count(run_record.run_id)), ", ".join(run_record.tags))
    Console().print(table)


@results_app.command("show")
def results_show(ctx: typer.Context, run_id: str = typer.Argument("latest")) -> None:
    """A run's summary as JSON."""
    store = _store(ctx.obj)
    try:
        record = store.get_run(run_id)
    except StoreError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    payload = {"run": record.as_dict(), "summary": _summary_rows(store.measurements(record.run_id))}
    sys.stdout.write(json.dumps(payload, indent=1, sort_keys=True) + "\n")


@results_app.command("export")
def results_export(
    ctx: typer.Context,
    format: str = typer.Option("csv", "--format", "-f", help="csv, parquet or json."),
    run_id: Optional[str] = typer.Option(None, "--run", help="One run (default: every run)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File (default: stdout for csv/json)."),
) -> None:
    """Export measurements: one flat row per measurement (json keeps the whole records)."""
    from .analysis.stats import measurements_frame

    if format not in ("csv", "parquet", "json"):
        raise _fail("unknown format %r; use csv, parquet or json" % format, EXIT_CONFIG)
    store = _store(ctx.obj)
    try:
        rid = store.get_run(run_id).run_id if run_id else None
    except StoreError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
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
            raise _fail("parquet is binary: give --out FILE.parquet", EXIT_CONFIG)
        frame.to_parquet(out, index=False)
    elif out:
        frame.to_csv(out, index=False)
    else:
        sys.stdout.write(frame.to_csv(index=False))


# -- bench models ------------------------------------------------------------------------------
@models_app.command("make")
def models_make(
    arch: str = typer.Option("qwen2.5-vl", "--arch", help="qwen2.5-vl or qwen2-vl."),
    preset: str = typer.Option("small", "--preset", help="tiny, small or 3b."),
    out: Path = typer.Option(..., "--out", help="Directory to write the model into."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build a real architecture with random weights and an offline tokenizer (no download)."""
    if arch not in ("qwen2.5-vl", "qwen2-vl"):
        raise _fail("unknown arch %r; use qwen2.5-vl or qwen2-vl" % arch, EXIT_CONFIG)
    if preset not in ("tiny", "small", "3b"):
        raise _fail("unknown preset %r; use tiny, small or 3b" % preset, EXIT_CONFIG)
    try:
        from .models import make_model
    except ImportError as exc:
        raise _fail("bench models make needs torch and transformers (%s); install them with: "
                    "pip install 'edge-vlm-bench[local]'" % exc, EXIT_MISSING) from None
    made = make_model(arch, preset, out, seed=seed)
    err.print("built %s (%s preset, %.1f M parameters, random weights) in %.1f s at %s"
              % (made.arch, made.preset, made.n_parameters / 1e6, made.seconds, made.path))


@models_app.command("quantize")
def models_quantize(
    source: Path = typer.Option(..., "--model", help="A transformers model directory (torchao methods) or an "
                                                      "OpenVINO IR directory (nncf methods)."),
    method: List[str] = typer.Option(["int8-dynamic", "int4-weight"], "--method",
                                     help="int8-dynamic, int8-weight or int4-weight (torchao, transformers "
                                          "dir); nncf-int8 or nncf-int4 (NNCF, OpenVINO IR dir); repeatable."),
    out: Path = typer.Option(..., "--out", help="Directory; each variant goes to OUT/METHOD."),
) -> None:
    """Make quantized variants of a model with real tools (torchao, NNCF), for accuracy-vs-speed suites."""
    from .models.quantize import METHOD_INPUTS, METHODS, NNCF_METHODS, check_method_input, quantize_variants

    unknown = [m for m in method if m not in METHODS]
    if unknown:
        raise _fail("unknown method(s) %s; methods: %s" % (
            ", ".join(unknown), "; ".join("%s (%s)" % (m, METHOD_INPUTS[m]) for m in METHODS)), EXIT_CONFIG)
    for name in method:
        try:
            check_method_input(source, name)
        except FileNotFoundError as exc:
            raise _fail(str(exc), EXIT_MISSING) from None
        except ValueError as exc:
            raise _fail(str(exc), EXIT_CONFIG) from None
    try:
        results = quantize_variants(source, method, out)
    except ImportError as exc:
        extra = "openvino" if any(m in NNCF_METHODS for m in method) else "local,eval"
        raise _fail("bench models quantize: %s; install it with: pip install 'edge-vlm-bench[%s]'" % (exc, extra),
                    EXIT_MISSING) from None
    for result in results:
        what = "IR files compressed" if result.method in NNCF_METHODS else "modules quantized"
        err.print("%s: %s (%d %s, %.1f MB of weights from %.1f MB, %.1f s)"
                  % (result.method, result.path, len(result.quantized_modules), what, result.weights_bytes / 1e6,
                     result.source_bytes / 1e6, result.seconds))


# -- bench devices / suites --------------------------------------------------------------------
@devices_app.command("list")
def devices_list(ctx: typer.Context) -> None:
    """The devices in devices.yaml."""
    paths: Paths = ctx.obj
    try:
        inventory = load_devices(paths.devices_file)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    table = Table()
    for column in ("name", "type", "transport", "host", "backend", "variants", "tags"):
        table.add_column(column, overflow="fold")
    for d in inventory.devices:
        host = "" if d.transport == "local" else ("%s:%d" % (d.host, d.port) if d.host else "(not set)")
        table.add_row(d.name, d.type, d.transport, host, d.backend, ", ".join(m.variant for m in d.models),
                      ", ".join(d.tags))
    Console().print(table)


def _inventory(paths: Paths):
    try:
        return load_devices(paths.devices_file)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


def _one_device(paths: Paths, name: str):
    inventory = _inventory(paths)
    try:
        return inventory, inventory.get(name)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None


@devices_app.command("check")
def devices_check(
    ctx: typer.Context,
    devices: str = typer.Option("all", "--devices", "-d", help="all, names, tag:NAME, type:BOARD."),
    json_out: bool = typer.Option(False, "--json", help="Print the reports as JSON on stdout."),
) -> None:
    """Reachability, host key, python, arch, disk, memory, engines, telemetry, power mode."""
    from concurrent.futures import ThreadPoolExecutor

    from .farm.health import check_device
    from .farm.transport import TransportError
    from .plan import device_python

    paths: Paths = ctx.obj
    inventory = _inventory(paths)
    try:
        chosen = inventory.select(devices)
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from None
    make = _make_transport_factory(paths, inventory)

    def check(device):
        if device.transport == "ssh" and not device.host:
            return {"device": device.name, "reachable": False, "ok": False,
                    "errors": ["no host in %s" % inventory.where(device.name)]}
        try:
            transport = make(device)
        except TransportError as exc:
            return {"device": device.name, "reachable": False, "ok": False, "errors": [str(exc)]}
        try:
            report = check_device(transport, device_python(device), device.workdir,
                                  timeout_s=device.timeouts.command_s)
            data = report.to_dict()
            data["device"] = device.name
            data["ok"] = report.ok
            return data
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        reports = list(pool.map(check, chosen))
    if json_out:
        sys.stdout.write(json.dumps(reports, indent=1, sort_keys=True, default=str) + "\n")
    else:
        table = Table(title="device check")
        for column in ("device", "ok", "python", "arch", "disk free MB", "mem avail MB", "engines", "power mode", "errors"):
            table.add_column(column, overflow="fold")
        for r in reports:
            engines = ", ".join(sorted(name for name, m in (r.get("modules") or {}).items()
                                       if isinstance(m, dict) and m.get("ok")))
            table.add_row(r["device"], "yes" if r.get("ok") else "NO", str(r.get("python_version") or ""),
                          str(r.get("arch") or ""), str(r.get("disk_free_mb") or ""),
                          str(r.get("mem_available_mb") or ""), engines,
                          str(r.get("power_mode") or r.get("governor") or ""), "; ".join(r.get("errors") or []))
        Console().print(table)
    if not all(r.get("ok") for r in reports):
        raise typer.Exit(EXIT_FAILED)


@devices_app.command("trust")
def devices_trust(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Device name."),
    replace: bool = typer.Option(False, "--replace", help="Replace a different key on record (reinstalled board)."),
) -> None:
    """Show the board's host key fingerprint and record it in the project's known_hosts."""
    from .farm.known_hosts import HostKeyError, trust

    paths: Paths = ctx.obj
    inventory, device = _one_device(paths, name)
    if device.transport != "ssh" or not device.host:
        raise _fail("device %r has no SSH host to trust (%s)" % (name, inventory.where(name)), EXIT_CONFIG)
    path = _known_hosts(paths, inventory)
    try:
        fingerprint, added = trust(name, device.host, device.port, path=path,
                                   timeout=device.timeouts.connect_s, replace=replace)
    except (HostKeyError, OSError) as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    err.print("%s (%s:%d) presents %s; %s %s" % (name, device.host, device.port, fingerprint,
                                                 "recorded in" if added else "already in", path))


@devices_app.command("lock")
def devices_lock(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    ttl: float = typer.Option(3600.0, "--ttl", help="Seconds until the lock expires by itself."),
    wait: bool = typer.Option(False, "--wait"),
) -> None:
    """Take a board's lease by hand (maintenance); it expires after --ttl."""
    from .farm.lease import LeaseError, LeaseOwner, acquire
    from .plan import device_workdir

    paths: Paths = ctx.obj
    inventory, device = _one_device(paths, name)
    transport = _make_transport_factory(paths, inventory)(device)
    try:
        lease = acquire(transport, transport.expand(device_workdir(device)), LeaseOwner.current("manual-lock"),
                        ttl_s=ttl, wait=wait)
    except LeaseError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    finally:
        transport.close()
    err.print("locked %s until %s (epoch s, board clock)" % (name, int(lease.info.expires_at)))


@devices_app.command("unlock")
def devices_unlock(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    force: bool = typer.Option(False, "--force", help="Remove a lease held by someone else."),
) -> None:
    """Release a board's lease: your own manual lock, or anyone's with --force."""
    from .farm.lease import LeaseOwner, force_unlock, read_lease
    from .plan import device_workdir

    paths: Paths = ctx.obj
    inventory, device = _one_device(paths, name)
    transport = _make_transport_factory(paths, inventory)(device)
    try:
        workdir = transport.expand(device_workdir(device))
        holder, _ = read_lease(transport, workdir)
        if holder is None:
            err.print("%s is not locked" % name)
            return
        me = LeaseOwner.current("manual-lock")
        own = holder.run_id == "manual-lock" and holder.user == me.user and holder.host == me.host
        if not own and not force:
            raise _fail("%s is held by %s; use --force to remove it" % (name, holder.holder()), EXIT_FAILED)
        force_unlock(transport, workdir)
    finally:
        transport.close()
    err.print("unlocked %s (was held by %s)" % (name, holder.holder()))


@farm_app.command("up")
def farm_up_command(
    boards: int = typer.Option(5, "--boards", "-n", help="How many emulated boards (>= 1)."),
    state_dir: Path = typer.Option(Path("results/farm"), "--state-dir"),
    base_ip: str = typer.Option("127.0.0.2", "--base-ip", help="First loopback address."),
) -> None:
    """Start local OpenSSH sshd "boards" on 127.0.0.x and write devices.emulated.yaml for them."""
    from .farm.sshd_farm import FarmError, farm_up

    if boards < 1:
        raise _fail("--boards must be >= 1", EXIT_CONFIG)
    if not base_ip.startswith("127."):
        raise _fail("the emulated farm lives on loopback only (127.x.x.x), not %s" % base_ip, EXIT_CONFIG)
    try:
        info = farm_up(boards, state_dir, base_ip=base_ip, python=sys.executable)
    except FarmError as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    for board in info.boards:
        err.print("  %s (%s) on %s:%d" % (board.name, board.type, board.host, board.port))
    err.print("run it: bench --devices-file %s run --suite video-8f --devices all" % info.devices_yaml)


@farm_app.command("down")
def farm_down_command(state_dir: Path = typer.Option(Path("results/farm"), "--state-dir")) -> None:
    """Stop the emulated farm's sshd processes."""
    from .farm.sshd_farm import farm_down

    stopped = farm_down(state_dir)
    err.print("stopped %d board(s): %s" % (len(stopped), ", ".join(stopped) or "none running"))


@suites_app.command("list")
def suites_list(ctx: typer.Context) -> None:
    """The suites in suites/."""
    paths: Paths = ctx.obj
    table = Table()
    for column in ("name", "workloads", "output tokens", "warm-up", "repetitions", "description"):
        table.add_column(column, overflow="fold")
    for name, path in list_suites(paths.suites_dir).items():
        try:
            suite = find_suite(name, paths.suites_dir)
        except ConfigError as exc:
            table.add_row(name, "-", "-", "-", "-", "invalid: %s" % exc)
            continue
        gen = suite.config.generation
        table.add_row(name, ", ".join(w.name for w in suite.config.workloads), str(gen.output_tokens),
                      str(gen.warmup), str(gen.repetitions), suite.config.description)
    Console().print(table)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
