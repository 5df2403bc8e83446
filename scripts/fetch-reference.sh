#!/usr/bin/env bash
# Fetches llama.cpp v0.5.0 (the reference KQuant is measured against) from the npm registry into .cache/reference:
#   bins/   prebuilt CPU libraries (@node-llama-cpp/linux-x64@3.22.1): libggml-base.so, libllama.v0.5.0.so, ...
#   src/    the release's source (git bundle inside node-llama-cpp@3.22.1), used by benchmarks that build llama-quantize.
# Usage: scripts/fetch-reference.sh [--source]      Cheap when already present. Tests skip what they cannot find.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${KQUANT_REFERENCE_CACHE:-$ROOT/.cache/reference}
mkdir -p "$DEST"
cd "$DEST"
if [ ! -f bins/package/bins/linux-x64/libggml-base.so ]; then
  rm -rf bins && mkdir bins
  npm pack -q --pack-destination "$DEST" @node-llama-cpp/linux-x64@3.22.1 >/dev/null
  tar xzf node-llama-cpp-linux-x64-3.22.1.tgz -C bins && rm -f node-llama-cpp-linux-x64-3.22.1.tgz
fi
if [ "${1:-}" = "--source" ] && [ ! -d src/llama.cpp ]; then
  rm -rf src && mkdir src
  npm pack -q --pack-destination "$DEST" node-llama-cpp@3.22.1 >/dev/null
  tar xzf node-llama-cpp-3.22.1.tgz -C src && rm -f node-llama-cpp-3.22.1.tgz
  git clone -q src/package/llama/gitRelease.bundle src/llama.cpp
fi
echo "reference libraries: $DEST/bins/package/bins/linux-x64"
