"""Run a RunSpec: every model variant x workload x repetition, one Measurement each."""

from __future__ import annotations

import datetime
import os
import traceback
from typing import Any, Dict, List, Optional

from . import RUNNER_VERSION
from .accuracy import AccuracyJob
from .backends import BackendError, get_backend, install_hint
from .backends.base import Announcer, Backend, BackendUnavailable, LoadInfo, ModelNotFound, UnsupportedWorkload
from .clock import now_ns
from .concurrent import generation_for, run_concurrent_workload
from .interference import interference, take_snapshot
from .journal import INPUTS, Journal, read_completed_keys, RESULTS
from .memory import peak_host_mb, reset_peak
from .metrics import compute_metrics
from .protocol import Event, Measurement, ModelSpec, RunSpec, WorkloadSpec
from .provenance import machine_provenance, runner_hash
from .stability import relative_ci_width
from .telemetry import Sampler, build_sources, default_configs, throttle_flags
from .workloads import WorkloadInputs, load_inputs

# Runner exit codes (also documented in the README).
EXIT_OK = 0
EXIT_MEASUREMENT_ERRORS = 1
EXIT_BAD_SPEC = 2


def _iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class SpecRunner:
    def __init__(self, spec: RunSpec, run_dir: str, journal: Journal) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.journal = journal
        self.done = read_completed_keys(os.path.join(run_dir, RESULTS))
        self.base_provenance: Dict[str, Any] = machine_provenance()
        self.base_provenance["runner_hash"] = runner_hash()
        self.base_provenance["runner_version"] = RUNNER_VERSION
        self.base_provenance["controller_commit"] = spec.controller.get("git_commit", "unknown")
        self.base_provenance["controller_version"] = spec.controller.get("version", "unknown")
        self.base_provenance["device_type"] = spec.device_info.get("type", "unknown")
        self.n_errors = 0
        self.n_written = 0
        self.sampler: Optional[Sampler] = None
        self.idle: Dict[str, Any] = {}
        self.telemetry_warnings: List[str] = []
        self.accuracy: Optional[AccuracyJob] = None  # set in run() when the spec asks for answers
        # each workload's sweep parameters go into every one of its records
        self.workload_params: Dict[str, Dict[str, Any]] = {w.name: dict(w.params) for w in spec.workloads}

    # -- events -----------------------------------------------------------------------------
    def event(self, name: str, message: str = "", **fields: Any) -> None:
        data = fields.pop("data", {})
        self.journal.event(
            Event(event=name, ts_ns=now_ns(), device=self.spec.device, message=message, data=data, **fields)
        )

    # -- records ----------------------------------------------------------------------------
    def _record(self, **fields: Any) -> None:
        fields.setdefault("params", dict(self.workload_params.get(fields.get("workload", ""), {})))
        measurement = Measurement(
            run_id=self.spec.run_id,
            device=self.spec.device,
            suite=self.spec.suite,
            backend=self.spec.backend.name,
            started_at=fields.pop("started_at", _iso_now()),
            **fields,
        )
        if measurement.key in self.done:
            return
        self.journal.measurement(measurement)
        self.done.add(measurement.key)
        self.n_written += 1
        if measurement.status != "ok":
            self.n_errors += 1

    def _fail_workload(
        self,
        workload: WorkloadSpec,
        model: ModelSpec,
        message: str,
        provenance: Dict[str, Any],
        kind: str = "engine",
    ) -> None:
        """One error record per planned repetition: a failure is visible, never a gap."""
        total = self.spec.generation.warmup + self.spec.generation.repetitions
        for repetition in range(total):
            self._record(
                workload=workload.name,
                variant=model.variant,
                repetition=repetition,
                warmup=repetition < self.spec.generation.warmup,
                status="error",
                error=message,
                error_kind=kind,
                input_sha256=workload.input_sha256,
                provenance=provenance,
            )
        self.event("error", message, workload=workload.name, variant=model.variant)

    def _provenance(self, model: ModelSpec, info: Optional[LoadInfo]) -> Dict[str, Any]:
        prov = dict(self.base_provenance)
        prov.update({"model_path": model.path, "quantization": model.quantization, "variant": model.variant})
        if info is not None:
            prov.update(
                {
                    "engine": info.engine,
                    "engine_versions": info.engine_versions,
                    "model_id": info.model_id,
                    "model_sha256": info.model_sha256,
                    "weights": info.weights,
                    "emulated": info.weights == "emulated",
                    "dtype": info.dtype,
                    "accelerator": info.accelerator,
                }
            )
            if info.extra:
                prov["backend_extra"] = info.extra
            if info.weights == "emulated":
                prov["emulated_profile"] = self.spec.backend.options.get("profile", "custom")
        return prov

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> int:
        spec = self.spec
        self.event("run_start", "runner %s on %s" % (RUNNER_VERSION, self.base_provenance["hostname"]),
                   data={"models": len(spec.models), "workloads": len(spec.workloads)})
        inputs_dir = os.path.join(self.run_dir, INPUTS)
        loaded: List[Any] = []
        for workload in spec.workloads:
            try:
                loaded.append(load_inputs(workload, inputs_dir))
            except Exception as exc:  # bad input files: every model variant reports it
                loaded.append(exc)
        if spec.accuracy:
            self.accuracy = AccuracyJob(self)
        self._start_telemetry()
        try:
            for model in spec.models:
                self._run_model(model, loaded)
        finally:
            if self.sampler is not None:
                self.sampler.close()
        self.event("run_end", "%d measurements, %d failed" % (self.n_written, self.n_errors),
                   data={"measurements": self.n_written, "errors": self.n_errors})
        return EXIT_OK if self.n_errors == 0 else EXIT_MEASUREMENT_ERRORS

    def _start_telemetry(self) -> None:
        """Sources from devices.yaml (or the board type's defaults); idle power before any load."""
        info = self.spec.device_info
        configs = self.spec.telemetry or default_configs(info.get("type", "local"))
        if info.get("telemetry_off"):
            return
        sources, self.telemetry_warnings = build_sources(configs)
        for warning in self.telemetry_warnings:
            self.event("telemetry", warning)
        if not sources:
            return
        self.sampler = Sampler(sources, rate_hz=float(info.get("telemetry_rate_hz", 10.0)))
        self.sampler.start()
        idle_s = float(info.get("idle_s", 2.0))
        if idle_s > 0:
            self.event("phase", "measuring idle power for %.1f s" % idle_s)
            self.idle = self.sampler.measure_idle(idle_s)

    def _telemetry_window(self, raw: Any, before: Dict[str, Any], metrics: Dict[str, Any]) -> "tuple[Dict[str, Any], List[str]]":
        """Energy and power per phase and per query, peak memory by source, throttle flags."""
        assert self.sampler is not None
        after = self.sampler.snapshot()
        tokens = raw.token_times
        end = tokens[-1] if tokens else (raw.t_preprocess_end or raw.t_start)
        phases: Dict[str, Any] = {}
        if raw.t_preprocess_end is not None:
            phases["preprocess"] = (raw.t_start, raw.t_preprocess_end)
        if raw.t_vision_start is not None and raw.t_vision_end is not None:
            phases["vision_encode"] = (raw.t_vision_start, raw.t_vision_end)
        prefill_start = raw.t_vision_end if raw.t_vision_end is not None else raw.t_preprocess_end
        if tokens and prefill_start is not None:
            phases["prefill"] = (prefill_start, tokens[0])
        if len(tokens) >= 2:
            phases["decode"] = (tokens[0], tokens[-1])
        # the power trace feeds the report's power-over-time plot (10 Hz: a few hundred points)
        window = self.sampler.window(raw.t_start, end, phases, raw.n_output_tokens, include_trace=True)
        flags = throttle_flags(before, after, self.spec.device_info.get("expect") or {})
        for name in ("energy_j", "avg_power_w", "j_per_token", "idle_power_w", "energy_above_idle_j"):
            metrics[name] = window.get(name)
        telemetry = {"window": window, "before": before, "after": after, "throttle_flags": flags,
                     "throttled": bool(flags), "idle": self.idle, "source_warnings": self.telemetry_warnings}
        return telemetry, ["throttle/power-mode: %s" % f for f in flags]

    def _run_model(self, model: ModelSpec, loaded: List[Any]) -> None:
        spec = self.spec
        self.event("load", "loading %s" % model.variant, variant=model.variant)
        backend: Optional[Backend] = None
        try:
            backend_cls = get_backend(spec.backend.name)
            backend = backend_cls(spec.backend.options, model)
            load_start_ns = now_ns()
            info = backend.load()
            load_ms = (now_ns() - load_start_ns) / 1e6
        except BackendUnavailable as exc:
            hint = install_hint(spec.backend.name)
            message = "%s%s" % (exc, "" if not hint or hint in str(exc) else "; " + hint)
            for workload in spec.workloads:
                self._fail_workload(workload, model, message, self._provenance(model, None), "unavailable")
            if self.accuracy is not None:
                self.accuracy.fail_all(model, message, "unavailable")
            return
        except BackendError as exc:
            kind = "model_not_found" if isinstance(exc, ModelNotFound) else "config"
            for workload in spec.workloads:
                self._fail_workload(workload, model, str(exc), self._provenance(model, None), kind)
            if self.accuracy is not None:
                self.accuracy.fail_all(model, str(exc), kind)
            return
        except Exception as exc:  # an engine crash while loading: record it, go on
            message = "loading failed: %s: %s" % (type(exc).__name__, exc)
            for workload in spec.workloads:
                self._fail_workload(workload, model, message, self._provenance(model, None))
            if self.accuracy is not None:
                self.accuracy.fail_all(model, message, "engine")
            return
        provenance = self._provenance(model, info)
        provenance["load_ms"] = round(load_ms, 3)  # engine + weights load of this variant, once per run
        self.event("loaded", "loaded %s in %.0f ms" % (model.variant, load_ms), variant=model.variant,
                   data={"load_ms": round(load_ms, 3)})
        try:
            for workload, inputs in zip(spec.workloads, loaded):
                if isinstance(inputs, Exception):
                    self._fail_workload(workload, model, str(inputs), provenance, "input")
                elif not backend.supports(inputs.kind):
                    self._fail_workload(
                        workload, model,
                        "backend %r cannot run %s workloads with model %r"
                        % (spec.backend.name, inputs.kind, model.variant),
                        provenance,
                        "unsupported",
                    )
                elif workload.concurrency > 1:  # N streams at once (runner/concurrent.py)
                    run_concurrent_workload(self, backend, model, workload, inputs, provenance)
                else:
                    self._run_workload(backend, model, workload, inputs, provenance)
            if self.accuracy is not None:  # the same loaded variant answers the accuracy requests
                self.accuracy.run(backend, model, provenance)
        finally:
            backend.close()

    def _run_workload(
        self,
        backend: Backend,
        model: ModelSpec,
        workload: WorkloadSpec,
        inputs: WorkloadInputs,
        provenance: Dict[str, Any],
    ) -> None:
        gen = generation_for(self.spec.generation, workload)  # a sweep point may fix its output length
        total = gen.planned_total  # warm-up + repetitions, or + max_repetitions with until_stable
        stable_samples: List[float] = []  # gen.stable_metric of this session's measured repetitions
        for repetition in range(total):
            key = (self.spec.run_id, self.spec.device, workload.name, model.variant, repetition)
            if (repetition >= gen.warmup + gen.repetitions and gen.until_stable
                    and relative_ci_width(stable_samples) <= gen.until_stable):
                self.event("phase", "stable after %d measured repetitions: 95%% CI of the median %s within %.1f%%"
                           % (repetition - gen.warmup, gen.stable_metric, 100 * gen.until_stable),
                           workload=workload.name, variant=model.variant)
                break
            if key in self.done:
                continue
            warmup = repetition < gen.warmup
            self.event("repetition_start", workload=workload.name, variant=model.variant,
                       repetition=repetition, data={"warmup": warmup, "total": total})
            started_at = _iso_now()
            before = self.sampler.snapshot() if self.sampler is not None else {}
            was_reset = reset_peak()
            proc_before = take_snapshot()  # what else runs on the machine (interference.py)
            try:
                # the runner stamps every boundary and token as the backend announces it; the
                # timestamps it measures replace any the backend returned
                phases = self.sampler.mark_phase if self.sampler is not None and self.sampler.wants_phases else None
                announce = Announcer(on_phase=phases)
                try:
                    raw = announce.stamped(backend.run(inputs, gen, announce=announce))
                finally:
                    if phases is not None:  # an emulated power source draws idle power again
                        phases("idle")
            except BackendError as exc:
                kind = "unsupported" if isinstance(exc, UnsupportedWorkload) else "engine"
                self._record(workload=workload.name, variant=model.variant, repetition=repetition,
                             warmup=warmup, status="error", error=str(exc), error_kind=kind,
                             started_at=started_at,
                             input_sha256=inputs.input_sha256, provenance=provenance)
                self.event("error", str(exc), workload=workload.name, variant=model.variant,
                           repetition=repetition)
                continue
            except Exception as exc:
                message = "%s: %s" % (type(exc).__name__, exc)
                self._record(workload=workload.name, variant=model.variant, repetition=repetition,
                             warmup=warmup, status="error", error=message, error_kind="engine",
                             started_at=started_at,
                             input_sha256=inputs.input_sha256, provenance=provenance,
                             warnings=[traceback.format_exc(limit=5)])
                self.event("error", message, workload=workload.name, variant=model.variant,
                           repetition=repetition)
                continue
            machine_load = interference(proc_before, take_snapshot())
            metrics, itl, warnings = compute_metrics(raw)
            if not warmup and metrics.get(gen.stable_metric) is not None:
                stable_samples.append(float(metrics[gen.stable_metric]))
            peak_mb, peak_source = peak_host_mb(was_reset)
            metrics["peak_host_mb"] = peak_mb
            sources = {"peak_host_mb": peak_source}
            sources["peak_accel_mb"] = raw.peak_accel_source or (
                "none: this backend reports no accelerator memory"
            )
            telemetry: Dict[str, Any] = {}
            if self.sampler is not None:
                telemetry, flag_warnings = self._telemetry_window(raw, before, metrics)
                warnings = warnings + flag_warnings
                power = telemetry["window"].get("power_source")
                if power:
                    sources["energy_j"] = "%s: %s" % (power, telemetry["window"].get("power_covers", ""))
            self._record(
                workload=workload.name,
                variant=model.variant,
                repetition=repetition,
                warmup=warmup,
                status="ok",
                metrics=metrics,
                itl_ms=itl,
                metric_sources=sources,
                telemetry=telemetry,
                engine=raw.engine,
                provenance=dict(provenance, interference=machine_load),
                input_sha256=inputs.input_sha256,
                output_text=raw.output_text,
                warnings=warnings + raw.warnings,
                started_at=started_at,
            )
            self.event(
                "repetition_done", workload=workload.name, variant=model.variant,
                repetition=repetition,
                data={"warmup": warmup, "total": total, "ttft_ms": metrics["ttft_ms"],
                      "decode_tps": metrics["decode_tps"], "e2e_ms": metrics["e2e_ms"],
                      "disturbed": bool(machine_load.get("disturbed"))},
            )
