"""The `reference` engine's stand-in process: phases and tokens paced by kernel timers.

A separate program, run as ``python -I -S -c <this file's text> <config json>`` by the reference
backend: it imports nothing from the harness and no site packages (``-I -S``), so nothing that
changes the runner's interpreter (its clock, its imports) reaches it. It behaves like a CLI
engine: it prints ``ready``, then answers each query line on stdin with its phase lines and one
flushed line per token, at the configured times after it read the query:

  stdin    query <kind> <n_tokens>            (or ``quit``)
  stdout   preprocess done                    t0 + preprocess_ms
           vision_encode done                 + vision_encode_ms
           token tok0                         + prefill_ms          (the first token)
           token tok1 ...                     + tpot_ms (or the itl_ms pattern) each
           perf ttft_ms=.. e2e_ms=..          its own clock's view of the query (engine figures)
           done

Deadlines are absolute from t0 (a late wake-up never pushes later lines back) and every line is
written at or after its deadline: the process sleeps (``time.sleep`` -> clock_nanosleep, a kernel
timer) and, when ``busy``, spins on CLOCK_MONOTONIC instead, as an engine holding its core does.
So a reader's measurements from before it sent the query can only be >= the configured times.

Config: {"phases": {"image": {...}, "video": {...}}, "time_scale": float, "busy": bool} with the
reference backend's phase keys (preprocess_ms, vision_encode_ms, prefill_ms, tpot_ms, itl_ms).
Standard library only (Python >= 3.8).
"""

import json
import os
import sys
import time


def _wait_until(deadline_ns, busy):
    """Return at or after ``deadline_ns`` on CLOCK_MONOTONIC, never before."""
    while True:
        remaining = deadline_ns - time.monotonic_ns()
        if remaining <= 0:
            return
        if not busy:
            time.sleep(remaining / 1e9)


def _gaps_ms(phases, count):
    pattern = phases.get("itl_ms")
    if pattern:
        return [float(pattern[i % len(pattern)]) for i in range(count)]
    return [float(phases["tpot_ms"])] * count


def _write(line):
    data = (line + "\n").encode("utf-8")
    while data:
        data = data[os.write(1, data):]


def _query(config, kind, n_tokens):
    phases = config["phases"][kind]
    scale_ns = 1e6 * float(config.get("time_scale", 1.0))
    busy = bool(config.get("busy", False))
    t0 = time.monotonic_ns()  # the query line has just been read
    offsets_ms = [float(phases["preprocess_ms"]), float(phases["vision_encode_ms"]), float(phases["prefill_ms"])]
    offsets_ms += _gaps_ms(phases, n_tokens - 1)
    lines = ["preprocess done", "vision_encode done"] + ["token tok%d" % i for i in range(n_tokens)]
    deadline = t0
    written = []
    for offset_ms, line in zip(offsets_ms, lines):
        deadline += int(round(offset_ms * scale_ns))
        _wait_until(deadline, busy)
        _write(line)
        written.append(time.monotonic_ns())
    # the engine's own view, on its own clock: goes to the engine block, never into our metrics
    _write("perf preprocess_ms=%.4f vision_encode_ms=%.4f ttft_ms=%.4f e2e_ms=%.4f" % (
        (written[0] - t0) / 1e6, (written[1] - written[0]) / 1e6, (written[2] - t0) / 1e6,
        (written[-1] - t0) / 1e6))
    _write("done")


def main(argv):
    config = json.loads(argv[0])
    _write("ready")
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        words = line.decode("utf-8", "replace").split()
        if not words:
            continue
        if words[0] == "quit":
            return 0
        if words[0] == "query" and len(words) == 3 and words[1] in config["phases"]:
            _query(config, words[1], max(1, int(words[2])))
        else:
            _write("error: expected 'query <kind> <n_tokens>' or 'quit', got %r" % line.decode("utf-8", "replace"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
