"""`bench suites list, bench version`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..config.suites import find_suite, list_suites
from ..config.yaml_lines import ConfigError
from ..plan import Paths
from .app import app, suites_app


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
            table.add_row(escape(name), "-", "-", "-", "-", escape("invalid: %s" % exc))
            continue
        gen = suite.config.generation
        # a suite file's text is shown, never read as rich markup
        table.add_row(*(escape(cell) for cell in (
            name, ", ".join(w.name for w in suite.config.workloads), str(gen.output_tokens),
            str(gen.warmup), str(gen.repetitions), suite.config.description)))
    Console().print(table)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
