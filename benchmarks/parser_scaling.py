"""How the runner's readers of foreign text scale with input size: linear (x4 input -> ~x4 time) or not.

    python benchmarks/parser_scaling.py [--base 10000]

For each reader and each hostile shape of the issue (a long word, a long run of spaces, a repeated log
phrase), times the reader at N and 4N characters (CPU time, best of 3) and prints the ratio: ~4 means
linear, ~16 quadratic. With --old REV the same shapes are run through the readers as they were at a git
revision (e.g. 18170dd, before issue 13's fixes) for comparison.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES: List[Tuple[str, Callable[[int], str]]] = [
    ("one long word", lambda n: "a" * n),
    ("'cpu0: ' then one long word", lambda n: "cpu0: " + "a" * n),
    ("spaces after a log name", lambda n: "image encode time ttft hit eos input token num" + " " * n + "x"),
    ("repeated 'prefill chunk p=0 '", lambda n: ("prefill chunk p=0 " * (n // 18 + 1))[:n]),
    ("repeated ' total size=1KB,used=1KB'", lambda n: (" total size=1KB" + ",used=1KB" * (n // 9 + 1))[:n]),
    ("newlines", lambda n: "\n" * n + "x"),
    ("digits", lambda n: "7" * n),
    ("repeated 'cpu0: K=v '", lambda n: "cpu0: " + ("K=v " * (n // 4 + 1))[:n]),
]


def _readers(mods: Dict[str, Any]) -> Dict[str, Callable[[str], Any]]:
    ax, ll, jp = mods["ax"], mods["ll"], mods["jp"]
    return {
        "ax-llm parse_run": lambda t: ax.parse_run([ax.Chunk(0, "ttft: 1 ms\n" + t), ax.Chunk(1, t)]),
        "ax-llm parse_init": ax.parse_init,
        "llama.cpp parse_query": lambda t: ll.parse_query([ax.Chunk(0, t, "err")]),
        "jetson_clocks --show": jp.parse_jetson_clocks_show,
        "tegrastats": jp.parse_tegrastats,
    }


def _load(rev: str) -> Dict[str, Any]:
    """The three parser modules as they are now, or as they were at git revision ``rev``."""
    if not rev:
        from harness.runner.backends import _axllm_parse as ax, _llamacpp_parse as ll
        from harness.runner.telemetry import jetson_parsers as jp

        return {"ax": ax, "ll": ll, "jp": jp}
    tmp = Path(tempfile.mkdtemp(prefix="parsers-%s-" % rev))
    files = {"old_ax": "harness/runner/backends/_axllm_parse.py", "old_ll": "harness/runner/backends/_llamacpp_parse.py",
             "old_jp": "harness/runner/telemetry/jetson_parsers.py"}
    for name, path in files.items():
        text = subprocess.run(["git", "show", "%s:%s" % (rev, path)], cwd=REPO, check=True, capture_output=True,
                              text=True).stdout
        text = text.replace("from ._axllm_parse import", "from old_ax import")
        (tmp / (name + ".py")).write_text(text)
    sys.path.insert(0, str(tmp))
    mods = {}
    for key, name in (("ax", "old_ax"), ("ll", "old_ll"), ("jp", "old_jp")):
        spec = importlib.util.spec_from_file_location(name, tmp / (name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        mods[key] = module
    return mods


def _cpu(fn: Callable[[str], Any], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        try:
            fn(text)
        except Exception:
            pass
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=10_000, help="N: characters of the smaller input")
    parser.add_argument("--old", default="", help="git revision to compare with (e.g. 18170dd)")
    args = parser.parse_args()
    for label, rev in (("now", ""),) + ((("at " + args.old, args.old),) if args.old else ()):
        readers = _readers(_load(rev))
        print("== readers %s: CPU ms at N=%d and 4N, ratio (4 = linear, 16 = quadratic)" % (label, args.base))
        for rname, fn in readers.items():
            worst = max(((sname, _cpu(fn, make(args.base)), _cpu(fn, make(4 * args.base))) for sname, make in SHAPES),
                        key=lambda r: r[2])
            sname, small, big = worst
            ratio = big / small if small > 1e-4 else float("nan")
            print("%-24s slowest shape %-36s %8.1f ms -> %8.1f ms  x%.1f" % (rname, sname, small * 1e3, big * 1e3,
                                                                            ratio))


if __name__ == "__main__":
    main()
