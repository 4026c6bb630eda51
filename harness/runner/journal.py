"""The runner's run directory: results.jsonl (fsync per record), events.jsonl, status.json."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
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
        with open(path, "rb") as handle:  # bytes: one undecodable line must not hide the others
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a torn last line from a crash: ignore it, it will be redone
                if raw.isspace():
                    continue
                try:
                    record = parse_record(raw.decode("utf-8"))
                except (ProtocolError, UnicodeDecodeError):
                    continue  # a corrupt line: its repetition is redone
                if isinstance(record, Measurement):
                    keys.add(record.key)
    except FileNotFoundError:
        pass
    return keys


def drop_torn_tail(path: str) -> int:
    """Cut a last line without its newline (a record torn by a crash; it is redone), so the next
    record starts a line of its own instead of gluing onto the torn one. Returns bytes cut."""
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            end = size
            while end > 0:
                start = max(0, end - 65536)
                handle.seek(start)
                block = handle.read(end - start)
                newline = block.rfind(b"\n")
                if newline >= 0:
                    end = start + newline + 1
                    break
                end = start
            if end < size:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
            return size - end
    except FileNotFoundError:
        return 0


class Journal:
    def __init__(self, run_dir: str, echo: Optional[TextIO] = None) -> None:
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        drop_torn_tail(os.path.join(run_dir, RESULTS))
        drop_torn_tail(os.path.join(run_dir, EVENTS))
        self._results = open(os.path.join(run_dir, RESULTS), "a", encoding="utf-8")
        self._events = open(os.path.join(run_dir, EVENTS), "a", encoding="utf-8")
        self._echo = echo
        self.started_at = time.time()
        self._status: Dict[str, Any] = {}
        self._status_lock = threading.Lock()
        self._beats = 0
        self._stop_beat = threading.Event()
        self._beat_thread: Optional[threading.Thread] = None

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
        with self._status_lock:
            data = {"state": state, "pid": os.getpid(), "started_at": self.started_at,
                    "updated_at": time.time(), "heartbeat": self._beats}
            data.update(fields)
            self._status = data
            write_json_atomic(os.path.join(self.run_dir, STATUS), data)

    def results_digest(self) -> Dict[str, Any]:
        """sha256 and size of results.jsonl as written: the controller checks what it pulled
        against this without running a command on the board."""
        self._results.flush()
        digest = hashlib.sha256()
        size = 0
        with open(os.path.join(self.run_dir, RESULTS), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        return {"results_sha256": digest.hexdigest(), "results_bytes": size}

    def start_heartbeat(self, interval_s: float = 2.0) -> None:
        """Bump status.json's heartbeat counter every interval_s: the controller reads the file it
        already polls, and only asks the board's process table when the counter stops moving."""

        def beat() -> None:
            while not self._stop_beat.wait(interval_s):
                with self._status_lock:
                    if self._status.get("state") != "running":
                        continue
                    self._beats += 1
                    data = dict(self._status, heartbeat=self._beats, updated_at=time.time())
                    self._status = data
                    write_json_atomic(os.path.join(self.run_dir, STATUS), data)

        self._beat_thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        self._beat_thread.start()

    def close(self) -> None:
        self._stop_beat.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=5.0)
        self._results.close()
        self._events.close()


def stdout_echo() -> TextIO:
    return sys.stdout
