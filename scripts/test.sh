#!/usr/bin/env bash
# The whole test suite, with everything it needs: the venv, and OpenSSH's sshd for the farm tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v /usr/sbin/sshd >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
  fi
fi
bash scripts/setup-venv.sh local,dev,openvino
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
