"""An accuracy suite end to end: requests into the run's plans, then lm-eval scoring per variant.

`bench run --suite vqa-quant` does (the CLI glue is three calls, see ``run_suite``):

1. ``prepare(suite, accuracy, plans)``: lm-eval builds the task's requests; every device plan
   gets them (RunSpec.accuracy + images under inputs/). The same run still measures the suite's
   latency workloads, so accuracy and TTFT / tok/s / memory come from the same loaded variant.
2. ``run_plans(...)`` as for any suite: answers come back in the pulled journal.
3. ``score(session, run_id, plans, results_dir)``: for every device and variant, lm-eval
   evaluates a ``BoardLM`` over the pulled answers (its own metrics, filters and aggregation);
   per-sample answers and the variant's accuracy with a Wilson interval and a McNemar test
   against the reference variant go to the results store (``accuracy_samples``, ``accuracy_results``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .board import answers_by_variant, attach
from .config import AccuracyConfig
from .lm import BoardLM, PulledAnswers
from .requests import EvalRequest, build_requests, load_task, offline, quiet_lm_eval
from .stats import compare_pair, mcnemar_paired, wilson
from .store import AccuracyStore


@dataclass
class AccuracySession:
    """What `prepare` decided, for `score` after the run."""

    config: AccuracyConfig
    tasks_dir: Path
    requests: List[EvalRequest]
    accuracy: Dict[str, Any]
    variants: Dict[str, List[str]] = field(default_factory=dict)  # device -> variants in order
    backends: Dict[str, str] = field(default_factory=dict)  # device -> backend


def prepare(suite: Any, config: AccuracyConfig, plans: Sequence[Any]) -> AccuracySession:
    """Build the task's requests with lm-eval and attach them to every device plan."""
    tasks_dir = config.tasks_path(suite.path)
    requests = build_requests(config.task, tasks_dir, config.limit)
    if not requests:
        raise ValueError("lm-eval task %r has no documents" % config.task)
    accuracy = attach(plans, requests, config.task)
    return AccuracySession(
        config=config, tasks_dir=tasks_dir, requests=requests, accuracy=accuracy,
        variants={p.device.name: [m.variant for m in p.spec.models] for p in plans},
        backends={p.device.name: p.spec.backend.name for p in plans},
    )


def _evaluate(lm: BoardLM, config: AccuracyConfig, tasks_dir: Path) -> Dict[str, Any]:
    """lm-eval's own evaluation of one variant's answers; returns its results with samples."""
    import lm_eval

    offline()
    with quiet_lm_eval():
        _, manager = load_task(config.task, tasks_dir)
        return lm_eval.simple_evaluate(model=lm, tasks=[config.task], task_manager=manager, limit=config.limit,
                                       log_samples=True, bootstrap_iters=0, verbosity="ERROR")


def score_variant(run_id: str, device: str, variant: str, backend: str, answers: Sequence[Any],
                  config: AccuracyConfig, tasks_dir: Path) -> Dict[str, Any]:
    """One variant: lm-eval metrics + per-sample rows (not yet compared with the reference)."""
    lm = BoardLM(PulledAnswers(answers))
    results = _evaluate(lm, config, tasks_dir)
    task = config.task
    metric = config.metric
    samples = results["samples"][task]
    by_doc = {r.doc_id: r for r in lm.records}
    rows, scores, types = [], {}, {}
    for sample in samples:
        record = by_doc.get(sample["doc_id"])
        doc = sample.get("doc") or {}
        value = float(sample.get(metric, 0.0))
        key = "%s/%s" % (task, sample["doc_id"])
        scores[key] = value
        types[key] = doc.get("question_type")
        rows.append({
            "run_id": run_id, "device": device, "variant": variant, "task": task, "request_id": key,
            "doc_id": int(sample["doc_id"]), "question": doc.get("question"),
            "prompt": record.prompt if record else None,
            "answer": record.answer if record else "", "raw_answer": record.raw_answer if record else "",
            "refs": doc.get("answers") or [sample.get("target")],
            "score": value, "scores": {m: sample.get(m) for m in sample.get("metrics", [])},
            "status": record.status if record else "missing", "error": record.error if record else None,
            "emulated": record.emulated if record else False,
            "input_sha256": record.input_sha256 if record else None, "wall_ms": record.wall_ms if record else None,
        })
    aggregate = results["results"][task].get("%s,none" % metric)
    correct = int(round(sum(scores.values())))
    binary = all(v in (0.0, 1.0) for v in scores.values())
    stats = wilson(correct, len(scores)) if binary else None
    wall = sorted(r["wall_ms"] for r in rows if r["wall_ms"] is not None)
    import lm_eval

    n_failed = sum(1 for r in rows if r["status"] != "ok")
    if rows and n_failed == len(rows):
        # nothing was answered: a 0% would read as a model that is always wrong
        aggregate, stats = None, None
    result = {
        "run_id": run_id, "device": device, "variant": variant, "task": task, "metric": metric,
        "backend": backend, "n": len(scores), "correct": correct if binary else None,
        "accuracy": aggregate, "ci_low": stats.ci_low if stats else None, "ci_high": stats.ci_high if stats else None,
        "ci_method": "Wilson score, 95%" if stats else "none (non-binary metric)",
        "n_failed": n_failed,
        "failures": sorted({r["error"] for r in rows if r["error"]})[:5],
        "emulated": any(r["emulated"] for r in rows),
        "median_answer_ms": wall[len(wall) // 2] if wall else None,
        "lm_eval_version": getattr(lm_eval, "__version__", "unknown"),
        "by_type": _by_type(scores, types),
    }
    return {"result": result, "rows": rows, "scores": scores}


def _by_type(scores: Dict[str, float], types: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    """Accuracy per question_type when the data has one (easy-VQA: yes/no, colour, shape)."""
    groups: Dict[str, List[float]] = {}
    for key, value in scores.items():
        if types.get(key):
            groups.setdefault(str(types[key]), []).append(value)
    return {t: {"n": len(v), "accuracy": sum(v) / len(v)} for t, v in sorted(groups.items())}


def compare(results: Dict[str, Dict[str, Any]], reference: str, margin_pp: Optional[float] = None) -> None:
    """Fill delta / McNemar p of every variant against ``reference`` (same device, same task), and
    every pair of variants (see ``_pairs``): the paired-bootstrap CI of the change, the answer
    agreement, McNemar p and the verdict against ``margin_pp``."""
    _pairs(results, reference, margin_pp)
    ref = results.get(reference)
    for variant, item in results.items():
        result = item["result"]
        result["reference_variant"] = reference
        if ref is None or variant == reference:
            result.update({"delta": 0.0 if variant == reference else None, "mcnemar_p": None,
                           "only_reference_right": None, "only_variant_right": None, "test": "reference"
                           if variant == reference else "reference variant missing"})
            continue
        if ref["result"]["accuracy"] is None or result["accuracy"] is None:
            result.update({"delta": None, "mcnemar_p": None, "only_reference_right": None,
                           "only_variant_right": None, "test": "no answers to compare"})
            continue
        paired = mcnemar_paired(ref["scores"], item["scores"])
        result.update({"delta": paired.delta, "mcnemar_p": paired.p_value, "n_pairs": paired.n_pairs,
                       "only_reference_right": paired.only_reference_right,
                       "only_variant_right": paired.only_variant_right, "test": paired.test})


def _pairs(results: Dict[str, Dict[str, Any]], reference: str, margin_pp: Optional[float]) -> None:
    """Every pair of variants once, oriented "b against a": a is the reference when the pair has
    it, else the variant listed first. Each pair is stored in b's result; b's comparison with the
    reference is also lifted to its top level (the main table's columns)."""
    names = list(results)
    answers = {v: {r["request_id"]: r["answer"] or "" for r in item["rows"]} for v, item in results.items()}
    for name in names:
        if name != reference:
            results[name]["result"]["pairs"] = []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            a, b = (y, x) if y == reference else (x, y)
            if results[a]["result"]["accuracy"] is None or results[b]["result"]["accuracy"] is None:
                continue
            pair = asdict(compare_pair(a, b, results[a]["scores"], results[b]["scores"], answers[a], answers[b],
                                       margin_pp))
            results[b]["result"]["pairs"].append(pair)
            if a == reference:
                results[b]["result"].update({"delta_ci_low": pair["ci_low"], "delta_ci_high": pair["ci_high"],
                                             "agreement": pair["agreement"], "verdict": pair["verdict"],
                                             "margin_pp": margin_pp})


def score(session: AccuracySession, run_id: str, results_dir: Path,
          notify: Optional[Callable[[str], None]] = None, store: Any = None) -> List[Dict[str, Any]]:
    """Score every device x variant of a finished run; store samples and results in ``store``
    (the run's results store; default results_dir/bench.sqlite); return results."""
    config = session.config
    store = AccuracyStore.in_results(results_dir, store=store)
    out: List[Dict[str, Any]] = []
    try:
        for device, variants in session.variants.items():
            pulled = answers_by_variant(results_dir, run_id, device, config.task)
            scored = {}
            for variant in variants:
                scored[variant] = score_variant(run_id, device, variant, session.backends.get(device, ""),
                                                pulled.get(variant, []), config, session.tasks_dir)
            reference = config.reference_variant if config.reference_variant in variants else variants[0]
            compare(scored, reference, config.margin_pp)
            for variant in variants:
                item = scored[variant]
                result = item["result"]
                if config.min_accuracy is not None and result["accuracy"] is not None:
                    result["below_min_accuracy"] = result["accuracy"] < config.min_accuracy
                    if result["below_min_accuracy"] and notify is not None:
                        notify("%s/%s: %s %.3f is below the suite's min_accuracy %.2f - is the board "
                               "misconfigured?" % (device, variant, config.metric, result["accuracy"],
                                                   config.min_accuracy))
                store.put_samples(item["rows"])
                store.put_result(result)
                out.append(result)
    finally:
        store.close()
    return out


def run_suite(suite: Any, config: AccuracyConfig, devices: Sequence[Any], inventory: Any, paths: Any,
              notify: Callable[[str], None] = lambda m: None, run_id: Optional[str] = None,
              on_progress: Callable[[Any], None] = lambda p: None) -> Dict[str, Any]:
    """What `bench run --suite vqa-quant` does, without the CLI's display: plan, prepare, run,
    store the measurements, score. Returns the run id, device outcomes and accuracy results."""
    from ..farm.controller import run_plans
    from ..farm.deploy import build_runner
    from ..plan import plan_run
    from ..store.sqlite import RunRecord, Store
    from .board import _transport_factory

    plans = plan_run(suite, list(devices), inventory, paths, notify=notify, run_id=run_id)
    run_id = plans[0].spec.run_id
    session = prepare(suite, config, plans)
    store = Store(paths.store_path)
    store.create_run(RunRecord(run_id=run_id, created_at="", suite=suite.name, devices=[p.device.name for p in plans],
                               status="running", controller_commit=plans[0].spec.controller.get("git_commit", ""),
                               info={"suite_file": str(suite.path), "accuracy_task": config.task}))
    outcomes = run_plans(plans, store, build_runner(), _transport_factory(inventory, paths.results_dir),
                         on_progress, mirror_dir=paths.results_dir / "pulled")
    ok = all(o.state == "finished" and o.errors == 0 for o in outcomes)
    store.finish_run(run_id, "finished" if ok else "failed")
    results = score(session, run_id, paths.results_dir, notify)
    return {"run_id": run_id, "ok": ok, "outcomes": outcomes, "accuracy": results,
            "measurements": store.measurements(run_id)}
