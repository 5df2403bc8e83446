#!/usr/bin/env bash
# KQuant's main job on the bundled sample model: quantize it with several llama.cpp recipes, evaluate each (size, weight
# error, and on the bundled text perplexity and KL divergence against the original), print the table.
# Usage: scripts/demo.sh [MODEL.gguf] [extra `kquant evaluate` options]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=${1:-samples/debdocs-tiny-F16.gguf}
shift || true
dotnet build src/KQuant.Cli -c Release -v quiet -nologo >/dev/null
KQUANT="dotnet src/KQuant.Cli/bin/Release/net10.0/KQuant.Cli.dll"
$KQUANT inspect "$MODEL"
echo
if [ "$MODEL" = samples/debdocs-tiny-F16.gguf ]; then
  # The sample's own held-out text, at the context its model card measures with.
  $KQUANT evaluate "$MODEL" --text samples/debdocs-val-excerpt.txt -c 256 "$@"
else
  $KQUANT evaluate "$MODEL" "$@"
fi
