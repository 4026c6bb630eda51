"""Helpers the command modules share: the stderr console, opening the store and the inventory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from rich.console import Console

from ..config.devices import load_devices
from ..errors import EXIT_CONFIG, EXIT_FAILED, EXIT_MISSING, BenchError
from ..plan import Paths

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_MISSING", "err", "fail", "open_paths_store", "inventory_of",
           "one_device", "known_hosts_path", "transport_factory", "summary_rows"]

err = Console(stderr=True)


def fail(message: str, code: int) -> BenchError:
    """An error for the user: raise it; the app prints one line and exits with `code`."""
    return BenchError(message, exit_code=code)


def open_paths_store(paths: Paths):
    from ..store import open_store

    try:
        return open_store(paths.store_url or paths.store_path)
    except ImportError as exc:
        raise fail(str(exc), EXIT_MISSING) from None


def inventory_of(paths: Paths):
    return load_devices(paths.devices_file)


def one_device(paths: Paths, name: str):
    inventory = inventory_of(paths)
    return inventory, inventory.get(name)


def known_hosts_path(paths: Paths, inventory) -> Path:
    return inventory.known_hosts or paths.results_dir / "known_hosts"


def transport_factory(paths: Paths, inventory):
    known_hosts = known_hosts_path(paths, inventory)

    def make(device):
        from ..farm.transport import LocalTransport

        if device.transport == "local":
            return LocalTransport(device.name)
        from ..farm.ssh import SSHTransport

        return SSHTransport.from_device(device, known_hosts_path=known_hosts)

    return make


def summary_rows(records: List[dict]) -> List[dict]:
    from ..analysis.stats import measurements_frame, summary_frame

    if not records:
        return []
    frame = summary_frame(measurements_frame(records))
    rows = json.loads(frame.to_json(orient="records"))
    # how many measured repetitions other work disturbed (runner's provenance.interference)
    from ..analysis.noise import disturbance

    groups: Dict[tuple, List[dict]] = {}
    for record in records:
        groups.setdefault((record.get("device"), record.get("workload"), record.get("variant")), []).append(record)
    found = {key: disturbance(items) for key, items in groups.items()}
    for row in rows:
        item = found.get((row.get("device"), row.get("workload"), row.get("variant")))
        if item is not None:
            row["n_disturbed"], row["n_interference_checked"] = item.n_disturbed, item.n_checked
    return rows
