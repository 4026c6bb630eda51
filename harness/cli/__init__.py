"""`bench`: the controller's command line, one module per command group.

Exit codes: 0 success; 1 a device or a measurement failed (each failure is stored and shown);
2 bad usage or configuration (unknown suite/device, invalid YAML, unknown run); 3 a model or an
engine is missing (the message says what to build or install); 130 interrupted (Ctrl-C).
Every `harness.errors.BenchError` is mapped to its exit code in one place: `app.BenchApp`.
"""

from __future__ import annotations

from . import devices_cmd, farm_cmd, models_cmd, queue_cmd, regress_cmd, report_cmd, results_cmd, run_cmd, suites_cmd  # noqa: F401  (register)
from .app import app

__all__ = ["app"]
