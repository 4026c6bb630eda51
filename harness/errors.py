"""The one exception root of the controller: every error a user can cause carries its exit code.

The CLI maps `BenchError` to a one-line message and its `exit_code` in one place
(`harness.cli.app.BenchApp`); `--debug` shows the traceback instead. The runner ships to boards
stdlib-only and keeps its own errors; nothing here is imported by it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1     # a device or a measurement failed (stored, listed, shown)
EXIT_CONFIG = 2     # bad usage or configuration
EXIT_MISSING = 3    # a model directory or an engine is missing
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class BenchError(Exception):
    """An error the user can act on: one line of message and the exit code it maps to."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str = "", *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(BenchError):
    """Bad usage or configuration (exit 2)."""

    exit_code = EXIT_CONFIG


class MissingError(BenchError):
    """A model, an engine or a tool is missing (exit 3); the message says what to build or install."""

    exit_code = EXIT_MISSING


class FailedError(BenchError):
    """Something ran and failed (exit 1)."""

    exit_code = EXIT_FAILED


def install_hint(extras: str) -> str:
    """A command that installs an optional extra from a checkout (the package is not on an index)."""
    return ("install it from the checkout with: bash scripts/setup-venv.sh local,%s "
            "(or in your own venv, from the checkout: pip install -e '.[%s]')" % (extras, extras)) \
        if extras != "local" else ("install it from the checkout with: bash scripts/setup-venv.sh local "
                                   "(or in your own venv, from the checkout: pip install -e '.[local]')")
