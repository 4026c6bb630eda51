"""run_plans follows devices on a bounded pool of threads, not one thread per device."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import List

from harness.farm.controller import run_plans
from harness.farm.ssh import AuthFailed


class CountingTransportFactory:
    """Each connection attempt holds its slot briefly, then is refused for good (no retry)."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.threads: set = set()
        self.lock = threading.Lock()

    def __call__(self, device: object) -> object:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.get_ident())
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        raise AuthFailed("%s: refused (test)" % device.name)  # type: ignore[attr-defined]


class NullStore:
    def set_device_state(self, state: object) -> None:
        pass


def plans(n: int) -> List[SimpleNamespace]:
    return [SimpleNamespace(
        device=SimpleNamespace(name="board-%04d" % i, timeouts=SimpleNamespace(connect_s=1.0, command_s=1.0, lease_s=60.0)),
        spec=SimpleNamespace(run_id="r"), workdir="~/bench", python="python3", inputs=[],
        wait_for_lease=False, lease_wait_s=None) for i in range(n)]


def test_a_thousand_devices_run_on_at_most_max_parallel_threads() -> None:
    factory = CountingTransportFactory()
    before = threading.active_count()
    outcomes = run_plans(plans(1000), NullStore(), None, factory, lambda p: None,  # type: ignore[arg-type]
                         max_parallel=8)
    assert [o.device for o in outcomes] == ["board-%04d" % i for i in range(1000)]  # plan order
    assert all(o.state == "failed" and "refused (test)" in (o.error or "") for o in outcomes)
    assert all(o.retryable is False for o in outcomes)  # an authentication refusal is not retried
    assert 2 <= factory.peak <= 8  # in parallel, and bounded
    assert len(factory.threads) <= 8
    assert threading.active_count() <= before + 1  # the pool is gone once the run is over
