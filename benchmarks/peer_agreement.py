"""Our figures beside peer tools' on the same models, in one run.

1. llama.cpp decode: our llamacpp backend (llama-mtmd-cli, token arrivals on a pty) against
   ``llama-bench -p 0 -n N -r 5 -d D`` on the same GGUF and thread count (D = our prompt length,
   so both decode at the same context depth); the engine's own eval figure is printed too.
2. transformers decode: our backend against a bare ``model.generate`` (benchmarks/transformers_overhead.py).
3. OpenVINO GenAI: our TTFT / TPOT (streamer timestamps) against its PerfMetrics.
4. The same random-weight weights (tiny preset, seed 0) through transformers, OpenVINO GenAI and
   llama.cpp: input and visual token counts for the 448x448 `image` workload.
5. The canary through the three engines on the easy-VQA subset: accuracy (95% Wilson CI) per
   engine, pairwise answer agreement; and the canary's llama.cpp F16 / Q8_0 / Q4_K_M variants:
   change against F16 with its paired-bootstrap CI, agreement, McNemar p and the verdict against
   the margin declared in suites/vqa-quant.yaml.

Every model here is made or converted offline (random weights are labelled so); llama.cpp is the
one scripts/build_llamacpp.sh builds.

    python benchmarks/peer_agreement.py                       # everything, the 500 questions
    python benchmarks/peer_agreement.py --limit 100 --skip transformers-decode
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # run from a checkout without installing

SECTIONS = ("llama-bench", "transformers-decode", "openvino-perfmetrics", "token-counts", "canary")
OV_TINY = REPO / "tests" / "backends" / "fixtures" / "openvino_tiny_qwen2_5_vl"
CANARY = REPO / "tests" / "fixtures" / "canary"
CANARY_OV = REPO / "tests" / "fixtures" / "canary_openvino"


def _image_inputs() -> Any:
    from transformers_overhead import _inputs

    return _inputs("image")


def _decode_tps(raw: Any) -> Optional[float]:
    """(N - 1) / (last token - first token): per-token times, or, when some writes reached us
    merged, the first and last write (the same span)."""
    times = raw.token_times
    if len(times) >= 2:
        return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)
    if raw.t_first_token is not None and raw.t_last_token is not None and raw.t_last_token > raw.t_first_token:
        return (raw.n_output_tokens - 1) / ((raw.t_last_token - raw.t_first_token) / 1e9)
    return None


def llama_bench_section(tree: Any, model_dir: Path, n_tokens: int, reps: int, threads: int,
                        rounds: int = 3) -> Dict[str, Any]:
    """Ours (``reps`` runs, median) then ``llama-bench -r 5`` on the same GGUF, threads and context
    depth, in ``rounds`` alternating rounds: a ratio per round, so a change of load on the machine
    during the benchmark moves both sides of a ratio, not one."""
    from harness.runner.backends import get_backend
    from harness.runner.protocol import GenerationSpec, ModelSpec

    backend = get_backend("llamacpp")({"cli": str(tree.tool("llama-mtmd-cli")), "threads": threads},
                                      ModelSpec("peer", str(model_dir)))
    backend.load()
    inputs = _image_inputs()
    model_file = next(p for p in model_dir.glob("*.gguf") if not p.name.startswith("mmproj"))
    ours: List[float] = []
    engine: List[float] = []
    bench: List[Dict[str, float]] = []
    ratios: List[float] = []
    argv: List[str] = []
    try:
        backend.run(inputs, GenerationSpec(output_tokens=n_tokens))  # warm-up (page cache)
        for _ in range(rounds):
            round_ours: List[float] = []
            n_input = None
            for _ in range(reps):
                raw = backend.run(inputs, GenerationSpec(output_tokens=n_tokens))
                tps = _decode_tps(raw)
                if tps is None:
                    raise SystemExit("llamacpp: no per-token times (%s)" % raw.warnings)
                round_ours.append(tps)
                engine.append(1000.0 * raw.engine["eval_runs"] / raw.engine["eval_ms"])
                n_input = raw.n_input_tokens
            argv = [str(tree.tool("llama-bench")), "-m", str(model_file), "-p", "0", "-n", str(n_tokens), "-r", "5",
                    "-t", str(threads), "-d", str(n_input or 0), "-o", "json"]
            proc = subprocess.run(argv, capture_output=True, text=True, check=True)
            result = json.loads(proc.stdout)[0]
            bench.append({"avg_ts": float(result["avg_ts"]), "stddev_ts": float(result["stddev_ts"])})
            ours.extend(round_ours)
            ratios.append(statistics.median(round_ours) / bench[-1]["avg_ts"])
    finally:
        backend.close()
    return {"model": model_file.name, "threads": threads, "n_tokens": n_tokens, "depth": argv[argv.index("-d") + 1],
            "ours_tps": statistics.median(ours), "ours_all": ours, "engine_eval_tps": statistics.median(engine),
            "llama_bench_tps": statistics.median(b["avg_ts"] for b in bench), "llama_bench_rounds": bench,
            "ratios": ratios, "ratio": statistics.median(ratios), "argv": " ".join(argv[1:])}


def transformers_section(model_dir: Path, n_tokens: int, reps: int, threads: int) -> Dict[str, Any]:
    from transformers_overhead import measure

    return measure(model_dir, "image", n_tokens, reps, 1, threads)


def openvino_section(n_tokens: int, reps: int) -> Dict[str, Any]:
    from harness.runner.backends import get_backend
    from harness.runner.protocol import GenerationSpec, ModelSpec

    backend = get_backend("openvino_genai")({"device": "CPU"}, ModelSpec("fp32", str(OV_TINY)))
    backend.load()
    inputs = _image_inputs()
    rows = []
    try:
        backend.run(inputs, GenerationSpec(output_tokens=n_tokens))
        for _ in range(reps):
            raw = backend.run(inputs, GenerationSpec(output_tokens=n_tokens))
            times = raw.token_times
            ttft = (times[0] - raw.t_start) / 1e6
            tpot = (times[-1] - times[0]) / 1e6 / (len(times) - 1)
            rows.append((ttft, raw.engine["ttft_ms"], tpot, raw.engine["tpot_ms"]))
    finally:
        backend.close()
    med = [statistics.median(r[i] for r in rows) for i in range(4)]
    return {"ttft_ours": med[0], "ttft_engine": med[1], "tpot_ours": med[2], "tpot_engine": med[3],
            "ttft_rel": abs(med[0] - med[1]) / med[1], "tpot_rel": abs(med[2] - med[3]) / med[3]}


def token_count_section(tiny_hf: Path, tiny_gguf: Path, tree: Any) -> Dict[str, Dict[str, Any]]:
    from harness.runner.backends import get_backend
    from harness.runner.protocol import GenerationSpec, ModelSpec

    engines = {
        "transformers": ("transformers", {"device": "cpu"}, tiny_hf),
        "openvino_genai": ("openvino_genai", {"device": "CPU"}, OV_TINY),
        "llamacpp": ("llamacpp", {"cli": str(tree.tool("llama-mtmd-cli"))}, tiny_gguf),
    }
    inputs = _image_inputs()
    out = {}
    for label, (name, options, path) in engines.items():
        backend = get_backend(name)(options, ModelSpec("tiny", str(path)))
        backend.load()
        try:
            raw = backend.run(inputs, GenerationSpec(output_tokens=4))
        finally:
            backend.close()
        out[label] = {"input": raw.n_input_tokens, "visual": raw.n_visual_tokens}
    return out


def canary_answers(variants: Dict[str, Any], limit: int, work: Path,
                   failed: Dict[str, int]) -> Dict[str, Dict[str, str]]:
    """{variant: {request id: answer}} through the runner's accuracy path, one runner per engine;
    an answer that failed is scored as wrong and counted in ``failed`` (printed beside the score)."""
    from harness.eval.board import read_answers
    from harness.runner.execute import SpecRunner
    from harness.runner.journal import RESULTS, Journal
    from tests.eval.helpers import accuracy_spec

    out: Dict[str, Dict[str, str]] = {}
    for engine, (backend, models) in variants.items():
        run_dir = work / engine
        spec = accuracy_spec(run_dir, backend, models, limit, run_id="peer", device="here")
        journal = Journal(str(run_dir))
        try:
            SpecRunner(spec, str(run_dir), journal).run()
        finally:
            journal.close()
        for answer in read_answers(run_dir / RESULTS):
            out.setdefault(answer.variant, {})[answer.request_id] = answer.answer if answer.status == "ok" else ""
            failed[answer.variant] = failed.get(answer.variant, 0) + (answer.status != "ok")
    return out


def canary_section(tree: Any, gguf: Dict[str, Any], limit: int, work: Path) -> Dict[str, Any]:
    from harness.eval.config import load_suite_with_accuracy
    from harness.eval.stats import agreement_rate, compare_pair, wilson
    from harness.eval.vqa import exact_match
    from harness.runner.protocol import BackendSpec, ModelSpec
    from tests.eval.helpers import subset_rows

    _, accuracy = load_suite_with_accuracy(REPO / "suites" / "vqa-quant.yaml")
    margin = accuracy.margin_pp if accuracy else None
    cli = str(tree.tool("llama-mtmd-cli"))
    variants = {
        "transformers": (BackendSpec("transformers", {"device": "cpu"}), [ModelSpec("transformers fp32", str(CANARY))]),
        "openvino_genai": (BackendSpec("openvino_genai", {"device": "CPU"}),
                           [ModelSpec("openvino_genai fp32", str(CANARY_OV))]),
        # default threads (CPUs - 1): with every CPU computing, the CLI loses answers at exit (llama.cpp #22142)
        "llamacpp": (BackendSpec("llamacpp", {"cli": cli}),
                     [ModelSpec("llamacpp " + t, str(v.dir)) for t, v in gguf.items()]),
    }
    started = time.monotonic()
    failed: Dict[str, int] = {}
    answers = canary_answers(variants, limit, work, failed)
    seconds = time.monotonic() - started
    rows = subset_rows(limit)
    keys = ["easy_vqa/%d" % i for i in range(limit)]
    scores = {v: {k: float(exact_match(a.get(k, ""), r["answers"])) for k, r in zip(keys, rows)}
              for v, a in answers.items()}
    acc = {v: wilson(int(sum(s.values())), len(s)) for v, s in scores.items()}
    names = list(answers)
    agreement = {(a, b): agreement_rate(answers[a], answers[b]) for i, a in enumerate(names) for b in names[i + 1:]}
    pairs = [compare_pair("llamacpp F16", "llamacpp " + t, scores["llamacpp F16"], scores["llamacpp " + t],
                          answers["llamacpp F16"], answers["llamacpp " + t], margin) for t in gguf if t != "F16"]
    return {"n": limit, "seconds": seconds, "accuracy": acc, "failed": failed, "agreement": agreement, "pairs": pairs,
            "margin_pp": margin, "tensor_types": {t: v.tensor_types for t, v in gguf.items()}}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=500, help="easy-VQA questions for the canary (default 500)")
    parser.add_argument("--tokens", type=int, default=64, help="decode tokens per query (default 64)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="transformers threads for [2] (default 2)")
    parser.add_argument("--llama-threads", type=int, default=None,
                        help="llama.cpp threads for [1] (default: CPUs - 1, the backend's default: with every CPU "
                             "computing, the CLI's log thread prints tokens late and loses output, llama.cpp #22142)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours / llama-bench rounds for [1]")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS)
    args = parser.parse_args(argv)

    from harness.models import make_model
    from harness.models.gguf import default_tree, gguf_variants

    tree = default_tree()
    if not tree.complete():
        raise SystemExit("llama.cpp is not built at %s: run bash scripts/build_llamacpp.sh" % tree.root)
    print("llama.cpp: llama-cpp-python %s's vendored tree, %s" % (tree.version, tree.bin))
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        work = Path(tmp)
        if "llama-bench" not in args.skip or "transformers-decode" not in args.skip:
            small = make_model("qwen2.5-vl", "small", work / "small", seed=0).path
        if "llama-bench" not in args.skip:
            variant = gguf_variants(small, tree, types=("F16", "Q8_0"))["Q8_0"]
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            r = llama_bench_section(tree, variant.dir, args.tokens, args.reps,
                                    args.llama_threads or max(1, cpus - 1), args.rounds)
            print("\n[1] llama.cpp decode, small preset (random weights) %s, %d threads, %d tokens at depth %s"
                  % (r["model"], r["threads"], r["n_tokens"], r["depth"]))
            print("    ours (llamacpp backend, token arrivals): %8.1f tok/s (median of %d; all %s)"
                  % (r["ours_tps"], len(r["ours_all"]), ", ".join("%.1f" % x for x in r["ours_all"])))
            print("    llama-mtmd-cli's own eval time:          %8.1f tok/s" % r["engine_eval_tps"])
            print("    llama-bench %s: %s tok/s (per round)" % (
                r["argv"], ", ".join("%.1f +/- %.1f" % (b["avg_ts"], b["stddev_ts"]) for b in r["llama_bench_rounds"])))
            print("    ratio ours / llama-bench: %.3f (median of %d alternating rounds: %s)"
                  % (r["ratio"], len(r["ratios"]), ", ".join("%.3f" % x for x in r["ratios"])))
            print("    llama-mtmd-cli's own eval / llama-bench: %.3f" % (r["engine_eval_tps"] / r["llama_bench_tps"]))
        if "transformers-decode" not in args.skip:
            r = transformers_section(small, args.tokens // 2, args.reps, args.threads)
            print("\n[2] transformers decode, small preset (random weights), image, %d tokens" % (args.tokens // 2))
            print("    ours %.1f tok/s vs bare model.generate %.1f tok/s: ratio %.3f (least-disturbed runs %.3f)"
                  % (r["instrumented_decode_tps"], r["bare_decode_tps"], r["ratio"],
                     r["instrumented_decode_tps_best"] / r["bare_decode_tps_best"]))
        if "openvino-perfmetrics" not in args.skip:
            r = openvino_section(args.tokens // 2, args.reps)
            print("\n[3] OpenVINO GenAI, tiny IR (random weights), image, %d tokens" % (args.tokens // 2))
            print("    TTFT ours %.2f ms vs PerfMetrics %.2f ms (%.1f%% apart); TPOT ours %.3f ms vs %.3f ms (%.1f%%)"
                  % (r["ttft_ours"], r["ttft_engine"], 100 * r["ttft_rel"], r["tpot_ours"], r["tpot_engine"],
                     100 * r["tpot_rel"]))
        if "token-counts" not in args.skip:
            tiny = make_model("qwen2.5-vl", "tiny", work / "tiny", seed=0).path
            tiny_gguf = gguf_variants(tiny, tree, types=("F16",))["F16"]
            counts = token_count_section(tiny, tiny_gguf.dir, tree)
            print("\n[4] token counts, tiny preset seed 0 (same weights), image 448x448")
            for engine, c in counts.items():
                print("    %-15s input %s, visual %s" % (engine, c["input"],
                                                          c["visual"] if c["visual"] is not None else "not exposed"))
            inputs = {c["input"] for c in counts.values()}
            visual = {c["visual"] for c in counts.values() if c["visual"] is not None}
            print("    input counts %s; visual counts %s" % ("identical" if len(inputs) == 1 else "DIFFER: %s" % inputs,
                                                           "identical" if len(visual) == 1 else "DIFFER: %s" % visual))
        if "canary" not in args.skip:
            gguf = gguf_variants(CANARY, tree)
            r = canary_section(tree, gguf, args.limit, work / "canary")
            print("\n[5] canary on the easy-VQA subset, n=%d (answers through the runner, %.0f s)" % (r["n"], r["seconds"]))
            for variant, a in r["accuracy"].items():
                print("    %-22s %5.1f%% (%d/%d), 95%% Wilson %.1f-%.1f%%; %d answers failed (scored wrong)"
                      % (variant, 100 * a.accuracy, a.correct, a.n, 100 * a.ci_low, 100 * a.ci_high,
                         r["failed"].get(variant, 0)))
            print("    answer agreement:")
            for (a, b), rate in r["agreement"].items():
                print("      %-22s vs %-22s %5.1f%%" % (a, b, 100 * rate))
            print("    quantization, against llamacpp F16 (margin %s pp):" % r["margin_pp"])
            for p in r["pairs"]:
                print("      %-16s delta %+.1f pp, 95%% bootstrap CI %+.1f..%+.1f pp, agreement %.1f%%, McNemar p %.3f "
                      "-> %s" % (p.b, 100 * p.delta, 100 * p.ci_low, 100 * p.ci_high, 100 * p.agreement, p.p_value,
                                 p.verdict))
            print("    tensor types written by llama-quantize: %s" % json.dumps(r["tensor_types"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
