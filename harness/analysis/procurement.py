"""Board comparison for procurement: per workload, rank boards on TTFT, decode tok/s, energy per
query, perf/W and perf/$, with accuracy when measured and the share of the memory-bandwidth
ceiling that decode reaches.

Every figure that is not a measurement says where it came from: price and bandwidth from the
devices file (or, for a board missing them, from a reference devices file's entry of the same
board type), weight bytes from the model's parameter count x bytes per weight of its precision,
power from the telemetry source the runner named. Emulated results (the ``reference`` backend's
board profiles) are flagged, and time-scaled ones are scaled back to board time before ranking.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from harness.store.base import BaseStore, RunRecord, StoreError

from ..errors import UsageError

# FACTS.md: "the true Qwen2.5-VL-3B dimensions (3.76 B parameters)"; devices.yaml deploys that model.
DEFAULT_N_PARAMETERS = 3.76e9
DEFAULT_MODEL_NOTE = "Qwen2.5-VL-3B, 3.76 B parameters (the model devices.yaml deploys; FACTS.md)"

# bytes per weight by precision name, matched as whole words in quantization / dtype / profile text
_PRECISION: Tuple[Tuple[str, float, str], ...] = (
    (r"\b(int4|q4\w*|w4a16|w4\w*|awq|gptq|4bit|nf4)\b", 0.5, "4-bit weights"),
    (r"\b(int8|q8\w*|w8a16|w8a8|w8\w*|8bit|fp8)\b", 1.0, "8-bit weights"),
    (r"\b(float16|fp16|half|bfloat16|bf16)\b", 2.0, "16-bit weights"),
    (r"\b(float32|fp32|float)\b", 4.0, "32-bit weights"),
)

# what each ranked column is, and which way is better
CRITERIA: Tuple[Tuple[str, str, bool], ...] = (
    ("ttft_ms", "TTFT (ms)", False),
    ("decode_tps", "decode tok/s", True),
    ("energy_j", "energy per query (J)", False),
    ("perf_per_w", "decode tok/s per W", True),
    ("perf_per_kusd", "decode tok/s per $1000", True),
    ("accuracy", "accuracy", True),
)


class CompareError(UsageError, ValueError):
    """Nothing to compare (no runs, no successful measurements); the message says what to do."""


@dataclass
class BoardFigures:
    device: str
    workload: str
    variant: str
    backend: str
    board_type: str
    run_id: str
    n: int  # measured, successful repetitions
    emulated: bool
    emulated_profile: str = ""
    time_scale: Optional[float] = None
    ttft_ms: Optional[float] = None
    decode_tps: Optional[float] = None
    e2e_ms: Optional[float] = None
    energy_j: Optional[float] = None
    avg_power_w: Optional[float] = None
    accuracy: Optional[float] = None
    energy_source: str = ""
    perf_per_w: Optional[float] = None
    price_usd: Optional[float] = None
    price_source: str = ""
    perf_per_kusd: Optional[float] = None
    bandwidth_gbps: Optional[float] = None
    bandwidth_source: str = ""
    weight_bytes: Optional[float] = None
    weight_note: str = ""
    ceiling_tps: Optional[float] = None
    roofline_pct: Optional[float] = None
    pareto: bool = False
    ranks: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    # what the board ran: boards are ranked only against boards that ran a comparable model
    model: str = ""
    n_parameters: Optional[float] = None
    random_weights: bool = False

    @property
    def label(self) -> str:
        return "%s / %s" % (self.device, self.variant)


@dataclass
class WorkloadComparison:
    workload: str
    boards: List[BoardFigures]  # best decode tok/s first
    headlines: List[Tuple[str, str]]  # (what, "board (value)") for the buyer's summary
    pareto: List[str]
    # the model class these boards ran ("" when every board of the workload ran a comparable model)
    group: str = ""
    caution: str = ""  # e.g. comparable sizes but different named models


@dataclass
class ProcurementReport:
    runs: List[RunRecord]
    workloads: List[WorkloadComparison]
    assumptions: List[str]
    emulated: bool
    emulated_devices: List[str]
    warnings: List[str] = field(default_factory=list)  # e.g. boards ran different models: ranked separately


def _median(values: Iterable[Any]) -> Optional[float]:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(float(v))]
    return float(np.median(numbers)) if numbers else None


def bytes_per_weight(*texts: Optional[str]) -> Optional[Tuple[float, str, str]]:
    """(bytes, what, matched text) for the first text naming a precision we know, else None."""
    for text in texts:
        if not text:
            continue
        lowered = str(text).lower()
        for pattern, size, what in _PRECISION:
            match = re.search(pattern, lowered)
            if match:
                return size, what, match.group(1)
    return None


def _device_config(inventories: Sequence[Any], name: str, board_type: str) -> Tuple[Optional[Any], str]:
    """The devices-file entry for a device: by name in the first inventory, else by board type in
    the later ones (a reference inventory), with a note saying which."""
    for index, inventory in enumerate(inventories):
        if inventory is None:
            continue
        for device in inventory.devices:
            if device.name == name:
                return device, "" if index == 0 else "from %s (same name)" % inventory.path
    for inventory in inventories[1:]:
        if inventory is None:
            continue
        for device in inventory.devices:
            if device.type == board_type and device.type != "local":
                return device, "from %s entry %r (same board type)" % (inventory.path, device.name)
    return None, ""


def _lookup(inventories: Sequence[Any], name: str, board_type: str, attr: str) -> Tuple[Optional[float], str]:
    """price_usd / memory_bandwidth_gbps: the device's own entry, else a reference entry of its type."""
    own, _ = _device_config(inventories[:1], name, board_type)
    if own is not None and getattr(own, attr, None) is not None:
        return float(getattr(own, attr)), "%s: %s" % (inventories[0].path, name)
    for inventory in inventories[1:]:
        if inventory is None:
            continue
        for device in inventory.devices:
            if device.type == board_type and getattr(device, attr, None) is not None:
                return float(getattr(device, attr)), "assumed from %s entry %r (same board type %s)" % (
                    inventory.path, device.name, board_type)
    return None, ""


_SCALED_MS = ("ttft_ms", "e2e_ms")


def _figures(records: List[Dict[str, Any]], run_id: str) -> Optional[BoardFigures]:
    ok = [r for r in records if r.get("status") == "ok" and not r.get("warmup")]
    if not ok:
        return None
    first = ok[0]
    prov = first.get("provenance") or {}
    extra = prov.get("backend_extra") or {}
    metrics = [r.get("metrics") or {} for r in ok]
    fig = BoardFigures(
        device=str(first["device"]), workload=str(first["workload"]), variant=str(first["variant"]),
        backend=str(first.get("backend", "")), board_type=str(prov.get("device_type", "") or ""),
        run_id=run_id, n=len(ok), emulated=bool(prov.get("emulated")),
        emulated_profile=str(prov.get("emulated_profile") or ""),
    )
    for name in ("ttft_ms", "decode_tps", "e2e_ms", "energy_j", "avg_power_w", "accuracy"):
        setattr(fig, name, _median(m.get(name) for m in metrics))
    sources = first.get("metric_sources") or {}
    fig.energy_source = str(sources.get("energy_j") or ("" if fig.energy_j is None else "not named by the runner"))
    scale = extra.get("time_scale")
    if fig.emulated and isinstance(scale, (int, float)) and scale > 0 and scale != 1:
        # a time-scaled emulation ran every phase `scale` times as long as the profile says: back to
        # board time, so the ranking and the ceiling compare the profile's figures, not the scale
        fig.time_scale = float(scale)
        for name in _SCALED_MS:
            value = getattr(fig, name)
            if value is not None:
                setattr(fig, name, value / scale)
        if fig.decode_tps is not None:
            fig.decode_tps *= scale
        if fig.energy_j is not None:  # the same power for 1/scale as long
            fig.energy_j /= scale
        fig.notes.append("time-scaled emulation (x%g): times, rates and energy scaled back to board time" % scale)
    if fig.decode_tps is not None and fig.avg_power_w:
        fig.perf_per_w = fig.decode_tps / fig.avg_power_w
    return fig


def _weights(fig: BoardFigures, prov: Mapping[str, Any], variant_quantization: Optional[str]) -> None:
    extra = prov.get("backend_extra") or {}
    n_params = prov.get("n_parameters") or extra.get("n_parameters")
    if isinstance(n_params, (int, float)) and n_params > 0:
        n_note = "%s parameters (provenance)" % size_text(float(n_params))
        n_params = float(n_params)
    else:
        n_params, n_note = DEFAULT_N_PARAMETERS, "assumed %s" % DEFAULT_MODEL_NOTE
    quant = prov.get("quantization")
    dtype = prov.get("dtype")
    candidates = [(q, "quantization %r" % q) for q in (quant, variant_quantization) if q and q != "none"]
    candidates += [(dtype, "dtype %r" % dtype)] if dtype and dtype != "n/a" else []
    if extra.get("profile_board"):
        candidates.append((extra["profile_board"], "the emulated profile's published figure (%s)" % extra["profile_board"]))
    for text, where in candidates:
        found = bytes_per_weight(text)
        if found:
            size, what, _ = found
            fig.weight_bytes = n_params * size
            fig.weight_note = "%s x %g byte(s) (%s, from %s); every weight read once per decoded token, " \
                              "KV cache and activations ignored" % (n_note, size, what, where)
            return
    fig.weight_note = "unknown precision (quantization %r, dtype %r): no ceiling" % (quant, dtype)


def _attach_accuracy(fig: BoardFigures, accuracy: AccuracyByVariant, run_order: Sequence[str]) -> None:
    for run_id in run_order:
        found = accuracy.get((run_id, fig.device, fig.variant))
        if found is not None:
            fig.accuracy = found[0]
            where = "this run" if run_id == fig.run_id else "run %s" % run_id
            fig.notes.append("accuracy %.1f%% on %d questions of %s (%s)" % (100 * found[0], found[2], found[1], where))
            return


_SIZE_IN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([BM])\b")


def _model_identity(fig: BoardFigures, prov: Mapping[str, Any]) -> None:
    """What the board ran: the published model of an emulated profile, else the model id; its
    parameter count (provenance, else a size in its name: "3B") and whether its weights are random."""
    extra = prov.get("backend_extra") or {}
    fig.random_weights = str(prov.get("weights") or "").startswith("random")
    if fig.emulated and extra.get("profile_board"):
        board = str(extra["profile_board"])
        inner = re.search(r"\(([^()]*)\)\s*$", board)
        fig.model = inner.group(1) if inner else board
    else:
        fig.model = str(prov.get("model_id") or prov.get("model_path") or fig.variant)
    n_params = prov.get("n_parameters") or extra.get("n_parameters")
    if isinstance(n_params, (int, float)) and not isinstance(n_params, bool) and n_params > 0:
        fig.n_parameters = float(n_params)
        return
    sized = _SIZE_IN_NAME.search(fig.model)
    if sized:
        fig.n_parameters = float(sized.group(1)) * (1e9 if sized.group(2) == "B" else 1e6)
    elif fig.emulated:
        # a profile that names no model emulates the model devices.yaml deploys
        fig.model = "%s; model assumed: %s" % (fig.model, DEFAULT_MODEL_NOTE.split(",")[0])
        fig.n_parameters = DEFAULT_N_PARAMETERS


def model_name(fig: BoardFigures) -> str:
    """The model's own name out of the model text ("ax-llm, Qwen2.5-VL-3B w8a16" -> "Qwen2.5-VL-3B")."""
    word = re.search(r"[\w.\-]*\d+(?:\.\d+)?[BM]\b", fig.model or "")
    if word:
        return word.group(0)
    return (fig.model or "unknown model").split()[0]


def size_text(n_parameters: Optional[float]) -> str:
    if not n_parameters:
        return "unknown size"
    if n_parameters >= 1e9:
        return "%.3g B" % (n_parameters / 1e9)
    return "%.3g M" % (n_parameters / 1e6)


def model_groups(figs: Sequence[BoardFigures]) -> List[Tuple[str, List[BoardFigures]]]:
    """Boards that ran comparable models: trained (or emulated) and random-weight models apart, and
    within each, parameter counts within a factor of 2 of the group's smallest. One group: label ""."""
    groups: List[Tuple[str, List[BoardFigures]]] = []
    for random_weights in (False, True):
        members = sorted((f for f in figs if f.random_weights == random_weights and f.n_parameters),
                         key=lambda f: f.n_parameters or 0.0)
        cluster: List[BoardFigures] = []
        for f in members + [None]:  # type: ignore[list-item]
            if cluster and (f is None or (f.n_parameters or 0) > 2 * (cluster[0].n_parameters or 0)):
                low, high = cluster[0].n_parameters, cluster[-1].n_parameters
                size = size_text(low)
                if size_text(high) != size:  # "3-3.76 B" (the same unit) or "400 M-1.2 B"
                    same_unit = size.split()[-1] == size_text(high).split()[-1]
                    size = "%s-%s" % (size.split()[0] if same_unit else size, size_text(high))
                groups.append(("%s-parameter models%s" % (size, " with random weights" if random_weights else ""), cluster))
                cluster = []
            if f is not None:
                cluster.append(f)
        unknown = [f for f in figs if f.random_weights == random_weights and not f.n_parameters]
        if unknown:
            groups.append(("models of unknown size%s" % (" with random weights" if random_weights else ""), unknown))
    if len(groups) == 1:
        return [("", groups[0][1])]
    return groups


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[bool]:
    """True for points no other point beats on both (lower is better on both axes)."""
    out = []
    for i, (x, y) in enumerate(points):
        dominated = any((a <= x and b <= y) and (a < x or b < y) for j, (a, b) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def _fmt(value: Optional[float], unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    text = "%.0f" % value if abs(value) >= 100 else ("%.1f" % value if abs(value) >= 10 else "%.3g" % value)
    return text + unit


# (run id, device, variant) -> (accuracy, task, number of questions) of that run's accuracy suite
AccuracyByVariant = Mapping[Tuple[str, str, str], Tuple[float, str, int]]


def compare_boards(store: BaseStore, run_ids: Sequence[str], devices_inventory: Any,
                   reference_inventory: Any = None,
                   accuracy: Optional[AccuracyByVariant] = None) -> ProcurementReport:
    """The comparison over ``run_ids`` (a device in several runs: its newest run counts).

    ``devices_inventory`` is a loaded devices file (:func:`harness.config.devices.load_devices`);
    ``reference_inventory`` optionally supplies price and bandwidth by board type for devices
    whose own entry lacks them (e.g. the emulated farm's file against the real devices.yaml).
    ``accuracy`` (from ``results/accuracy.sqlite``) gives each deployed variant's accuracy: from
    the same run when it answered a task, else from the newest of ``run_ids`` that did.
    """
    if not run_ids:
        raise CompareError("give at least one run id to compare (bench results list shows them)")
    try:
        runs = [store.get_run(r) for r in run_ids]
    except StoreError as exc:
        raise CompareError(str(exc)) from None
    runs.sort(key=lambda r: r.created_at)
    inventories = [devices_inventory, reference_inventory]
    newest: Dict[Tuple[str, str, str], Tuple[RunRecord, List[Dict[str, Any]]]] = {}
    for run in runs:  # oldest first: a newer run replaces an older one's figures
        grouped: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
        for record in store.measurements(run.run_id):
            grouped.setdefault((record["device"], record["workload"], record["variant"]), []).append(record)
        for key, records in grouped.items():
            newest[key] = (run, records)
    boards: Dict[str, List[BoardFigures]] = {}
    assumptions: List[str] = []
    for (device, workload, variant), (run, records) in sorted(newest.items()):
        fig = _figures(records, run.run_id)
        if fig is None:
            continue
        ok = next(r for r in records if r.get("status") == "ok" and not r.get("warmup"))
        prov = ok.get("provenance") or {}
        config, _ = _device_config(inventories, device, fig.board_type)
        if config is not None and not fig.board_type:
            fig.board_type = config.type
        variant_quant = None
        if config is not None:
            for model in config.models:
                if model.variant == variant:
                    variant_quant = model.quantization
        fig.price_usd, fig.price_source = _lookup(inventories, device, fig.board_type, "price_usd")
        fig.bandwidth_gbps, fig.bandwidth_source = _lookup(inventories, device, fig.board_type,
                                                           "memory_bandwidth_gbps")
        if fig.price_usd and fig.decode_tps is not None:
            fig.perf_per_kusd = fig.decode_tps / fig.price_usd * 1000.0
        _weights(fig, prov, variant_quant)
        _model_identity(fig, prov)
        if fig.accuracy is None and accuracy:
            _attach_accuracy(fig, accuracy, [run.run_id] + [r.run_id for r in reversed(runs)])
        if fig.weight_bytes and fig.bandwidth_gbps:
            fig.ceiling_tps = fig.bandwidth_gbps * 1e9 / fig.weight_bytes
            if fig.decode_tps is not None:
                fig.roofline_pct = 100.0 * fig.decode_tps / fig.ceiling_tps
        boards.setdefault(workload, []).append(fig)

    if not boards:
        raise CompareError("no successful measured repetitions in run(s) %s" % ", ".join(run_ids))
    comparisons: List[WorkloadComparison] = []
    warnings: List[str] = []
    for workload in sorted(boards):
        groups = model_groups(boards[workload])
        if len(groups) > 1:
            warnings.append(
                "workload %s: %s. Each group has its own ranking table; no board is ranked against a board "
                "of another group." % (workload, "; ".join(
                    "%s ran %s" % (", ".join(f.label for f in figs), label) for label, figs in groups)))
        for group, figs in groups:
            comparisons.append(_rank(workload, group, figs))
    return _finish(runs, comparisons, assumptions, warnings)


def _rank(workload: str, group: str, figs: List[BoardFigures]) -> WorkloadComparison:
    """Ranks, Pareto front and headlines among boards that ran comparable models."""
    for key, _label, higher in CRITERIA:
        ranked = sorted((f for f in figs if getattr(f, key) is not None),
                        key=lambda f: getattr(f, key), reverse=higher)
        for index, f in enumerate(ranked):
            f.ranks[key] = index + 1
    both = [f for f in figs if f.e2e_ms is not None and f.energy_j is not None]
    for f, optimal in zip(both, pareto_front([(f.e2e_ms, f.energy_j) for f in both])):  # type: ignore[misc]
        f.pareto = optimal
    figs.sort(key=lambda f: (f.ranks.get("decode_tps", 99), f.label))
    headlines: List[Tuple[str, str]] = []
    for key, label, _higher in CRITERIA:
        best = [f for f in figs if f.ranks.get(key) == 1]
        if best:
            unit = {"ttft_ms": " ms", "energy_j": " J"}.get(key, "")
            headlines.append(("best %s" % label, "%s (%s)" % (best[0].label, _fmt(getattr(best[0], key), unit))))
        else:
            headlines.append(("best %s" % label, "not measured"))
    names = sorted({model_name(f) for f in figs})
    caution = ""
    if len(names) > 1:
        caution = ("these boards ran different models of a similar size (%s): each board's figures are for "
                   "its own model" % "; ".join(names))
    return WorkloadComparison(workload, figs, headlines, [f.label for f in figs if f.pareto], group, caution)


def _finish(runs: List[RunRecord], comparisons: List[WorkloadComparison], assumptions: List[str],
            warnings: List[str]) -> ProcurementReport:
    everything = [f for c in comparisons for f in c.boards]
    for note in sorted({f.weight_note for f in everything if f.weight_note}):
        assumptions.append("weight bytes: " + note)
    for f in everything:
        if f.price_source.startswith("assumed"):
            assumptions.append("price of %s: $%s %s" % (f.device, _fmt(f.price_usd), f.price_source))
        if f.bandwidth_source.startswith("assumed"):
            assumptions.append("memory bandwidth of %s: %s GB/s %s" % (f.device, _fmt(f.bandwidth_gbps),
                                                                       f.bandwidth_source))
        if f.energy_source:
            assumptions.append("power of %s: %s" % (f.device, f.energy_source))
        elif f.energy_j is None:
            assumptions.append("power of %s: not measured (no power source on this run): no energy, no perf/W"
                               % f.device)
    emulated_devices = sorted({f.device for f in everything if f.emulated})
    if any(f.time_scale for f in everything):
        assumptions.append("time-scaled emulated runs were scaled back to board time (times / scale, "
                           "rates x scale, energy / scale at the same power)")
    return ProcurementReport(runs=runs, workloads=comparisons, assumptions=list(dict.fromkeys(assumptions)),
                             emulated=bool(emulated_devices), emulated_devices=emulated_devices, warnings=warnings)
