"""Timestamps -> metrics, in one place, exactly as ARCHITECTURE.md defines them."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from .backends.base import RawTiming
from .clock import ns_to_ms


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Linear-interpolation percentile (numpy's default method), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(math.floor(rank))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _span_ms(start: Optional[int], end: Optional[int]) -> Optional[float]:
    if start is None or end is None:
        return None
    return ns_to_ms(end - start)


def compute_metrics(raw: RawTiming) -> "tuple[Dict[str, Optional[float]], List[float], List[str]]":
    """Return (metrics, every inter-token gap in ms, warnings)."""
    warnings: List[str] = []
    tokens = raw.token_times
    first = tokens[0] if tokens else raw.t_first_token
    last = tokens[-1] if tokens else raw.t_last_token
    itl = [ns_to_ms(b - a) for a, b in zip(tokens, tokens[1:])]
    metrics: Dict[str, Optional[float]] = {
        "preprocess_ms": _span_ms(raw.t_start, raw.t_preprocess_end),
        "vision_encode_ms": _span_ms(raw.t_vision_start, raw.t_vision_end),
        # the LLM's share of the first forward: from the vision tower's end (or the end of
        # preprocessing for text-only work) to the first token's logits
        "prefill_ms": _span_ms(
            raw.t_vision_end if raw.t_vision_end is not None else raw.t_preprocess_end, first
        ),
        "ttft_ms": _span_ms(raw.t_start, first),
        "e2e_ms": _span_ms(raw.t_start, last),
        "decode_tps": None,
        "tpot_ms": None,
        "itl_p50_ms": percentile(itl, 50),
        "itl_p90_ms": percentile(itl, 90),
        "itl_p99_ms": percentile(itl, 99),
        "n_input_tokens": raw.n_input_tokens,
        "n_visual_tokens": raw.n_visual_tokens,
        "n_output_tokens": raw.n_output_tokens,
        "peak_accel_mb": raw.peak_accel_mb,
    }
    n_timed = len(tokens) if tokens else raw.n_output_tokens
    if n_timed >= 2 and last is not None and first is not None and last > first:
        decode_s = (last - first) / 1e9
        metrics["decode_tps"] = (n_timed - 1) / decode_s
        metrics["tpot_ms"] = decode_s * 1000.0 / (n_timed - 1)
        if not tokens:
            warnings.append("decode rate from the first and last token times: no inter-token gaps")
    else:
        warnings.append("fewer than two output tokens were timed: no decode rate")
    if tokens and len(tokens) != raw.n_output_tokens:
        warnings.append(
            "backend reported %d output tokens but timed %d" % (raw.n_output_tokens, len(tokens))
        )
    order = [
        ("start", raw.t_start),
        ("preprocess end", raw.t_preprocess_end),
        ("vision start", raw.t_vision_start),
        ("vision end", raw.t_vision_end),
        ("first token", first),
    ]
    known = [(name, t) for name, t in order if t is not None]
    for (name_a, a), (name_b, b) in zip(known, known[1:]):
        if b < a:
            warnings.append("phase timestamps out of order: %s after %s" % (name_a, name_b))
    return metrics, itl, warnings
