"""Which transport errors are retried: a dropped or unreachable board is, with backoff; a program
that cannot start, a failed command, authentication and host keys are not (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.farm.controller import DeviceJob
from harness.farm.ssh import AuthFailed, ConnectionLost, HostKeyChanged, HostKeyUnknown, Unreachable
from harness.farm.transport import CannotStart, CommandFailed, CommandResult, LocalTransport, TransportError


@pytest.mark.parametrize("error, retried", [
    (Unreachable, True), (ConnectionLost, True),
    (CannotStart, False), (CommandFailed, False), (AuthFailed, False), (HostKeyUnknown, False),
    (HostKeyChanged, False),
])
def test_retryable_classes(error: type, retried: bool) -> None:
    assert issubclass(error, TransportError) and error("x").retryable is retried


def test_local_program_not_found_or_not_executable_is_cannot_start(tmp_path: Path) -> None:
    transport = LocalTransport("emu")
    with pytest.raises(CannotStart, match=r"emu: cannot start /opt/py\[/x\]/python3: No such file or directory"):
        transport.run(["/opt/py[/x]/python3", "-c", "1"], timeout_s=5)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(CannotStart, match="Permission denied"):
        transport.spawn_detached([str(script)], str(tmp_path), str(tmp_path / "o"), str(tmp_path / "e"))
    with pytest.raises(CommandFailed, match=r"probe failed \(exit 3\): boom"):
        CommandResult(["sh"], 3, b"", b"boom", 0.0).check("probe")


class _Job(DeviceJob):
    """Only the retry loop of a DeviceJob, with a zero backoff."""

    def __init__(self) -> None:  # noqa: D107 - no plan needed for the retry loop
        self.reconnect_s = 5.0
        self.transport = None
        self.progress = None

    def _connect(self):  # type: ignore[override]
        return None

    def _drop(self) -> None:
        pass

    def _report(self, **changes: object) -> None:
        pass


@pytest.mark.parametrize("error, attempts", [(CannotStart, 1), (CommandFailed, 1), (ConnectionLost, 3)])
def test_with_reconnect_retries_only_what_can_heal(error: type, attempts: int) -> None:
    job = _Job()
    calls = []

    def action(transport: object) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise error("attempt %d" % len(calls))
        return "done"

    if attempts == 1:
        with pytest.raises(error, match="attempt 1"):
            job._with_reconnect(action)
    else:
        assert job._with_reconnect(action) == "done"
    assert len(calls) == attempts
