"""Fan-out of `bench run` over the emulated sshd farm: 1 board vs 8 boards, and re-deploy bytes.

    python benchmarks/farm_fanout.py [--boards 8] [--repetitions 5] [--rounds 3]

Starts N local sshd boards (127.0.0.60+), runs the same short reference suite on one board and then
on all N (each board does the same work), and prints both wall times and their ratio (<= 1.3
expected: boards run in parallel). Rounds alternate 1 board / N boards so a burst of load from
elsewhere hits both; the median ratio is the figure. Every N-board run after the first has the
runner unchanged: the runner bytes it uploaded are printed (0 expected: deploy is by content hash).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.farm.sshd_farm import farm_down, farm_up  # noqa: E402

SUITE = """\
name: fanout
prompt: What happens in this video?
workloads:
  - {name: video-8f, kind: video, source: media/grace_hopper.jpg, size: [308, 308], frames: 8}
generation: {output_tokens: 16, warmup: 1, repetitions: %d}
"""


def run(project: Path, devices: Path, selector: str) -> Tuple[float, Dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--devices-file", str(devices), "run",
                           "--suite", "fanout", "--devices", selector, "--json"],
                          cwd=project, capture_output=True, text=True, env=env, timeout=900)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("bench run failed:\n" + proc.stderr[-3000:])
    return elapsed, json.loads(proc.stdout)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fanout-"))
    state = work / "farm"
    try:
        info = farm_up(args.boards, state, base_ip="127.0.0.60", python=sys.executable)
        shutil.copytree(REPO / "suites", work / "suites")
        (work / "suites" / "fanout.yaml").write_text(SUITE % args.repetitions)
        data = yaml.safe_load(Path(info.devices_yaml).read_text())
        for device in data["devices"]:
            # every board runs the same emulated engine so 1 vs N compares like with like
            device["backend_options"] = {"profile": "orin-nano", "time_scale": 0.1}
            device["idle_s"] = 0.5
        devices = work / "devices.yaml"
        devices.write_text(yaml.safe_dump(data, sort_keys=False))
        names = [d["name"] for d in data["devices"]]

        # warm both code paths once (runner upload, python caches) so neither timing pays for it
        run(work, devices, ",".join(names))
        print("boards                        : %d (sshd on 127.0.0.60..)" % len(names))
        ratios, uploaded = [], 0
        for round_no in range(1, args.rounds + 1):
            one_s, _ = run(work, devices, names[0])
            all_s, payload = run(work, devices, ",".join(names))
            uploaded += sum(d["uploaded_bytes"] for d in payload["devices"])
            stored = sum(d["stored"] for d in payload["devices"])
            ratios.append(all_s / one_s)
            print("round %d: 1 board %.2f s, %d boards %.2f s (%d measurements stored), ratio %.2f"
                  % (round_no, one_s, len(names), all_s, stored, all_s / one_s))
        print("ratio %d boards / 1 board     : %.2f median of %d rounds (<= 1.3 expected)"
              % (len(names), statistics.median(ratios), len(ratios)))
        print("runner bytes uploaded, re-runs: %d (0 expected: unchanged runner hash)" % uploaded)
    finally:
        farm_down(state)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
