#!/usr/bin/env bash
# Rebuild tests/backends/fixtures/openvino_tiny_qwen2_5_vl: a tiny random-weight Qwen2.5-VL
# (`bench models make --preset tiny`, seed 0) exported to OpenVINO IR (fp32 weights, ~2.3 MB).
#
# optimum-intel's pins fight the main environment (it wants transformers <= 5.0 for the Qwen-VL
# export), so the export runs in its own venv (EXPORT_VENV, default .venv-ov-export), made here
# on first use with the versions that were tried together (FACTS.md). The random-weight model is
# built with the project's own `bench` (BENCH, default .venv/bin/bench).
#
# usage: scripts/export_openvino_fixture.sh [OUT_DIR [HF_MODEL_DIR]]
# With HF_MODEL_DIR, that checkpoint is exported instead of a fresh random-weight model, e.g.
#   scripts/export_openvino_fixture.sh tests/fixtures/canary_openvino tests/fixtures/canary
# Took ~35 s on a 2-core x86 machine once the export venv existed (its first install takes a few
# minutes: torch is pinned to the same wheel as the main venv).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-tests/backends/fixtures/openvino_tiny_qwen2_5_vl}"
model="${2:-}"
venv="${EXPORT_VENV:-.venv-ov-export}"
bench="${BENCH:-.venv/bin/bench}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/optimum-cli" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1 "transformers==5.0.0" \
    "huggingface_hub<1.22" "optimum==2.3.0" "openvino==2026.4.1" "openvino-tokenizers==2026.4.1.0" \
    nncf requests
  # --no-deps: its declared pins would downgrade what the lines above chose
  "$venv/bin/python" -m pip install --quiet --no-deps "optimum-intel==2.2.0"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "$model" ]; then
  hf="$(cd "$model" && pwd)"
else
  "$bench" models make --arch qwen2.5-vl --preset tiny --out "$work/hf"
  hf="$work/hf"
fi
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/optimum-cli" export openvino --model "$hf" \
  --task image-text-to-text --weight-format fp32 "$work/ir" >"$work/export.log" 2>&1 \
  || { tail -40 "$work/export.log"; exit 1; }
# the marker travels with the IR: results measured on it are labelled random-weight
if [ -f "$hf/edge_vlm_bench_model.json" ]; then cp "$hf/edge_vlm_bench_model.json" "$work/ir/"; fi
rm -rf "$out"
mkdir -p "$(dirname "$out")"
cp -r "$work/ir" "$out"
du -sh "$out"
