#!/usr/bin/env bash
# The main job on this machine: build a random-weight Qwen2.5-VL (no download), time the 8-frame
# video suite on the CPU, store the results and write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh local
.venv/bin/bench run --suite video-8f --devices local
.venv/bin/bench report latest
echo "open reports/$(ls -t reports | grep -v '^\.' | head -n 1)/index.html"
