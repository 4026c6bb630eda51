"""`bench devices list|check|trust|lock|unlock`."""

from __future__ import annotations

import json
import sys

from typing import Any, Callable, Dict, List, Optional

import typer
from rich.console import Console

from ..config.devices import DeviceConfig, load_devices
from ..config.yaml_lines import gc_paused
from ..plan import Paths
from ..terminal import TerminalTable, num_col, show, text_col
from .app import devices_app
from .common import EXIT_CONFIG, EXIT_FAILED, err, fail, inventory_of, known_hosts_path, one_device, transport_factory


@devices_app.command("list")
def devices_list(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print the devices as JSON on stdout."),
) -> None:
    """The devices in devices.yaml."""
    paths: Paths = ctx.obj
    inventory = load_devices(paths.devices_file)
    if json_out:
        from pydantic import TypeAdapter

        # the whole list in one call to pydantic's serializer (3x faster than a model_dump per
        # device for 10,000 devices), without the collector scanning what it builds (gc_paused)
        with gc_paused():
            payload = TypeAdapter(List[DeviceConfig]).dump_python(inventory.devices, mode="json",
                                                                  exclude={"__all__": {"password_env"}})
        sys.stdout.write(json.dumps(payload, indent=1, sort_keys=True) + "\n")
        return
    table = TerminalTable(["name", "type", "transport", "host", "backend", text_col("variants"), text_col("tags")])
    for d in inventory.devices:
        host = "" if d.transport == "local" else ("%s:%d" % (d.host, d.port) if d.host else "(not set)")
        # cells are text, never rich markup: devices.yaml is not ours
        table.add_row(d.name, d.type, d.transport, host, d.backend, ", ".join(m.variant for m in d.models),
                      ", ".join(d.tags))
    show(Console(), table)


# At most this many boards are checked at once. Each check is an SSH connection (a socket, paramiko's
# reader thread) and a few commands on the board: a thread per board meant 10,000 threads and
# connections for a 10,000-board farm, past the controller's limits on threads and open files. 32
# still hides each board's network latency (a check is mostly waiting) and keeps the controller and
# the network to a few dozen sessions.
MAX_CONCURRENT_CHECKS = 32


def _check_all(chosen: List[DeviceConfig], check: Callable[[DeviceConfig], Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``check(device)`` for every board, at most MAX_CONCURRENT_CHECKS at once; reports in the order
    of ``chosen``. On a terminal (stderr) a transient "checked n of N" line shows the progress;
    through a pipe nothing is printed."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_CONCURRENT_CHECKS, len(chosen)))) as pool:
        futures = [pool.submit(check, device) for device in chosen]
        try:
            if err.is_terminal and len(chosen) > 1:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                with Progress(TextColumn("checked {task.completed} of {task.total} boards"), BarColumn(),
                              TimeElapsedColumn(), console=err, transient=True) as progress:
                    task = progress.add_task("check", total=len(futures))
                    for _ in as_completed(futures):
                        progress.advance(task)
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C or a failed check: the boards not started yet are not started
            for future in futures:
                future.cancel()
            raise


@devices_app.command("check")
def devices_check(
    ctx: typer.Context,
    devices: str = typer.Option("all", "--devices", "-d", help="all, names, tag:NAME, type:BOARD."),
    json_out: bool = typer.Option(False, "--json", help="Print the reports as JSON on stdout."),
) -> None:
    """Reachability, host key, python, arch, disk, memory, engines, telemetry, power mode."""
    from ..farm.health import check_device
    from ..farm.transport import TransportError
    from ..plan import device_python

    paths: Paths = ctx.obj
    inventory = inventory_of(paths)
    chosen = inventory.select(devices)
    make = transport_factory(paths, inventory)

    def check(device):
        if device.transport == "ssh" and not device.host:
            return {"device": device.name, "reachable": False, "ok": False,
                    "errors": ["no host in %s" % inventory.where(device.name)]}
        try:
            transport = make(device)
        except TransportError as exc:
            return {"device": device.name, "reachable": False, "ok": False, "errors": [str(exc)]}
        try:
            report = check_device(transport, device_python(device), device.workdir,
                                  timeout_s=device.timeouts.command_s)
            data = report.to_dict()
            data["device"] = device.name
            data["ok"] = report.ok
            return data
        finally:
            transport.close()

    reports = _check_all(chosen, check)
    if json_out:
        sys.stdout.write(json.dumps(reports, indent=1, sort_keys=True, default=str) + "\n")
    else:
        table = TerminalTable(["device", "ok", "python", "arch", num_col("disk free MB"), num_col("mem avail MB"),
                               text_col("engines"), text_col("power mode"), text_col("errors")], title="device check")
        for r in reports:
            engines = ", ".join(sorted(name for name, m in (r.get("modules") or {}).items()
                                       if isinstance(m, dict) and m.get("ok")))
            # cells are text, never rich markup: the board's and devices.yaml's text
            table.add_row(r["device"], "yes" if r.get("ok") else "NO", str(r.get("python_version") or ""),
                          str(r.get("arch") or ""), str(r.get("disk_free_mb") or ""),
                          str(r.get("mem_available_mb") or ""), engines,
                          str(r.get("power_mode") or r.get("governor") or ""),
                          "; ".join(map(str, r.get("errors") or [])))
        show(Console(), table)
    if not all(r.get("ok") for r in reports):
        raise typer.Exit(EXIT_FAILED)


@devices_app.command("trust")
def devices_trust(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Device name."),
    replace: bool = typer.Option(False, "--replace", help="Replace a different key on record (reinstalled board)."),
    expect: Optional[str] = typer.Option(None, "--expect", metavar="SHA256:...",
                                         help="Record the key only if its fingerprint is this one (scripts)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Record the key without asking (scripts)."),
) -> None:
    """Show the board's host key fingerprint, ask, and record it in the project's known_hosts."""
    from ..farm.known_hosts import trust

    paths: Paths = ctx.obj
    inventory, device = one_device(paths, name)
    if device.transport != "ssh" or not device.host:
        raise fail("device %r has no SSH host to trust (%s)" % (name, inventory.where(name)), EXIT_CONFIG)
    if expect is not None and not expect.startswith("SHA256:"):
        raise fail("--expect takes a fingerprint as ssh-keygen -lf prints it (SHA256:...), not %r" % expect,
                   EXIT_CONFIG)
    path = known_hosts_path(paths, inventory)
    where = "%s (%s:%d)" % (name, device.host, device.port)

    def approve(key_type: str, fingerprint: str) -> bool:
        """Before anything is written: the fingerprint is shown, then compared or confirmed."""
        err.print("%s presents %s key %s" % (where, key_type, fingerprint), markup=False, highlight=False)
        if expect is not None:
            if fingerprint != expect:
                raise fail("%s presents %s, not the expected %s; nothing recorded in %s"
                           % (where, fingerprint, expect, path), EXIT_FAILED)
            return True
        if yes:
            return True
        if sys.stdin is None or sys.stdin.closed:
            raise fail(_NO_STDIN % (where, path), EXIT_CONFIG)
        try:
            return typer.confirm("Compare it with `ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub` on the board. "
                                 "Record it in %s?" % (key_type.replace("ssh-", "").split("-")[0], path), default=False,
                                 err=True)
        except typer.Abort:  # end of input: nobody is there to answer
            raise fail(_NO_STDIN % (where, path), EXIT_CONFIG) from None

    fingerprint, added = trust(name, device.host, device.port, path=path, timeout=device.timeouts.connect_s,
                               replace=replace, approve=approve)  # HostKeyError: exit 1
    err.print("%s presents %s; %s %s" % (where, fingerprint, "recorded in" if added else "already in", path),
              markup=False, highlight=False)


_NO_STDIN = ("%s: no answer on stdin to confirm its host key; nothing recorded in %s. In a script pass "
             "--expect SHA256:... (the board's `ssh-keygen -lf` output) or --yes")


@devices_app.command("lock")
def devices_lock(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    ttl: float = typer.Option(3600.0, "--ttl", help="Seconds until the lock expires by itself."),
    wait: bool = typer.Option(False, "--wait"),
) -> None:
    """Take a board's lease by hand (maintenance); it expires after --ttl."""
    from ..farm.lease import LeaseOwner, acquire
    from ..plan import device_workdir

    paths: Paths = ctx.obj
    inventory, device = one_device(paths, name)
    transport = transport_factory(paths, inventory)(device)
    try:  # LeaseError: exit 1
        lease = acquire(transport, transport.expand(device_workdir(device)), LeaseOwner.current("manual-lock"),
                        ttl_s=ttl, wait=wait)
    finally:
        transport.close()
    err.print("locked %s until %s (epoch s, board clock)" % (name, int(lease.info.expires_at)))


@devices_app.command("unlock")
def devices_unlock(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    force: bool = typer.Option(False, "--force", help="Remove a lease held by someone else."),
) -> None:
    """Release a board's lease: your own manual lock, or anyone's with --force."""
    from ..farm.lease import LeaseOwner, force_unlock, read_lease
    from ..plan import device_workdir

    paths: Paths = ctx.obj
    inventory, device = one_device(paths, name)
    transport = transport_factory(paths, inventory)(device)
    try:
        workdir = transport.expand(device_workdir(device))
        holder, _ = read_lease(transport, workdir)
        if holder is None:
            err.print("%s is not locked" % name)
            return
        me = LeaseOwner.current("manual-lock")
        own = holder.run_id == "manual-lock" and holder.user == me.user and holder.host == me.host
        if not own and not force:
            raise fail("%s is held by %s; use --force to remove it" % (name, holder.holder()), EXIT_FAILED)
        force_unlock(transport, workdir)
    finally:
        transport.close()
    err.print("unlocked %s (was held by %s)" % (name, holder.holder()), markup=False, highlight=False)
