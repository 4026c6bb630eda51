"""The `bench` typer app, its global options, and the one place errors become exit codes."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import typer

from .. import __version__
from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, BenchError
from ..plan import Paths
from .common import err


class BenchApp(typer.Typer):
    """A Typer whose every `BenchError` ends as one line on stderr and the error's exit code.

    With `--debug` anywhere before the command, the traceback is shown as well.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = kwargs.get("args") or (args[0] if args else None) or sys.argv[1:]
        try:
            return super().__call__(*args, **kwargs)
        except BenchError as exc:
            self._exit(argv, str(exc), exc.exit_code, type(exc).__name__)
        except OSError as exc:  # a file the user named cannot be read or written: their fix, one line
            where = " %s" % exc.filename if exc.filename else ""
            self._exit(argv, "%s%s" % (exc.strerror or exc, where and ":" + where), EXIT_FAILED, type(exc).__name__)
        except KeyboardInterrupt:  # outside `bench run`, which handles Ctrl-C itself
            err.print("interrupted")
            sys.exit(EXIT_INTERRUPTED)

    @staticmethod
    def _exit(argv: Any, message: str, code: int, kind: str) -> None:
        if "--debug" in argv:
            traceback.print_exc()
        if "--json" in argv:  # a script asked for JSON: it gets a JSON error object too
            sys.stdout.write(json.dumps({"ok": False, "error": {"message": message, "exit_code": code,
                                                                "kind": kind}}) + "\n")
        err.print("[bold red]error:[/] ", end="")
        err.print(message, markup=False, highlight=False, soft_wrap=not err.is_terminal)
        sys.exit(code)


app = BenchApp(name="bench", help="edge-VLM bench: benchmark vision-language models on edge boards.",
               no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
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


def _print_version(value: bool) -> None:
    if value:
        typer.echo("bench (edge-VLM bench) %s" % __version__)
        raise typer.Exit(0)


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
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    ctx.obj = Paths(devices_file=devices_file, suites_dir=suites_dir, results_dir=results_dir,
                    reports_dir=reports_dir, store_url=store)
