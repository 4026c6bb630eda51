"""Start an inference server on this machine and wait until it answers (standard library only).

Used by the ``openai`` backend's ``launch`` option (the board starts its own server, the run stops
it) and by the tests. A server that cannot start says what is missing: the executable that is not
on PATH, or the last lines the server printed before it exited.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from .base import BackendError, BackendUnavailable

_LOG_TAIL_LINES = 15


class ServerProcess:
    """A started server: its process, its log file and how to stop it."""

    def __init__(self, process: "subprocess.Popen[bytes]", log_path: str, cmd: Sequence[str]) -> None:
        self.process = process
        self.log_path = log_path
        self.cmd = list(cmd)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (and what it started, via its process group)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
            except OSError:
                self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, 9)
                except OSError:
                    self.process.kill()
                self.process.wait(timeout=timeout_s)


def _answers(host: str, port: int, path: str) -> bool:
    """An HTTP answer that is not "still loading" (502-504): a 401 from a server with an API key
    counts, since the key is the backend's business, not the launcher's."""
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status not in (502, 503, 504)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def start_server(
    cmd: Sequence[str],
    host: str,
    port: int,
    ready_path: str = "/v1/models",
    ready_timeout_s: float = 300.0,
    env: Optional[Dict[str, str]] = None,
    log_dir: Optional[str] = None,
) -> ServerProcess:
    """Run ``cmd`` and return once GET ``ready_path`` answers; raise a BackendError otherwise."""
    if not cmd:
        raise BackendError("launch: empty command")
    executable = cmd[0]
    if shutil.which(executable) is None:
        raise BackendUnavailable(
            "cannot start the server: %r not found (not on PATH and not an executable file); "
            "install it or give its full path in the launch command" % executable
        )
    if _answers(host, port, ready_path):
        raise BackendError(
            "cannot start the server: something already answers on %s:%d; stop it or use another port"
            % (host, port)
        )
    log_dir = log_dir or tempfile.mkdtemp(prefix="bench-server-")
    log_path = os.path.join(log_dir, "server.log")
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=full_env, start_new_session=True)
    server = ServerProcess(process, log_path, cmd)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise BackendUnavailable(
                "cannot start the server: %s exited with code %d before answering on %s:%d; its last "
                "output:\n%s" % (" ".join(cmd[:3]), code, host, port, server.log_tail())
            )
        if _answers(host, port, ready_path):
            return server
        time.sleep(0.25)
    server.stop()
    raise BackendError(
        "cannot start the server: %s did not answer GET %s on %s:%d within %.0f s; its last output:\n%s"
        % (" ".join(cmd[:3]), ready_path, host, port, ready_timeout_s, server.log_tail())
    )


def launch_command(value: object) -> List[str]:
    """The launch option's command: a list of strings."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BackendError("openai backend: launch.cmd must be a non-empty list of strings, got %r" % (value,))
    return list(value)
