#!/usr/bin/env bash
# make bench: figures, not tests.  Each benchmark prints its own reference.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
for b in "$B"/bench_*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b"
  echo
done
for s in "$(dirname "$0")"/bench_*.sh; do
  echo "== $(basename "$s")"
  "$s" "$B"
  echo
done
