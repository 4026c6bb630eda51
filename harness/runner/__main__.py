"""Runner entry point: `python runner.pyz run --spec SPEC --run-dir DIR` and `... info`.

Exit codes: 0 all measurements ok; 1 some measurements failed (each one is recorded with its
error); 2 the spec or the run directory is unusable; 3 the runner itself crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import traceback
from typing import Any, Dict, List, Optional

from . import RUNNER_VERSION
from .backends import known_backends
from .execute import EXIT_BAD_SPEC, SpecRunner
from .journal import SPEC, Journal, stdout_echo
from .protocol import PROTOCOL_VERSION, ProtocolError, RunSpec
from .provenance import machine_provenance, runner_hash

EXIT_CRASH = 3

# engine module -> backend that needs it; `info` reports which import here
_ENGINE_MODULES = {
    "torch": "transformers",
    "transformers": "transformers",
    "openvino_genai": "openvino_genai",
    "llama_cpp": "llamacpp",
    "axengine": "axllm",
}


def _module_version(name: str) -> Dict[str, Any]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # any import failure is a finding, not a crash
        return {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    return {"ok": True, "version": str(getattr(module, "__version__", "unknown"))}


def info() -> Dict[str, Any]:
    return {
        "runner_version": RUNNER_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "runner_hash": runner_hash(),
        "machine": machine_provenance(),
        "backends": known_backends(),
        "engines": {name: _module_version(name) for name in _ENGINE_MODULES},
    }


def _run(spec_path: str, run_dir: str, echo_events: bool) -> int:
    try:
        with open(spec_path, encoding="utf-8") as handle:
            spec = RunSpec.from_json(handle.read())
    except (OSError, ProtocolError) as exc:
        sys.stderr.write("runner: cannot use spec %s: %s\n" % (spec_path, exc))
        return EXIT_BAD_SPEC
    journal = Journal(run_dir, echo=stdout_echo() if echo_events else None)

    def on_term(signum: int, _frame: Any) -> None:
        journal.status("failed", error="terminated by signal %d" % signum, exit_code=128 + signum)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    journal.status("running", run_id=spec.run_id, device=spec.device)
    journal.start_heartbeat()
    try:
        code = SpecRunner(spec, run_dir, journal).run()
    except Exception as exc:
        journal.status("failed", error="%s: %s" % (type(exc).__name__, exc),
                       traceback=traceback.format_exc(limit=8), exit_code=EXIT_CRASH)
        journal.close()
        sys.stderr.write(traceback.format_exc())
        return EXIT_CRASH
    journal.status("finished", exit_code=code, **journal.results_digest())
    journal.close()
    return code


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="runner", description="edge-VLM bench runner")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a RunSpec")
    run.add_argument("--spec", help="RunSpec JSON (default: RUN_DIR/spec.json)")
    run.add_argument("--run-dir", required=True)
    run.add_argument("--events-stdout", action="store_true", help="also echo events to stdout")
    sub.add_parser("info", help="print what this machine and runner can do, as JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        sys.stdout.write(json.dumps(info(), sort_keys=True) + "\n")
        return 0
    if args.command == "run":
        spec_path = args.spec or os.path.join(args.run_dir, SPEC)
        return _run(spec_path, args.run_dir, args.events_stdout)
    parser.print_help(sys.stderr)
    return EXIT_BAD_SPEC


if __name__ == "__main__":
    sys.exit(main())
