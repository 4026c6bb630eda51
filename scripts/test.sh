#!/usr/bin/env bash
# The whole test suite, with everything it needs: the venv, OpenSSH's sshd (farm tests), PostgreSQL
# (shared-store tests) and Chromium (report browser tests), all from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# llama.cpp (CPU) from the pinned llama-cpp-python sdist, built once and cached under .cache/llamacpp/.
# The build is CPU-bound (~12 min on 2 cores the first time) and the package installs below are
# mostly downloads and unpacking, so the build starts first and runs beside them (with the
# system's pip for the sdist download: the venv's is being made meanwhile).
build_out="$(mktemp)"
build_err="$(mktemp)"
build_pid=""
if command -v pip >/dev/null 2>&1; then
  PIP="$(command -v pip)" bash scripts/build_llamacpp.sh >"$build_out" 2>"$build_err" &
  build_pid=$!
fi
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
if [ -n "$build_pid" ] && wait "$build_pid"; then
  cat "$build_err" >&2
  LLAMACPP_BIN="$(tail -1 "$build_out")"
else
  # no system pip, or the early build failed (shown): once more, in order, with the venv's pip
  [ -z "$build_pid" ] || { echo "llama.cpp build beside the installs failed; retrying:" >&2; cat "$build_err" >&2; }
  LLAMACPP_BIN="$(bash scripts/build_llamacpp.sh | tail -1)"
fi
rm -f "$build_out" "$build_err"
export LLAMACPP_BIN LLAMACPP_ROOT="$(dirname "$LLAMACPP_BIN")"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
