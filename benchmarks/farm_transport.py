"""Transport-level costs over the emulated farm (real sshd on 127.0.0.x).

    python -m benchmarks.farm_transport [--boards 8] [--runs 20] [--mib 16]

Prints: farm start-up, connect (handshake + auth), run() round trip, put/read throughput, lease
acquire+release, and the wall time of the same command burst on 1 board vs N boards in parallel
(the transport's share of the `bench run` 1-vs-8 scaling figure; ~1.0 means no serialisation in
the controller side of SSH). Loopback numbers: they show our overhead, not a network's. All
"boards" share this machine's CPUs, and every run() starts the user's login shell on the board
(root's ~/.bashrc here runs `pyenv init`, ~100-250 ms): the "run" burst measures that CPU
contention, the "read" burst (SFTP, no shell) the transport itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, List, Sequence

from harness.farm.lease import LeaseOwner, acquire
from harness.farm.ssh import SSHTransport
from harness.farm.sshd_farm import FarmBoard, FarmInfo, running_farm


def _transport(info: FarmInfo, board: FarmBoard) -> SSHTransport:
    return SSHTransport(board.host, board.port, info.user, info.client_key,
                        known_hosts_path=Path(info.known_hosts), name=board.name)


def _timed(fn: Callable[[], object], repeat: int) -> List[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def _burst(transports: Sequence[SSHTransport], runs: int, kind: str) -> float:
    """Every transport does `runs` short commands (kind "run") or small SFTP reads (kind "read",
    no remote shell started); all boards at once, one thread per board."""
    def work(transport: SSHTransport) -> None:
        for _ in range(runs):
            if kind == "run":
                transport.run(["sh", "-c", "sleep 0.05; echo x"], timeout_s=30).check("burst")
            else:
                transport.read_bytes("/etc/hostname")

    threads = [threading.Thread(target=work, args=(t,)) for t in transports]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args(list(argv))
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as tmp:
        started = time.perf_counter()
        with running_farm(args.boards, Path(tmp), base_ip="127.0.0.60") as info:
            out.write("farm up (%d sshd)            %8.2f s\n" % (args.boards, time.perf_counter() - started))
            board = info.boards[0]
            connects = _timed(lambda: _transport(info, board).connect(), 5)
            out.write("connect (handshake+auth)     %8.1f ms median\n" % (statistics.median(connects) * 1e3))
            transports = [_transport(info, b) for b in info.boards]
            one = transports[0]
            rtt = _timed(lambda: one.run(["true"], timeout_s=30), args.runs)
            out.write("run(['true']) round trip     %8.1f ms median, %.1f ms p90\n" % (
                statistics.median(rtt) * 1e3, sorted(rtt)[int(0.9 * (len(rtt) - 1))] * 1e3))
            data = bytes(range(256)) * (args.mib * 4096)
            target = board.workdir + "/bench.bin"
            put = _timed(lambda: one.put_bytes(data, target), 3)
            read = _timed(lambda: one.read_bytes(target), 3)
            for label, samples in (("put_bytes ", put), ("read_bytes", read)):
                out.write("%s %3d MiB            %8.1f MiB/s\n"
                          % (label, args.mib, args.mib / statistics.median(samples)))
            owner = LeaseOwner.current("bench")
            lease = _timed(lambda: acquire(one, board.workdir, owner, ttl_s=60).release(), 5)
            out.write("lease acquire+release        %8.1f ms median\n" % (statistics.median(lease) * 1e3))
            for transport in transports:
                transport.connect()
            for kind, count in (("run", args.runs), ("read", args.runs * 10)):
                single = _burst(transports[:1], count, kind)
                many = _burst(transports, count, kind)
                out.write("burst of %d %s: 1 board %.2f s, %d boards %.2f s, ratio %.2f\n" % (
                    count, kind, single, len(transports), many, many / single))
            for transport in transports:
                transport.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
