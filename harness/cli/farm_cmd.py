"""`bench farm up|down`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import farm_app
from .common import EXIT_CONFIG, err, fail


@farm_app.command("up")
def farm_up_command(
    boards: int = typer.Option(5, "--boards", "-n", help="How many emulated boards (>= 1)."),
    state_dir: Path = typer.Option(Path("results/farm"), "--state-dir"),
    base_ip: str = typer.Option("127.0.0.2", "--base-ip", help="First loopback address."),
) -> None:
    """Start local OpenSSH sshd "boards" on 127.0.0.x and write devices.emulated.yaml for them."""
    from ..farm.sshd_farm import farm_up

    if boards < 1:
        raise fail("--boards must be >= 1", EXIT_CONFIG)
    if not base_ip.startswith("127."):
        raise fail("the emulated farm lives on loopback only (127.x.x.x), not %s" % base_ip, EXIT_CONFIG)
    info = farm_up(boards, state_dir, base_ip=base_ip, python=sys.executable)  # FarmError: exit 3
    for board in info.boards:
        err.print("  %s (%s) on %s:%d" % (board.name, board.type, board.host, board.port), markup=False, soft_wrap=not err.is_terminal)
    err.print("run it: bench --devices-file %s run --suite video-8f --devices all" % info.devices_yaml, markup=False, soft_wrap=not err.is_terminal)


@farm_app.command("down")
def farm_down_command(state_dir: Path = typer.Option(Path("results/farm"), "--state-dir")) -> None:
    """Stop the emulated farm's sshd processes."""
    from ..farm.sshd_farm import farm_down

    stopped = farm_down(state_dir)
    err.print("stopped %d board(s): %s" % (len(stopped), ", ".join(stopped) or "none running"), markup=False, soft_wrap=not err.is_terminal)
