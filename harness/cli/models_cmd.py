"""`bench models make|quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from ..errors import install_hint
from .app import models_app
from .common import EXIT_CONFIG, EXIT_MISSING, err, fail


@models_app.command("make")
def models_make(
    arch: str = typer.Option("qwen2.5-vl", "--arch", help="qwen2.5-vl or qwen2-vl."),
    preset: str = typer.Option("small", "--preset", help="tiny, small or 3b."),
    out: Path = typer.Option(..., "--out", help="Directory to write the model into."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build a real architecture with random weights and an offline tokenizer (no download)."""
    if arch not in ("qwen2.5-vl", "qwen2-vl"):
        raise fail("unknown arch %r; use qwen2.5-vl or qwen2-vl" % arch, EXIT_CONFIG)
    if preset not in ("tiny", "small", "3b"):
        raise fail("unknown preset %r; use tiny, small or 3b" % preset, EXIT_CONFIG)
    try:
        from ..models import make_model
    except ImportError as exc:
        raise fail("bench models make needs torch and transformers (%s); %s" % (exc, install_hint("local")),
                   EXIT_MISSING) from None
    made = make_model(arch, preset, out, seed=seed)
    err.print("built %s (%s preset, %.1f M parameters, random weights) in %.1f s at %s"
              % (made.arch, made.preset, made.n_parameters / 1e6, made.seconds, made.path), markup=False)


@models_app.command("quantize")
def models_quantize(
    source: Path = typer.Option(..., "--model", help="A transformers model directory (torchao methods) or an "
                                                      "OpenVINO IR directory (nncf methods)."),
    method: List[str] = typer.Option(["int8-dynamic", "int4-weight"], "--method",
                                     help="int8-dynamic, int8-weight or int4-weight (torchao, transformers "
                                          "dir); nncf-int8 or nncf-int4 (NNCF, OpenVINO IR dir); repeatable."),
    out: Path = typer.Option(..., "--out", help="Directory; each variant goes to OUT/METHOD."),
) -> None:
    """Make quantized variants of a model with real tools (torchao, NNCF), for accuracy-vs-speed suites."""
    from ..models.quantize import METHOD_INPUTS, METHODS, NNCF_METHODS, check_method_input, quantize_variants

    unknown = [m for m in method if m not in METHODS]
    if unknown:
        raise fail("unknown method(s) %s; methods: %s" % (
            ", ".join(unknown), "; ".join("%s (%s)" % (m, METHOD_INPUTS[m]) for m in METHODS)), EXIT_CONFIG)
    for name in method:
        try:
            check_method_input(source, name)
        except FileNotFoundError as exc:
            raise fail(str(exc), EXIT_MISSING) from None
        except ValueError as exc:
            raise fail(str(exc), EXIT_CONFIG) from None
    try:
        results = quantize_variants(source, method, out)
    except ImportError as exc:
        extra = "openvino" if any(m in NNCF_METHODS for m in method) else "eval"
        raise fail("bench models quantize: %s; %s" % (exc, install_hint(extra)), EXIT_MISSING) from None
    for result in results:
        what = "IR files compressed" if result.method in NNCF_METHODS else "modules quantized"
        err.print("%s: %s (%d %s, %.1f MB of weights from %.1f MB, %.1f s)"
                  % (result.method, result.path, len(result.quantized_modules), what, result.weights_bytes / 1e6,
                     result.source_bytes / 1e6, result.seconds), markup=False)
