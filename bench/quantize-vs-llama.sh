#!/usr/bin/env bash
# End-to-end quantization benchmark: llama.cpp v0.5.0's llama-quantize (built here from the npm bundle's source) against
# kquant on the same synthetic >= 1 GB F16 llama model, alternating runs, same threads, with and without an imatrix.
# Writes bench/results/quantize-vs-llama.json (median wall times, ratio kquant/llama, peak RSS, output identity).
# Usage: bench/quantize-vs-llama.sh [--runs 3] [--threads 2] [--types Q4_K_M,Q6_K,Q8_0,IQ4_XS] [--layers 12]
#        [--rounding reference|optimal] [--output FILE]   (kquant with --rounding reference by default: same bytes, checked)
# Takes a while: building llama-quantize ~5 min (once), then ~1-2 min per run on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=$(scripts/build-reference-tools.sh --native | tail -1)   # llama.cpp built for this CPU (once, ~5 min)
dotnet build src/KQuant.Cli -c Release -v quiet -nologo >/dev/null
dotnet build bench/KQuant.Benchmarks -c Release -v quiet -nologo >/dev/null
dotnet bench/KQuant.Benchmarks/bin/Release/net10.0/KQuant.Benchmarks.dll quantize-vs-llama \
  --llama-quantize "$BIN/llama-quantize" \
  --kquant "$ROOT/src/KQuant.Cli/bin/Release/net10.0/KQuant.Cli.dll" \
  --vocab "$ROOT/samples/debdocs-tiny-F16.gguf" \
  --work "${KQUANT_BENCH_WORK:-/tmp/kquant-bench}" \
  --output "$ROOT/bench/results/quantize-vs-llama.json" "$@"
