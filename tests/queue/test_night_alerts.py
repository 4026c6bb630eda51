"""The nightly's check and its alert (issue 14): on a real PostgreSQL (tests/store/pg_server.py),
against a real HTTP server on 127.0.0.1 and real alert commands.

A night is set up the cheap way: a synthetic history (tests/regress/history_factory.py) written
into the PostgreSQL store with a planted step on the last two nights, one queued board job, and the
night's row made through the schedule's own functions; then :func:`check_night` runs in this
process as the worker's ``bench.night_check`` task would. No farm and no worker is started.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from harness.errors import UsageError
from harness.plan import Paths
from harness.queue import schedule as nightly
from harness.queue.tasks import NightNotOver, WorkerRuntime

from ..conftest import REPO
from ..regress.history_factory import BOARDS, Plant, build_history

PERIOD = "2026-01-10T02:00:00Z"
HOOK_SECRET = "T0-B0-not-for-the-verdict"
PLANTED_REL = 0.30  # peak_host_mb (only that metric) +30% on the last two nights: a confirmed regression

_databases = iter(range(10**6))


# -- a webhook on loopback -----------------------------------------------------------------------
@dataclass
class Hook:
    """An HTTP server on 127.0.0.1 (ephemeral port) that records every request it gets."""

    server: ThreadingHTTPServer
    status: int = 200
    requests: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/hooks/bench/%s" % (self.server.server_address[1], HOOK_SECRET)


@pytest.fixture
def hook() -> Iterator[Hook]:
    recorder: Dict[str, Hook] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook = recorder["hook"]
            hook.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                  "body": body})
            self.send_response(hook.status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if hook.status < 300 else b"hook is broken")

        def log_message(self, *args: Any) -> None:
            pass  # quiet in the test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder["hook"] = Hook(server=server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder["hook"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago): connection refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:%d/hooks/bench" % port


# -- an alert command ------------------------------------------------------------------------------
ALERT_SCRIPT = """\
import json, os, sys
out, code = sys.argv[1], int(sys.argv[2])
verdict_file = os.environ["BENCH_VERDICT_FILE"]
with open(out, "w") as handle:
    json.dump({"argv": sys.argv[1:], "stdin": sys.stdin.read(), "verdict_file": verdict_file,
               "verdict_file_text": open(verdict_file).read(), "text": os.environ["BENCH_ALERT_TEXT"],
               "schedule": os.environ["BENCH_SCHEDULE"], "period": os.environ["BENCH_PERIOD"]}, handle)
if code:
    sys.stderr.write("mail: cannot send to lab@example.org\\n")
sys.exit(code)
"""


def alert_command(tmp_path: Path, exit_code: int) -> tuple:
    script = tmp_path / "alert.py"
    script.write_text(ALERT_SCRIPT)
    out = tmp_path / "alert-called.json"
    return [sys.executable, str(script), str(out), str(exit_code)], out


# -- a night ---------------------------------------------------------------------------------------
@dataclass
class Night:
    url: str
    runtime: WorkerRuntime
    run_ids: List[str]
    job_ids: List[int]
    said: List[str]

    def check(self) -> Dict[str, Any]:
        return nightly.check_night(self.runtime, "nightly", PERIOD)

    def stored(self) -> Dict[str, Any]:
        [row] = [n for n in nightly.nights(self.url) if n["period"] == PERIOD]
        return row


def make_night(pg_server: Any, root: Path, alert: Optional[Dict[str, Any]], regressed: bool = True,
               job_done: bool = True) -> Night:
    """A PostgreSQL store with 10 nights of history (a planted regression on the last two when
    ``regressed``) and the night PERIOD of schedule 'nightly' checking the newest run."""
    from harness.queue.db import ensure_schema
    from harness.queue.jobs import cancel, plan_submission, submit
    from harness.store import open_store

    url = pg_server.create_database("bench_night_%d" % next(_databases))
    store = open_store(url)
    ensure_schema(url)
    plants = [Plant("ax650n", "peak_host_mb", PLANTED_REL, start=8)] if regressed else []
    run_ids = build_history(store, nights=10, reps=5, seed=3, plants=plants, boards=BOARDS[:1],
                            workloads=("video-8f",))
    # one real board job, as the nightly task would have queued it; cancelled = over
    job_ids = submit(url, plan_submission(["quick"], ["ax650n"], "lab-night", ["nightly"]))
    if job_done:
        assert cancel(url, job_ids[0]) == "cancelled"
    entry: Dict[str, Any] = {"name": "nightly", "cron": "0 2 * * *", "lab": "lab-a", "suites": ["quick"],
                             "devices": "ax650n", "regress": {
                                 "baseline": "last:7", "junit": str(root / "reports" / "{schedule}-{period}.junit.xml"),
                                 "markdown": str(root / "reports" / "{schedule}-{period}.md")}}
    if alert is not None:
        entry["alert"] = alert
    schedule_file = root / "schedule.yaml"
    schedule_file.write_text(yaml.safe_dump({"schedules": [entry]}))
    said: List[str] = []
    runtime = WorkerRuntime(
        name="w-test", lab="lab-a",
        paths=Paths(devices_file=REPO / "devices.yaml", suites_dir=REPO / "suites", results_dir=root / "results",
                    reports_dir=root / "reports", store_url=url),
        store=store, queue_url=url, make_transport_factory=lambda *_: None, boards=["ax650n"],
        schedule=nightly.load_schedule(schedule_file), echo=said.append)
    assert nightly._claim_night(url, "nightly", PERIOD)
    nightly._record_night(url, "nightly", PERIOD, job_ids, [run_ids[-1]])
    return Night(url=url, runtime=runtime, run_ids=run_ids, job_ids=job_ids, said=said)


def assert_one_regression(verdict: Dict[str, Any], night: Night) -> None:
    assert verdict["regressions"] == 1 and verdict["checked_runs"] == 1 and verdict["problems"] == []
    [regressed] = verdict["regressed"]
    assert_the_planted_regression(regressed, night)


def assert_the_planted_regression(regressed: Dict[str, Any], night: Night) -> None:
    assert (regressed["device"], regressed["workload"], regressed["metric"], regressed["run_id"]) == (
        "ax650n", "video-8f", "peak_host_mb", night.run_ids[-1])
    assert regressed["rel_change"] == pytest.approx(PLANTED_REL, abs=0.04)
    assert regressed["baseline_median"] == pytest.approx(900.0, rel=0.03)
    assert regressed["p_value"] < 0.01


# -- the tests -------------------------------------------------------------------------------------
@pytest.mark.queue
def test_a_confirmed_regression_posts_one_json_alert_naming_what_regressed(pg_server, hook: Hook,
                                                                        tmp_path: Path) -> None:
    night = make_night(pg_server, tmp_path, {"webhook": hook.url})
    returned = night.check()
    assert len(hook.requests) == 1
    request = hook.requests[0]
    assert request["path"] == "/hooks/bench/%s" % HOOK_SECRET
    assert request["headers"]["Content-Type"] == "application/json"
    payload = json.loads(request["body"])
    assert (payload["schedule"], payload["period"], payload["lab"]) == ("nightly", PERIOD, "lab-a")
    assert payload["n_regressions"] == 1 and payload["devices"] == ["ax650n"] and payload["metrics"] == ["peak_host_mb"]
    assert payload["runs"] == [night.run_ids[-1]]
    junit = tmp_path / "reports" / ("nightly-%s.junit.xml" % PERIOD.replace(":", ""))
    markdown = junit.with_name("nightly-%s.md" % PERIOD.replace(":", ""))
    assert payload["junit"] == [str(junit)] and payload["markdown"] == [str(markdown)]
    assert "<testsuite" in junit.read_text() and "peak\\_host\\_mb" in markdown.read_text()
    # the line a person reads in the chat: what, where, how much, and where the details are
    text = payload["text"]
    assert "\n" not in text
    assert text.startswith("bench nightly %s (lab lab-a): 1 confirmed regression(s): ax650n video-8f peak_host_mb +"
                           % PERIOD)
    assert "(900 -> 11" in text or "(899 -> 11" in text or "(901 -> 11" in text
    assert "JUnit %s" % junit in text and "markdown %s" % markdown in text
    [regressed] = payload["regressions"]
    assert_the_planted_regression(regressed, night)
    # the verdict is stored with the alert's outcome, and the hook's secret path is not in it
    stored = night.stored()["verdict"]
    assert stored == returned
    assert_one_regression(stored, night)
    assert stored["alert"] == [{"via": "webhook", "target": "http://127.0.0.1:%d/..." % hook.server.server_address[1],
                                "ok": True, "detail": "answered 200 OK"}]
    assert HOOK_SECRET not in json.dumps(stored)
    assert nightly.night_alert_text(night.stored()).endswith("sent: answered 200 OK")


@pytest.mark.queue
def test_a_clean_night_sends_no_alert(pg_server, hook: Hook, tmp_path: Path) -> None:
    command, called = alert_command(tmp_path, 0)
    night = make_night(pg_server, tmp_path, {"webhook": hook.url, "command": command}, regressed=False)
    verdict = night.check()
    assert verdict["regressions"] == 0 and verdict["checked_runs"] == 1 and verdict["regressed"] == []
    assert hook.requests == [] and not called.exists()
    stored = night.stored()
    assert "alert" not in stored["verdict"]
    assert nightly.night_verdict_text(stored) == "clean"
    assert nightly.night_alert_text(stored) == "-"


@pytest.mark.queue
@pytest.mark.parametrize("failure", ["answers 500", "closed port"])
def test_a_failing_webhook_keeps_the_verdict_and_stores_the_failure(pg_server, hook: Hook, tmp_path: Path,
                                                                   failure: str) -> None:
    if failure == "answers 500":
        hook.status = 500
        url, expected = hook.url, "answered 500 Internal Server Error"
    else:
        url, expected = closed_port_url(), "unreachable: [Errno 111] Connection refused"
    night = make_night(pg_server, tmp_path, {"webhook": url})
    returned = night.check()  # no exception: the check did its job, the alert did not
    assert len(hook.requests) == (1 if failure == "answers 500" else 0)
    stored = night.stored()
    assert stored["verdict"] == returned
    assert_one_regression(stored["verdict"], night)
    [outcome] = stored["verdict"]["alert"]
    assert (outcome["via"], outcome["ok"], outcome["detail"]) == ("webhook", False, expected)
    assert nightly.night_alert_text(stored).endswith("FAILED: " + expected)
    assert nightly.night_verdict_text(stored).startswith("1 regression(s): ax650n video-8f peak_host_mb +")
    assert any("alert by webhook" in line and "FAILED: " + expected in line for line in night.said)


@pytest.mark.queue
def test_the_alert_command_gets_the_verdict_and_its_exit_code_is_recorded(pg_server, tmp_path: Path) -> None:
    command, called = alert_command(tmp_path, 0)
    night = make_night(pg_server, tmp_path, {"command": command})
    night.check()
    seen = json.loads(called.read_text())
    payload = json.loads(seen["stdin"])
    assert seen["verdict_file_text"] == seen["stdin"]  # the same JSON on stdin and in $BENCH_VERDICT_FILE
    assert payload["text"] == seen["text"] and payload["n_regressions"] == 1
    assert (seen["schedule"], seen["period"]) == ("nightly", PERIOD)
    assert not Path(seen["verdict_file"]).exists()  # removed once the command is done
    assert night.stored()["verdict"]["alert"] == [{"via": "command", "target": sys.executable, "ok": True,
                                                   "detail": "exited 0"}]


@pytest.mark.queue
def test_an_alert_command_that_fails_is_recorded_with_what_it_said(pg_server, tmp_path: Path) -> None:
    command, called = alert_command(tmp_path, 3)
    night = make_night(pg_server, tmp_path, {"command": command})
    night.check()
    assert called.exists()  # it ran
    stored = night.stored()
    assert_one_regression(stored["verdict"], night)
    assert stored["verdict"]["alert"] == [{"via": "command", "target": sys.executable, "ok": False,
                                           "detail": "exited 3: mail: cannot send to lab@example.org"}]
    assert "FAILED: exited 3: mail: cannot send" in nightly.night_alert_text(stored)


@pytest.mark.queue
def test_an_alert_command_that_cannot_start_and_a_working_webhook_are_both_recorded(
        pg_server, hook: Hook, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-alert-tool")
    night = make_night(pg_server, tmp_path, {"command": [missing], "webhook": hook.url})
    night.check()
    assert len(hook.requests) == 1  # the failed command did not stop the webhook
    command, webhook = night.stored()["verdict"]["alert"]
    assert (command["via"], command["ok"], command["target"]) == ("command", False, missing)
    assert command["detail"].startswith("could not start: [Errno 2] No such file or directory")
    assert (webhook["via"], webhook["ok"]) == ("webhook", True)


@pytest.mark.queue
def test_a_night_whose_job_is_queued_is_not_checked_and_says_so(pg_server, hook: Hook, tmp_path: Path) -> None:
    night = make_night(pg_server, tmp_path, {"webhook": hook.url}, job_done=False)
    with pytest.raises(NightNotOver, match="1 of 1 job"):
        night.check()
    stored = night.stored()
    assert stored["verdict"] is None and stored["open_jobs"] == 1
    assert nightly.night_verdict_text(stored) == "not over: 1 of 1 job(s) queued or running"
    assert hook.requests == []
    # a night claimed but not yet given its jobs, or whose check has not run
    assert nightly._claim_night(night.url, "nightly", "2026-01-11T02:00:00Z")
    [newer] = [n for n in nightly.nights(night.url) if n["period"] == "2026-01-11T02:00:00Z"]
    assert nightly.night_verdict_text(newer) == "pending: the regression check has not run yet"


@pytest.mark.queue
def test_a_postgresql_store_without_nights_has_no_nights_to_show(pg_server) -> None:
    from harness.store import open_store

    url = pg_server.create_database("bench_night_%d" % next(_databases))
    open_store(url).close()  # the results schema only: no worker ever ran here
    assert nightly.stored_nights(url) is None


@pytest.mark.parametrize("webhook, message", [
    ("file:///etc/passwd", "webhook must be an http:// or https:// URL, got 'file:///...'"),
    ("https://chat.example.org:port/hooks/x", "the webhook's port is not a number"),
])
def test_a_webhook_that_is_not_http_is_refused_when_the_schedule_loads(tmp_path: Path, webhook: str,
                                                                      message: str) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump({"schedules": [{"name": "nightly", "cron": "0 2 * * *", "lab": "lab-a",
                                                   "suites": ["quick"], "alert": {"webhook": webhook}}]}))
    with pytest.raises(UsageError) as caught:
        nightly.load_schedule(path)
    assert str(caught.value) == "%s: schedules.0.alert.webhook: Value error, %s" % (path, message)
