"""Concurrent streams: a workload with ``concurrency: N`` sends N queries at once, round after round.

Each round starts N threads held at a barrier and releases them together; every stream announces
to its own Announcer (the runner's clock), so each query is a normal measurement (TTFT, TPOT, ITL,
counts). The round adds what only exists across streams, written into every stream's ``params``:

  round_wall_ms         first stream's start -> last stream's last token (the runner's clock)
  round_output_tokens   output tokens of the round's successful streams
  round_throughput_tps  round_output_tokens / round_wall_ms, in tokens per second
  start_offset_ms       this stream's start after the round's first start (how "at once" it was)

Measurement identity: repetition = round * N + stream (``params.round``, ``params.stream``); warm-up
rounds are the first ``generation.warmup`` rounds, all their streams flagged. Telemetry is sampled
over the round's window (all streams together: per-stream energy does not exist when streams share
the machine), the same window in every stream's record.

Only backends declaring ``supports_concurrency = True`` (each query independent, e.g. an HTTP
client) take N > 1; others get one clear error record per planned query. Standard library only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .backends.base import Announcer, Backend, BackendError, RawTiming, UnsupportedWorkload
from .clock import ns_to_ms
from .metrics import compute_metrics
from .protocol import GenerationSpec, WorkloadSpec
from .workloads import WorkloadInputs


@dataclass
class StreamOutcome:
    stream: int
    raw: Optional[RawTiming] = None
    error: Optional[str] = None
    error_kind: str = "engine"


def generation_for(generation: GenerationSpec, workload: WorkloadSpec) -> GenerationSpec:
    """The generation settings of one workload: a sweep point may fix its own output length."""
    if workload.output_tokens is None or workload.output_tokens == generation.output_tokens:
        return generation
    import dataclasses

    return dataclasses.replace(generation, output_tokens=workload.output_tokens)


def run_round(backend: Backend, inputs: WorkloadInputs, generation: GenerationSpec, streams: int) -> List[StreamOutcome]:
    """N queries released together; each stream's timing stamped by its own Announcer."""
    outcomes = [StreamOutcome(stream=i) for i in range(streams)]
    barrier = threading.Barrier(streams)

    def one(outcome: StreamOutcome) -> None:
        announce = Announcer()
        try:
            barrier.wait(timeout=generation.timeout_s)
            outcome.raw = announce.stamped(backend.run(inputs, generation, announce=announce))
        except UnsupportedWorkload as exc:
            outcome.error, outcome.error_kind = str(exc), "unsupported"
        except BackendError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # an engine crash in one stream: recorded, the others go on
            outcome.error = "%s: %s" % (type(exc).__name__, exc)

    threads = [threading.Thread(target=one, args=(o,), name="stream-%d" % o.stream, daemon=True) for o in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(generation.timeout_s + 60.0)
        if thread.is_alive():
            outcomes[threads.index(thread)].error = "stream did not finish within timeout_s"
    return outcomes


def _last_token(raw: RawTiming) -> Optional[int]:
    return raw.token_times[-1] if raw.token_times else raw.t_last_token


def round_figures(outcomes: List[StreamOutcome]) -> Dict[str, Any]:
    """The round's wall time, output tokens and throughput (successful streams only)."""
    done = [o.raw for o in outcomes if o.raw is not None]
    starts = [r.t_start for r in done]
    ends = [t for t in (_last_token(r) for r in done) if t is not None]
    figures: Dict[str, Any] = {"round_ok_streams": len(done), "round_wall_ms": None,
                               "round_output_tokens": sum(r.n_output_tokens for r in done),
                               "round_throughput_tps": None}
    if starts and ends and max(ends) > min(starts):
        wall_ms = ns_to_ms(max(ends) - min(starts))
        figures["round_wall_ms"] = wall_ms
        figures["round_throughput_tps"] = figures["round_output_tokens"] * 1000.0 / wall_ms
    figures["_t0"] = min(starts) if starts else None
    figures["_t1"] = max(ends) if ends else None
    return figures


def run_concurrent_workload(runner: Any, backend: Backend, model: Any, workload: WorkloadSpec,
                            inputs: WorkloadInputs, provenance: Dict[str, Any]) -> None:
    """Every round of one concurrent workload, recorded through the SpecRunner ``runner``."""
    spec = runner.spec
    gen = generation_for(spec.generation, workload)
    streams = workload.concurrency
    rounds = gen.warmup + gen.repetitions
    base_params = dict(workload.params)
    base_params["concurrency"] = streams
    if not getattr(backend, "supports_concurrency", False):
        runner._fail_workload(workload, model, "backend %r cannot run %d concurrent streams (only backends "
                              "that declare supports_concurrency, e.g. openai)" % (spec.backend.name, streams),
                              provenance, "unsupported")
        return
    prepare = getattr(backend, "prepare", None)
    if prepare is not None:  # untimed set-up before any stream (e.g. a text-only token count)
        prepare(inputs, gen)
    for round_index in range(rounds):
        keys = [(spec.run_id, spec.device, workload.name, model.variant, round_index * streams + s)
                for s in range(streams)]
        if all(key in runner.done for key in keys):
            continue
        warmup = round_index < gen.warmup
        runner.event("repetition_start", workload=workload.name, variant=model.variant,
                     repetition=round_index * streams,
                     data={"warmup": warmup, "total": rounds * streams, "round": round_index, "streams": streams})
        before = runner.sampler.snapshot() if runner.sampler is not None else {}
        outcomes = run_round(backend, inputs, gen, streams)
        figures = round_figures(outcomes)
        t0, t1 = figures.pop("_t0"), figures.pop("_t1")
        telemetry: Dict[str, Any] = {}
        if runner.sampler is not None and t0 is not None and t1 is not None:
            window = runner.sampler.window(t0, t1, {}, figures["round_output_tokens"], include_trace=True)
            telemetry = {"window": window, "before": before, "after": runner.sampler.snapshot(),
                         "window_covers": "the whole round (all %d streams)" % streams}
        for outcome in outcomes:
            params = dict(base_params, stream=outcome.stream, round=round_index, **figures)
            repetition = round_index * streams + outcome.stream
            if outcome.raw is None:
                runner._record(workload=workload.name, variant=model.variant, repetition=repetition,
                               warmup=warmup, status="error", error=outcome.error, error_kind=outcome.error_kind,
                               input_sha256=inputs.input_sha256, provenance=provenance, params=params)
                continue
            raw = outcome.raw
            params["start_offset_ms"] = ns_to_ms(raw.t_start - t0) if t0 is not None else None
            metrics, itl, warnings = compute_metrics(raw)
            metrics["peak_host_mb"] = None
            runner._record(
                workload=workload.name, variant=model.variant, repetition=repetition, warmup=warmup,
                status="ok", metrics=metrics, itl_ms=itl,
                metric_sources={"peak_host_mb": "not measured per stream under concurrency",
                                "peak_accel_mb": raw.peak_accel_source or "none"},
                telemetry=telemetry, engine=raw.engine, provenance=provenance,
                input_sha256=inputs.input_sha256, output_text=raw.output_text,
                warnings=warnings + raw.warnings, params=params,
            )
        runner.event("repetition_done", workload=workload.name, variant=model.variant,
                     repetition=round_index * streams,
                     data={"warmup": warmup, "total": rounds * streams, "round": round_index,
                           "throughput_tps": figures["round_throughput_tps"]})
