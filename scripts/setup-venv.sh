#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install the project with the given extras (default: local,dev).
# torch is pinned: an unpinned torch pulls a multi-GB build from the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local,dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [[ ",$extras," == *",local,"* ]]; then
  .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
