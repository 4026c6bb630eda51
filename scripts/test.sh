#!/usr/bin/env bash
# The whole test suite, with everything it needs: the venv, OpenSSH's sshd (farm tests), PostgreSQL
# (shared-store tests) and Chromium (report browser tests), all from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = "0" ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup-venv.sh local,dev,openvino,postgres,browser,eval,llamacpp,serving
# llama.cpp (CPU) from the pinned llama-cpp-python sdist, built once and cached under .cache/llamacpp/
LLAMACPP_BIN="$(bash scripts/build_llamacpp.sh | tail -1)"
export LLAMACPP_BIN LLAMACPP_ROOT="$(dirname "$LLAMACPP_BIN")"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
