#!/usr/bin/env bash
# Runs KQuant's test suite: fetches the llama.cpp reference (npm registry) if needed, restores, builds, tests.
# Long comparisons (traits Category=Long and Category=Full) are left out unless KQUANT_LONG_TESTS=1; .ci/run runs them
# separately, within its time budget.
# Extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Quants").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/fetch-reference.sh >/dev/null
if [ "${KQUANT_LONG_TESTS:-0}" = 1 ] || [[ " $* " == *" --filter "* ]]; then
  dotnet test KQuant.slnx -c Release "$@"
else
  dotnet test KQuant.slnx -c Release --filter "Category!=Long&Category!=Full" "$@"
fi
