"""Board leases over real sshd: one winner per race, expiry takeover, only the owner releases."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

from harness.farm.lease import (
    Lease,
    LeaseHeld,
    LeaseNotOwned,
    LeaseOwner,
    acquire,
    force_unlock,
    read_lease,
)
from harness.farm.ssh import SSHTransport
from harness.farm.sshd_farm import FarmInfo
from harness.farm.transport import LocalTransport

Connect = Callable[..., SSHTransport]


def owner(run_id: str, user: str = "alice", host: str = "ctl-a") -> LeaseOwner:
    return LeaseOwner(user=user, host=host, pid=4242, run_id=run_id)


def _race(transports: List[SSHTransport], workdir: str, ttl_s: float) -> List[object]:
    """Every transport tries at the same moment; returns a Lease or the exception per racer."""
    barrier = threading.Barrier(len(transports))
    outcome: List[object] = [None] * len(transports)

    def contend(i: int) -> None:
        transports[i].connect()  # connect first so the race is about the lease, not the handshake
        barrier.wait()
        try:
            me = owner("race-%d" % i, host="ctl-%d" % i)
            outcome[i] = acquire(transports[i], workdir, me, ttl_s=ttl_s)
        except Exception as exc:  # collected and asserted on below
            outcome[i] = exc

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(transports))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def test_concurrent_controllers_exactly_one_wins(farm: FarmInfo, connect: Connect) -> None:
    workdir = str(Path(farm.board("orin-nano").workdir) / "race")
    outcome = _race([connect("orin-nano") for _ in range(6)], workdir, ttl_s=60)
    winners = [o for o in outcome if isinstance(o, Lease)]
    losers = [o for o in outcome if isinstance(o, LeaseHeld)]
    assert len(winners) == 1 and len(losers) == 5, outcome
    won = winners[0].info
    for lost in losers:
        message = str(lost)
        assert "leased by run %s (%s@%s pid 4242," % (won.run_id, won.user, won.host) in message
        assert "`bench run --resume %s` continues it" % won.run_id in message
        assert "expires in" in message and "bench devices unlock orin-nano --force" in message
        assert lost.holder == won
    current, _ = read_lease(connect("orin-nano"), workdir)
    assert current == won
    winners[0].release()
    assert read_lease(connect("orin-nano"), workdir)[0] is None


def test_expired_lease_is_taken_over_and_old_owner_cannot_release(
    farm: FarmInfo, connect: Connect
) -> None:
    workdir = str(Path(farm.board("agx-orin").workdir) / "expiry")
    first = acquire(connect("agx-orin"), workdir, owner("run-old"), ttl_s=3.0)
    held = r"run run-old \(alice@ctl-a pid 4242, acquired \d+ s ago, expires in [0-3] s\)"
    with pytest.raises(LeaseHeld, match=held):
        acquire(connect("agx-orin"), workdir, owner("run-new", user="bob", host="ctl-b"), ttl_s=60)
    time.sleep(max(0.0, first.info.expires_at - time.time()) + 0.3)  # the board's clock is ours here
    second = acquire(connect("agx-orin"), workdir, owner("run-new", user="bob", host="ctl-b"), ttl_s=60)
    assert second.took_over is not None and second.took_over.run_id == "run-old"
    with pytest.raises(LeaseNotOwned, match="now held by bob@ctl-b pid 4242 run run-new"):
        first.release()
    with pytest.raises(LeaseNotOwned):
        first.renew(60)
    assert read_lease(connect("agx-orin"), workdir)[0] == second.info  # untouched by the refusals
    before = second.info.expires_at
    second.renew(120)
    assert second.info.expires_at > before + 50
    second.release()


def test_racing_takeover_of_an_expired_lease(farm: FarmInfo, connect: Connect) -> None:
    workdir = str(Path(farm.board("upsquared-n").workdir) / "takeover")
    acquire(connect("upsquared-n"), workdir, owner("run-dead"), ttl_s=0.5)
    time.sleep(0.7)
    outcome = _race([connect("upsquared-n") for _ in range(5)], workdir, ttl_s=60)
    winners = [o for o in outcome if isinstance(o, Lease)]
    assert len(winners) == 1, outcome
    assert all(isinstance(o, LeaseHeld) for o in outcome if o is not winners[0])
    assert winners[0].took_over is not None and winners[0].took_over.run_id == "run-dead"


def test_wait_for_release_and_wait_timeout(farm: FarmInfo, connect: Connect) -> None:
    workdir = str(Path(farm.board("rtx-pc").workdir) / "wait")
    holder = acquire(connect("rtx-pc"), workdir, owner("run-holder"), ttl_s=60)
    started = time.monotonic()
    with pytest.raises(LeaseHeld, match=r"leased after waiting [12] s by run run-holder \(alice@ctl-a"):
        acquire(connect("rtx-pc"), workdir, owner("run-waiter"), ttl_s=60,
                wait=True, wait_timeout_s=1.0, poll_s=0.3)
    assert time.monotonic() - started < 5
    releaser = threading.Timer(0.8, holder.release)
    releaser.start()
    got: Optional[Lease] = None
    try:
        got = acquire(connect("rtx-pc"), workdir, owner("run-waiter"), ttl_s=60,
                      wait=True, wait_timeout_s=20, poll_s=0.3)
        assert got.info.run_id == "run-waiter" and got.took_over is None
    finally:
        releaser.join()
        if got is not None:
            got.release()


def test_force_unlock_and_context_manager(farm: FarmInfo, connect: Connect) -> None:
    workdir = "~/.edge-vlm-bench-lease-test-%d" % time.time_ns()  # '~' resolved on the board
    transport = connect("ax650n")
    try:
        stuck = acquire(transport, workdir, owner("run-stuck"), ttl_s=3600)
        removed = force_unlock(transport, workdir)
        assert removed == stuck.info
        assert force_unlock(transport, workdir) is None
        with pytest.raises(LeaseNotOwned, match="now held by nobody"):
            stuck.release()
        with acquire(transport, workdir, owner("run-ctx"), ttl_s=60) as lease:
            assert read_lease(transport, workdir)[0] == lease.info
        assert read_lease(transport, workdir)[0] is None
    finally:
        transport.run(["rm", "-rf", transport.expand(workdir)], timeout_s=20)


def test_lease_works_on_local_transport_too(tmp_path: Path) -> None:
    local = LocalTransport()
    workdir = str(tmp_path / "local board")
    lease = acquire(local, workdir, owner("run-local"), ttl_s=30)
    with pytest.raises(LeaseHeld, match="run run-local"):
        acquire(local, workdir, owner("run-other"), ttl_s=30)
    lease.release()
    (tmp_path / "local board" / "lease.json").write_text("garbage, not a lease")
    recovered = acquire(local, workdir, owner("run-after-garbage"), ttl_s=30)
    assert recovered.info.run_id == "run-after-garbage"
