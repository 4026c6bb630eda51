"""`bench suites list, bench version`."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

from .. import __version__
from ..config.suites import find_suite, list_suites
from ..config.yaml_lines import ConfigError
from ..plan import Paths
from ..terminal import TerminalTable, num_col, show, text_col
from .app import app, suites_app


@suites_app.command("list")
def suites_list(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the suites as JSON on stdout."),
) -> None:
    """The suites in suites/."""
    paths: Paths = ctx.obj
    entries = []
    for name, path in list_suites(paths.suites_dir).items():
        try:
            suite = find_suite(name, paths.suites_dir)
        except ConfigError as exc:
            entries.append({"name": name, "path": str(path), "valid": False, "error": str(exc)})
            continue
        entries.append({"name": name, "path": str(path), "valid": True,
                        "config": suite.config.model_dump(mode="json")})
    if json_out:
        sys.stdout.write(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        return
    table = TerminalTable(["name", text_col("workloads"), num_col("output tokens"), num_col("warm-up"),
                           num_col("repetitions"), text_col("description")])
    for entry in entries:
        if not entry["valid"]:
            table.add_row(entry["name"], "-", "-", "-", "-", "invalid: %s" % entry["error"])
            continue
        config = entry["config"]
        gen = config["generation"]
        # cells are text, never rich markup: a suite file is not ours
        table.add_row(entry["name"], ", ".join(w["name"] for w in config["workloads"]), str(gen["output_tokens"]),
                      str(gen["warmup"]), str(gen["repetitions"]), config.get("description", ""))
    show(Console(), table)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
