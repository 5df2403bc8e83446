#!/usr/bin/env bash
# Runs KQuant's test suite: fetches the llama.cpp reference (npm registry) if needed, restores, builds, tests.
# Extra arguments go to `dotnet test` (e.g. --filter "Category!=Long").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/fetch-reference.sh >/dev/null
dotnet test KQuant.slnx -c Release "$@"
