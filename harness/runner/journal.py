"""The runner's run directory: results.jsonl (fsync per record), events.jsonl, status.json."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, Optional, Set, TextIO

from .protocol import Event, Measurement, ProtocolError, parse_record

RESULTS = "results.jsonl"
EVENTS = "events.jsonl"
STATUS = "status.json"
SPEC = "spec.json"
INPUTS = "inputs"


def write_json_atomic(path: str, data: Dict[str, Any]) -> None:
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_completed_keys(path: str) -> Set[tuple]:
    """Keys of measurements already journalled (a restarted runner does not redo them)."""
    keys: Set[tuple] = set()
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # a torn last line from a crash: ignore it, it will be redone
                try:
                    record = parse_record(line)
                except ProtocolError:
                    continue
                if isinstance(record, Measurement):
                    keys.add(record.key)
    except FileNotFoundError:
        pass
    return keys


class Journal:
    def __init__(self, run_dir: str, echo: Optional[TextIO] = None) -> None:
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        self._results = open(os.path.join(run_dir, RESULTS), "a", encoding="utf-8")
        self._events = open(os.path.join(run_dir, EVENTS), "a", encoding="utf-8")
        self._echo = echo
        self.started_at = time.time()

    def measurement(self, record: Measurement) -> None:
        # One line per record, fsynced: a power cut or SIGKILL loses at most the record in flight.
        self._results.write(record.to_json() + "\n")
        self._results.flush()
        os.fsync(self._results.fileno())

    def event(self, record: Event) -> None:
        line = record.to_json() + "\n"
        self._events.write(line)
        self._events.flush()
        if self._echo is not None:
            try:
                self._echo.write(line)
                self._echo.flush()
            except (OSError, ValueError):
                self._echo = None  # the controller went away; the files still have everything

    def status(self, state: str, **fields: Any) -> None:
        data = {"state": state, "pid": os.getpid(), "started_at": self.started_at, "updated_at": time.time()}
        data.update(fields)
        write_json_atomic(os.path.join(self.run_dir, STATUS), data)

    def close(self) -> None:
        self._results.close()
        self._events.close()


def stdout_echo() -> TextIO:
    return sys.stdout
