#!/usr/bin/env bash
# Perplexity speed: llama.cpp v0.5.0's llama-perplexity (built here from the npm bundle's source, once for this CPU and
# once for AVX2) against `kquant perplexity`, same model, text, context, chunks and threads, runs in rotating order. Models: the shared
# debdocs-llama-10m in F16 and Q4_K_M (quantized by kquant), and a 1.1 GB synthetic F16 llama (n_embd 2048, 12 layers)
# with its Q4_K_M, where memory traffic matters as in real models.
# Writes bench/results/perplexity-vs-llama.json.
# Usage: bench/perplexity-vs-llama.sh [--runs 3] [--threads 2] [--chunks 8] [--context 512]
# Takes a while: building llama-perplexity ~5 min (once), then a few minutes per model.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SHARED=$(cd "$ROOT/.." && pwd)/shared
WORK=${KQUANT_BENCH_WORK:-/tmp/kquant-bench}
mkdir -p "$WORK"
BIN=$(scripts/build-reference-tools.sh --native | tail -1)   # llama.cpp built for this CPU (once, ~5 min)
AVX2_BIN=$(scripts/build-reference-tools.sh | tail -1)       # and for AVX2, as the reference KQuant reproduces
dotnet build src/KQuant.Cli -c Release -v quiet -nologo >/dev/null
dotnet build bench/KQuant.Benchmarks -c Release -v quiet -nologo >/dev/null
KQUANT="$ROOT/src/KQuant.Cli/bin/Release/net10.0/KQuant.Cli.dll"
BENCH="dotnet bench/KQuant.Benchmarks/bin/Release/net10.0/KQuant.Benchmarks.dll"

MODELS=()
F16="$SHARED/models/debdocs/debdocs-llama-10m-F16.gguf"
if [ -f "$F16" ]; then
  [ -f "$WORK/debdocs-llama-10m-Q4_K_M.gguf" ] || dotnet "$KQUANT" quantize "$F16" "$WORK/debdocs-llama-10m-Q4_K_M.gguf" Q4_K_M >/dev/null
  MODELS+=(--model "$F16" --model "$WORK/debdocs-llama-10m-Q4_K_M.gguf")
fi
BIG="$WORK/synthetic-2048x5632x12-F16.gguf"
if [ ! -f "$BIG" ]; then
  # quantize-vs-llama writes this model; write it the same way (a 1-type, 1-run pass is enough to create it).
  $BENCH quantize-vs-llama --llama-quantize "$BIN/llama-quantize" --kquant "$KQUANT" --vocab "$ROOT/samples/debdocs-tiny-F16.gguf" \
    --work "$WORK" --output "$WORK/unused.json" --types Q8_0 --runs 0 >/dev/null 2>&1 || true
fi
if [ -f "$BIG" ]; then
  [ -f "$WORK/synthetic-Q4_K_M.gguf" ] || dotnet "$KQUANT" quantize "$BIG" "$WORK/synthetic-Q4_K_M.gguf" Q4_K_M >/dev/null
  MODELS+=(--model "$BIG" --model "$WORK/synthetic-Q4_K_M.gguf")
fi
TEXT="$SHARED/text/debdocs-val.txt"
[ -f "$TEXT" ] || TEXT="$ROOT/samples/debdocs-val-excerpt.txt"
$BENCH perplexity-vs-llama --llama native="$BIN/llama-perplexity" --llama avx2="$AVX2_BIN/llama-perplexity" --kquant "$KQUANT" --text "$TEXT" \
  "${MODELS[@]}" --output "$ROOT/bench/results/perplexity-vs-llama.json" "$@"
