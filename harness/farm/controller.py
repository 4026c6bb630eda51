"""Run a plan on devices in parallel: deploy, start the runner detached, follow it, pull results.

Per device: deploy the runner (by hash) -> upload inputs and spec -> start the runner detached ->
poll its events and results by offset, storing each complete record as it lands -> finish when
the runner's status says so. A dropped connection is a pause: reconnect with backoff and carry on
from the stored offset. One device failing never stops the others.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from ..config.devices import DeviceConfig
from ..errors import FailedError
from ..runner.journal import EVENTS, INPUTS, RESULTS, SPEC, STATUS
from ..runner.protocol import Answer, Event, Measurement, ProtocolError, RunSpec, parse_record
from ..store.sqlite import DeviceState, Store
from .deploy import RunnerArtifact, ensure_runner, remote_sha256
from .lease import Lease, LeaseError, LeaseHeld, LeaseOwner, acquire, take_over
from .transport import Transport, TransportError, kill_process_group, process_state

TransportFactory = Callable[[DeviceConfig], Transport]
# devices followed at once by one controller: each holds a thread (and an SSH connection) for its
# run, so thousands of boards wait their turn instead of starting thousands of threads
MAX_PARALLEL_DEVICES = 64
HEARTBEAT_STALE_S = 6.0
# One pull reads at most this much of a board's journal (the rest comes with the next read); a
# single line longer than this is no runner record. status.json is a few hundred bytes.
MAX_PULL_BYTES = 8 << 20
MAX_STATUS_BYTES = 1 << 20


@dataclass
class DevicePlan:
    device: DeviceConfig
    spec: RunSpec
    inputs: List[Tuple[str, bytes]]  # (file name under the run's inputs/, content)
    python: str
    workdir: str  # on the device; a leading ~ is the device user's home
    wait_for_lease: bool = False
    lease_wait_s: Optional[float] = None


@dataclass
class DeviceProgress:
    device: str
    state: str = "waiting"  # waiting, deploying, running, reconnecting, finished, failed
    workload: str = ""
    variant: str = ""
    repetition: Optional[int] = None
    total: Optional[int] = None
    last_ttft_ms: Optional[float] = None
    last_decode_tps: Optional[float] = None
    answered: str = ""  # accuracy requests answered, "done/total", while a variant answers them
    stored: int = 0
    errors: int = 0
    message: str = ""


@dataclass
class DeviceOutcome:
    device: str
    state: str  # finished or failed
    stored: int = 0
    errors: int = 0
    error: Optional[str] = None
    error_kinds: List[str] = field(default_factory=list)
    # worth another attempt (a dropped link, a runner that died); False for refusals that will
    # not change by themselves (host key changed, authentication refused): the queue fails those
    retryable: bool = True
    uploaded_bytes: int = 0
    integrity: str = ""  # how the pulled journal was checked against the board's


class DeviceFailed(FailedError, RuntimeError):
    pass


class Rejected:
    """Journal lines refused: all are counted, the first KEEP are kept with their place and reason
    (a journal of a million garbage lines must not become a million messages)."""

    KEEP = 20

    def __init__(self) -> None:
        self.count = 0
        self.notes: List[str] = []

    def append(self, note: str) -> None:
        self.count += 1
        if len(self.notes) < self.KEEP:
            self.notes.append(note)

    def __len__(self) -> int:
        return self.count


def pull_chunk(transport: Transport, path: str, offset: int, rejected: Optional[List[str]] = None,
               accept: Optional[Callable[[object], Optional[str]]] = None,
               max_bytes: int = MAX_PULL_BYTES) -> Tuple[bytes, List[object]]:
    """Complete JSON lines after ``offset`` (raw bytes and parsed records), at most ``max_bytes``;
    a partly written last line waits for the next pull.

    A line that is not a valid record (not UTF-8, not JSON, wrong field types, NaN) or that
    ``accept`` refuses (returns a reason) is never returned: with a ``rejected`` list it is noted
    there ("path byte N: why") and the other lines are kept; without one it raises DeviceFailed."""
    try:
        data = transport.read_bytes(path, offset, max_bytes)
    except FileNotFoundError:
        return b"", []
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) >= max_bytes:
            raise DeviceFailed("%s: a line of more than %d bytes at byte %d is no runner record"
                               % (path, max_bytes, offset))
        return b"", []
    chunk = data[: end + 1]
    records = []
    position = offset
    for raw in chunk.split(b"\n")[:-1]:
        where, position = position, position + len(raw) + 1
        if not raw or raw.isspace():
            continue
        try:
            record = parse_record(raw.decode("utf-8"))
            reason = accept(record) if accept is not None else None
        except UnicodeDecodeError as exc:
            reason = "not UTF-8 (byte 0x%02x)" % raw[exc.start]
        except ProtocolError as exc:
            reason = str(exc)
        if reason is None:
            records.append(record)
        elif rejected is None:
            raise DeviceFailed("unreadable record from the runner: %s byte %d: %s" % (path, where, reason))
        else:
            rejected.append("%s byte %d: %s" % (path, where, reason))
    return chunk, records


def pull_records(transport: Transport, path: str, offset: int) -> Tuple[List[object], int]:
    chunk, records = pull_chunk(transport, path, offset)
    return records, offset + len(chunk)


def confined(base: str, *parts: str) -> str:
    """``base`` joined with ``parts``, refused (DeviceFailed) unless it stays inside ``base``: every
    path the controller writes or pulls on a board lies under the device's workdir."""
    path = posixpath.normpath(posixpath.join(base, *parts))
    root = posixpath.normpath(base)
    if path != root and not path.startswith(root.rstrip("/") + "/"):
        raise DeviceFailed("refusing path %s: it is outside %s" % (_brief(path), root))
    return path


def _brief(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DeviceJob:
    def __init__(
        self,
        plan: DevicePlan,
        store: Store,
        artifact: RunnerArtifact,
        make_transport: TransportFactory,
        on_progress: Callable[[DeviceProgress], None],
        poll_s: float = 0.5,
        reconnect_s: float = 120.0,
        mirror_dir: Optional[Path] = None,
    ) -> None:
        self.plan = plan
        self.store = store
        self.artifact = artifact
        self.make_transport = make_transport
        self.on_progress = on_progress
        self.poll_s = poll_s
        self.reconnect_s = reconnect_s
        self.connect_window_s = min(reconnect_s, 2 * plan.device.timeouts.connect_s)
        self.progress = DeviceProgress(device=plan.device.name)
        self.transport: Optional[Transport] = None
        self.workdir = plan.workdir  # made absolute on the device once connected
        self.run_dir = ""
        self.state = DeviceState(run_id=plan.spec.run_id, device=plan.device.name, state="planned")
        self.lease: Optional[Lease] = None
        self.lease_renewed = 0.0
        # every byte pulled from the board's results.jsonl, kept on the controller so the
        # journal's sha256 can be checked against the board's at the end
        self.mirror = (mirror_dir / plan.spec.run_id / ("%s.results.jsonl" % plan.device.name)
                       if mirror_dir is not None else None)
        self.integrity = ""
        self.final_status: Dict[str, object] = {}
        self.events_offset = 0
        self.rejected = Rejected()  # journal lines refused (corrupt, wrong types, another plan's)
        self.uploaded = 0
        self.error_kinds: List[str] = []

    # -- helpers ----------------------------------------------------------------------------
    def _report(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.progress, key, value)
        self.on_progress(self.progress)

    def _connect(self) -> Transport:
        if self.transport is None:
            self.transport = self.make_transport(self.plan.device)
        return self.transport

    def _drop(self) -> None:
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:  # closing a dead connection may fail in many ways; it is gone anyway
                pass
            self.transport = None

    def _with_reconnect(self, action: Callable[[Transport], object], window_s: Optional[float] = None) -> object:
        """Run ``action``; on a dropped connection reconnect with backoff for up to window_s
        (default reconnect_s). Refusals (host key, authentication) are never retried."""
        for attempt in Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, TransportError) and exc.retryable),
            wait=wait_exponential(multiplier=0.5, max=10),
            stop=stop_after_delay(self.reconnect_s if window_s is None else window_s),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self._drop()
                    self._report(state="reconnecting", message="connection lost; reconnecting")
                return action(self._connect())
        raise AssertionError("unreachable")

    def _timeout_s(self, what: str) -> float:
        return self.plan.device.timeouts.command_s

    # -- steps ------------------------------------------------------------------------------
    def _status(self, transport: Transport) -> Optional[Dict[str, object]]:
        try:
            status = json.loads(transport.read_bytes(posixpath.join(self.run_dir, STATUS), 0, MAX_STATUS_BYTES))
        except FileNotFoundError:
            return None
        except (ValueError, RecursionError):
            return None  # caught between write and rename on a non-atomic filesystem: next poll
        return status if isinstance(status, dict) else None

    def _alive(self, transport: Transport, pid: int) -> bool:
        return process_state(transport, pid, timeout_s=self._timeout_s("ps")) is not None

    def _kill(self, transport: Transport, pid: int) -> None:
        # the runner leads its own process group (setsid): this takes its children too
        kill_process_group(transport, pid, "KILL", timeout_s=self._timeout_s("kill"))

    def _locate(self, transport: Transport) -> None:
        self.workdir = transport.expand(self.plan.workdir)
        self.run_dir = confined(posixpath.join(self.workdir, "runs"), self.plan.spec.run_id, self.plan.device.name)
        self.state.remote_run_dir = self.run_dir

    def _take_lease(self, transport: Transport, resume: bool) -> None:
        plan = self.plan
        owner = LeaseOwner.current(plan.spec.run_id)
        ttl = plan.device.timeouts.lease_s
        self._report(state="leasing", message="taking the board's lease")
        try:
            self.lease = acquire(transport, self.workdir, owner, ttl_s=ttl, wait=plan.wait_for_lease,
                                 wait_timeout_s=plan.lease_wait_s, poll_s=5.0,
                                 timeout_s=self._timeout_s("lease"))
        except LeaseHeld as exc:
            if not (resume and exc.holder.run_id == plan.spec.run_id):
                raise DeviceFailed(str(exc) + self._holder_state(exc.holder.run_id)) from None
            # our own run's controller died (or was interrupted) holding it: resuming that run
            # takes it back, by compare-and-swap from exactly the lease it left
            self.lease = take_over(transport, self.workdir, exc.holder, owner, ttl_s=ttl,
                                   timeout_s=self._timeout_s("lease"))
            self._report(message="took over the lease of run %s (pid %d)" % (exc.holder.run_id, exc.holder.pid))
        self.lease_renewed = time.monotonic()

    def _holder_state(self, run_id: str) -> str:
        """What this store knows about the run holding a board: "" when it is not ours."""
        try:
            status = self.store.stored_status(run_id) and self.store.get_run(run_id).status
        except Exception:  # another team's run, or a store hiccup: the lease message stands alone
            return ""
        return " (this store has run %s as %s)" % (run_id, status) if status else ""

    def _renew_lease(self) -> None:
        ttl = self.plan.device.timeouts.lease_s
        if self.lease is not None and time.monotonic() - self.lease_renewed > ttl / 3:
            self._with_reconnect(lambda t: self._on_lease(t).renew(ttl))
            self.lease_renewed = time.monotonic()

    def _on_lease(self, transport: Transport) -> Lease:
        """The lease, speaking over the current connection (it may have been re-made)."""
        assert self.lease is not None
        self.lease.transport = transport
        return self.lease

    def _release_lease(self) -> None:
        if self.lease is None:
            return
        try:
            self._with_reconnect(lambda t: self._on_lease(t).release())
        except (LeaseError, TransportError):
            pass  # it expires by itself; never let releasing hide the run's outcome
        self.lease = None

    def _start(self, transport: Transport) -> int:
        plan = self.plan
        self._report(state="deploying", message="checking runner %s" % self.artifact.sha256[:12])
        deployed = ensure_runner(transport, plan.python, plan.workdir, self.artifact, self._timeout_s("deploy"))
        self.uploaded += deployed.uploaded_bytes
        for name, content in plan.inputs:
            transport.put_bytes(content, confined(posixpath.join(self.run_dir, INPUTS), name))
        transport.put_bytes(plan.spec.to_json().encode("utf-8"), posixpath.join(self.run_dir, SPEC))
        # a status.json left by an earlier runner of this run (interrupted, failed) must not be
        # read as this runner's: until the new runner writes its own, the run is starting
        transport.put_bytes(json.dumps({"state": "starting"}).encode("utf-8"), posixpath.join(self.run_dir, STATUS))
        pid = transport.spawn_detached(
            [plan.python, deployed.remote_path, "run", "--run-dir", self.run_dir],
            cwd=self.run_dir,
            stdout_path=posixpath.join(self.run_dir, "runner.stdout"),
            stderr_path=posixpath.join(self.run_dir, "runner.stderr"),
        )
        self.state.state = "running"
        self.state.info = {"pid": pid, "started": time.time(), "runner_sha256": self.artifact.sha256}
        self.store.set_device_state(self.state)
        self._report(state="running", message="runner pid %d" % pid)
        return pid

    def _pull(self, transport: Transport) -> None:
        # events are progress for people: a bad one is skipped, never a reason to stop
        chunk, events = pull_chunk(transport, posixpath.join(self.run_dir, EVENTS), self.events_offset,
                                   rejected=Rejected())  # type: ignore[arg-type]
        self.events_offset += len(chunk)
        for event in events:
            if isinstance(event, Event):
                self._on_event(event)
        while self._pull_results(transport):
            pass

    def _reject_foreign(self, record: object) -> Optional[str]:
        """Why a pulled measurement or answer does not belong to this plan (None: it does)."""
        if not isinstance(record, (Measurement, Answer)):
            return None
        spec = self.plan.spec
        expected = (("run_id", spec.run_id), ("device", spec.device), ("suite", spec.suite))
        for name, value in expected:
            if getattr(record, name) != value:
                return "%s %s is not this plan's %s" % (name, _brief(getattr(record, name)), _brief(value))
        if record.variant not in {m.variant for m in spec.models}:
            return "variant %s is not in this plan" % _brief(record.variant)
        if isinstance(record, Answer):
            return None  # its request ids are checked against the requests when scored
        if record.workload not in {w.name for w in spec.workloads}:
            return "workload %s is not in this plan" % _brief(record.workload)
        return None

    def _pull_results(self, transport: Transport) -> bool:
        """Store the next complete records of results.jsonl; True when there may be more to read."""
        start = self.state.results_offset
        before = len(self.rejected)
        chunk, records = pull_chunk(transport, posixpath.join(self.run_dir, RESULTS), start,
                                    rejected=self.rejected, accept=self._reject_foreign)  # type: ignore[arg-type]
        if len(self.rejected) > before:
            self._report(message="%d journal line(s) rejected, not stored; the first: %s"
                         % (len(self.rejected), self.rejected.notes[0][:160]))
        measurements = [r for r in records if isinstance(r, Measurement)]
        if chunk:
            self._mirror_write(start, chunk)
            added = self.store.add_measurements(measurements, results_offset=start + len(chunk),
                                                device_state=self.state)
            errors = [m for m in measurements if m.status != "ok"]
            for m in errors:
                if m.error_kind and m.error_kind not in self.error_kinds:
                    self.error_kinds.append(m.error_kind)
            self._report(stored=self.progress.stored + added, errors=self.progress.errors + len(errors))
        return len(chunk) > MAX_PULL_BYTES // 2

    def _mirror_write(self, offset: int, chunk: bytes) -> None:
        if self.mirror is None:
            return
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        with open(self.mirror, "r+b" if self.mirror.exists() else "wb") as handle:
            handle.seek(offset)
            handle.write(chunk)
            handle.truncate()

    def _mirror_resync(self, transport: Transport) -> None:
        """After a controller restart: the mirror must hold exactly what the store holds."""
        if self.mirror is None:
            return
        size = self.mirror.stat().st_size if self.mirror.exists() else -1
        if size != self.state.results_offset:
            data = b""
            if self.state.results_offset:
                data = transport.read_bytes(posixpath.join(self.run_dir, RESULTS), 0, self.state.results_offset)
            self._mirror_write(0, data)

    def _verify(self, transport: Transport) -> None:
        """Compare the sha256 of everything pulled with the board's own hash of its journal; on a
        mismatch pull the whole journal again (the store ignores records it already has)."""
        if self.mirror is None:
            return
        path = posixpath.join(self.run_dir, RESULTS)
        # the runner hashes its journal when it finishes; ask the board only when it could not
        remote = self.final_status.get("results_sha256") if self.final_status else None
        if not remote:
            remote = remote_sha256(transport, self.plan.python, path, self._timeout_s("hash"))
        if remote == "missing":
            return  # the runner wrote nothing: every failure is in its status and stderr
        local = hashlib.sha256(self.mirror.read_bytes() if self.mirror.exists() else b"").hexdigest()
        if remote == local:
            self.integrity = "sha256 %s verified" % remote[:16]
            return
        chunks, added = [], 0
        while True:  # the whole journal, one capped read at a time
            offset = sum(len(c) for c in chunks)
            chunk, records = pull_chunk(transport, path, offset, rejected=Rejected(),  # type: ignore[arg-type]
                                        accept=self._reject_foreign)
            if not chunk:
                break
            chunks.append(chunk)
            measurements = [r for r in records if isinstance(r, Measurement)]
            added += self.store.add_measurements(measurements, results_offset=offset + len(chunk),
                                                 device_state=self.state)
        chunk = b"".join(chunks)
        self._mirror_write(0, chunk)
        if hashlib.sha256(chunk).hexdigest() != remote:
            raise DeviceFailed("results journal %s does not match the board's sha256 %s even after a full "
                               "re-pull; is something else writing it?" % (path, remote[:16]))
        self.integrity = "sha256 mismatch: journal re-pulled, %d missing record(s) stored" % added
        self._report(stored=self.progress.stored + added)

    def _on_event(self, event: Event) -> None:
        changes: Dict[str, object] = {}
        if event.workload:
            changes["workload"] = event.workload
        if event.variant:
            changes["variant"] = event.variant
        if event.repetition is not None:
            changes["repetition"] = event.repetition
        if event.event == "accuracy":  # answering questions: its own count, not the repetitions'
            if "done" in event.data or "todo" in event.data:
                changes["answered"] = "%s/%s" % (event.data.get("done", 0), event.data.get("todo", event.data.get("total")))
        elif "total" in event.data:
            changes["total"] = event.data["total"]
            changes["answered"] = ""
        if event.event == "repetition_done":
            changes["last_ttft_ms"] = event.data.get("ttft_ms")
            changes["last_decode_tps"] = event.data.get("decode_tps")
        if event.event in ("load", "error") or event.message:
            changes["message"] = event.message[:200]
        if changes:
            self._report(**changes)

    def _follow(self, pid: int) -> None:
        deadline = time.monotonic() + self.plan.device.timeouts.run_s
        last_liveness = 0.0
        heartbeat: object = None
        heartbeat_seen = time.monotonic()
        while True:
            self._with_reconnect(self._pull)
            status = self._with_reconnect(self._status)
            if isinstance(status, dict) and status.get("state") in ("finished", "failed"):
                self.final_status = status
                self._with_reconnect(self._pull)
                if status.get("state") == "failed":
                    raise DeviceFailed("runner failed: %s" % status.get("error", "unknown error"))
                return
            self._renew_lease()
            now = time.monotonic()
            if now > deadline:
                self._with_reconnect(lambda t: self._kill(t, pid))
                self._with_reconnect(self._pull)
                raise DeviceFailed(
                    "runner still running after the %.0f s run timeout; its process group was killed"
                    % self.plan.device.timeouts.run_s
                )
            if isinstance(status, dict) and status.get("heartbeat") != heartbeat:
                heartbeat, heartbeat_seen = status.get("heartbeat"), now
            # the runner bumps its heartbeat every 2 s; only a stalled one costs a remote command
            if now - heartbeat_seen > HEARTBEAT_STALE_S and now - last_liveness > 2.0:
                last_liveness = now
                if not self._with_reconnect(lambda t: self._alive(t, pid)):
                    self._with_reconnect(self._pull)
                    status = self._with_reconnect(self._status)
                    if isinstance(status, dict) and status.get("state") == "finished":
                        return
                    raise DeviceFailed(
                        "runner (pid %d) died without finishing; see %s/runner.stderr on the device; "
                        "`bench run --resume %s` restarts it where it stopped"
                        % (pid, self.run_dir, self.plan.spec.run_id)
                    )
            time.sleep(self.poll_s)

    def run(self, resume: bool = False) -> DeviceOutcome:
        try:
            # before the runner starts, a board that cannot be reached fails fast; once it runs,
            # a dropped connection is waited out for reconnect_s
            self._with_reconnect(self._locate, window_s=self.connect_window_s)
            self._with_reconnect(lambda t: self._take_lease(t, resume), window_s=self.connect_window_s)
            pid = None
            if resume:
                pid = self._resume_pid()
            if pid is None:
                pid = self._with_reconnect(self._start)
            self._follow(pid)
            self._with_reconnect(self._verify)
            if self.rejected:
                raise DeviceFailed("%d line(s) of the board's journal rejected, not stored; the first: %s"
                                   % (len(self.rejected), self.rejected.notes[0]))
            self.state.state = "finished"
            self.store.set_device_state(self.state)
            self._report(state="finished", message="")
            return self._outcome("finished", None)
        except (DeviceFailed, TransportError, LeaseError, OSError) as exc:
            message = str(exc)
            self.state.state = "failed"
            self.state.error = message
            self.store.set_device_state(self.state)
            self._report(state="failed", message=message[:200])
            outcome = self._outcome("failed", message)
            outcome.retryable = not (isinstance(exc, TransportError) and not exc.retryable)
            return outcome
        finally:
            self._release_lease()
            self._drop()

    def _resume_pid(self) -> Optional[int]:
        """A runner from an earlier controller: follow it if alive or finished, else restart it."""
        previous = {s.device: s for s in self.store.device_states(self.plan.spec.run_id)}
        old = previous.get(self.plan.device.name)
        if old is None:
            return None
        self.state = old
        self.state.error = None
        if old.remote_run_dir:  # from the store: used only inside this workdir's runs/
            self.run_dir = confined(posixpath.join(self.workdir, "runs"), old.remote_run_dir)
        self._with_reconnect(self._mirror_resync)
        pid = int(old.info.get("pid", 0)) if old.info else 0
        if old.state == "finished":
            return pid or -1
        status = self._with_reconnect(self._status)
        if isinstance(status, dict) and status.get("state") == "finished":
            return pid or -1
        if pid and self._with_reconnect(lambda t: self._alive(t, pid)):
            self._report(state="running", message="resumed: runner pid %d still running" % pid)
            return pid
        return None  # restart it: the runner skips repetitions already in its journal

    def _outcome(self, state: str, error: Optional[str]) -> DeviceOutcome:
        return DeviceOutcome(
            device=self.plan.device.name,
            state=state,
            stored=self.progress.stored,
            errors=self.progress.errors,
            error=error,
            error_kinds=list(self.error_kinds),
            uploaded_bytes=self.uploaded,
            integrity=self.integrity,
        )


def run_plans(
    plans: List[DevicePlan],
    store: Store,
    artifact: RunnerArtifact,
    make_transport: TransportFactory,
    on_progress: Callable[[DeviceProgress], None],
    resume: bool = False,
    poll_s: float = 0.5,
    mirror_dir: Optional[Path] = None,
    max_parallel: int = MAX_PARALLEL_DEVICES,
) -> List[DeviceOutcome]:
    """Devices run in parallel on a bounded pool of ``max_parallel`` threads (a device past the
    pool's size waits, shown as "waiting", for a free one); returns an outcome per device, in plan
    order. The threads are daemons, so an interrupted controller is not held by them."""
    outcomes: Dict[str, DeviceOutcome] = {}
    lock = threading.Lock()
    pending: "queue.Queue[DevicePlan]" = queue.Queue()
    for plan in plans:
        pending.put(plan)

    def work(plan: DevicePlan) -> None:
        job = DeviceJob(plan, store, artifact, make_transport, on_progress, poll_s=poll_s,
                        mirror_dir=mirror_dir)
        try:
            outcome = job.run(resume=resume)
        except Exception as exc:  # a bug in one device's thread must not hide the others' results
            outcome = DeviceOutcome(plan.device.name, "failed", error="%s: %s" % (type(exc).__name__, exc))
        with lock:
            outcomes[plan.device.name] = outcome

    def drain() -> None:
        while True:
            try:
                plan = pending.get_nowait()
            except queue.Empty:
                return
            work(plan)

    threads = [threading.Thread(target=drain, name="device-pool-%d" % i, daemon=True)
               for i in range(max(1, min(len(plans), max_parallel)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [outcomes[p.device.name] for p in plans]
