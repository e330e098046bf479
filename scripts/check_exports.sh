#!/usr/bin/env bash
# Fails unless every dynamic symbol the shared library defines is a public shale_* name.
set -euo pipefail
lib=${1:?usage: check_exports.sh libshale.so}
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^shale_' || true)
count=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/' | grep -c ' shale_' || true)
if [ -n "$bad" ]; then
  echo "check_exports: $lib exports non-shale symbols:"; echo "$bad"; exit 1
fi
if [ "$count" -eq 0 ]; then
  echo "check_exports: $lib exports no shale_* symbols"; exit 1
fi
echo "check_exports: $count shale_* symbols, nothing else"
