#!/usr/bin/env bash
# Build llama.cpp's CPU tools from the tree vendored in the llama-cpp-python sdist (a pinned PyPI
# package: the only way this project reaches llama.cpp's source), and cache them by version:
#
#   .cache/llamacpp/<version>/bin/{llama-mtmd-cli,llama-bench,llama-quantize,llama-server}
#   .cache/llamacpp/<version>/src/   the vendored tree (convert_hf_to_gguf.py, gguf-py) for conversion
#
# A second run with the same version does nothing (a developer pays the ~6 min build on 2 cores once).
# Prints the bin directory on its last line. Needs cmake, a C++ compiler and pip (the project venv's).
#
#   bash scripts/build_llamacpp.sh                 # version pinned below
#   LLAMA_CPP_PYTHON_VERSION=0.3.36 JOBS=8 bash scripts/build_llamacpp.sh
#
# On a board (the runner needs only llama-mtmd-cli): take the same tree (this script's
# .cache/llamacpp/<version>/src, copied over, or the sdist unpacked there) and build natively:
#   CPU (Raspberry Pi, RK3588, x86):
#     cmake -S src -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF
#     cmake --build build -j"$(nproc)" --target llama-mtmd-cli llama-bench
#   Jetson (JetPack's CUDA): add -DGGML_CUDA=ON (and -DCMAKE_CUDA_ARCHITECTURES=87 on Orin, 72 on
#     Xavier) to the first command; the backend's gpu_layers option then passes -ngl.
# then point the llamacpp backend's `cli` option at build/bin/llama-mtmd-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
jobs="${JOBS:-2}"
targets=(llama-mtmd-cli llama-bench llama-quantize llama-server)
root="$PWD/.cache/llamacpp/$version"
bin="$root/bin"
pip="${PIP:-$PWD/.venv/bin/pip}"
[ -x "$pip" ] || pip="pip"

complete=1
for t in "${targets[@]}"; do [ -x "$bin/$t" ] || complete=0; done
if [ "$complete" = 1 ] && [ -f "$root/src/convert_hf_to_gguf.py" ]; then
  echo "$bin"
  exit 0
fi

work="$root.partial"
rm -rf "$work"
mkdir -p "$work/sdist"
start=$(date +%s)
"$pip" download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$work/sdist" >&2
tar -xzf "$work/sdist"/llama_cpp_python-"$version".tar.gz -C "$work/sdist"
mv "$work/sdist/llama_cpp_python-$version/vendor/llama.cpp" "$work/src"
rm -rf "$work/sdist"
# Release, CPU, static (the bin directory is self-contained), no curl (no downloads at run time),
# native instructions (the machine that builds is the machine that runs, as on a board)
cmake -S "$work/src" -B "$work/build" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON >"$work/cmake.log" 2>&1 \
  || { tail -40 "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" -j"$jobs" --target "${targets[@]}" >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; exit 1; }
mkdir -p "$work/bin"
for t in "${targets[@]}"; do cp "$work/build/bin/$t" "$work/bin/"; done
rm -rf "$work/build"
echo "llama.cpp from llama-cpp-python $version built in $(( $(date +%s) - start )) s" | tee "$work/BUILD_TIME" >&2
rm -rf "$root"
mv "$work" "$root"
echo "$bin"
