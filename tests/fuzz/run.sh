#!/usr/bin/env bash
# One harness as a regression run (ctest fuzz/NAME, make check-fuzz):
#   run.sh BINARY NAME ARTIFACT_DIR
# Runs BINARY over a copy of tests/fuzz/corpus/NAME (the tree is not
# written) for STAMP_FUZZ_SECONDS (default 15), with the dictionary
# tests/fuzz/NAME.dict when there is one.  Fails on a crash, a leak, a
# sanitizer report, a timeout (10 s per input) or an RSS over 2 GiB; the
# input that did it is kept in ARTIFACT_DIR/NAME/ and its path printed.
set -euo pipefail
bin=$1 name=$2 art=$3
src=${STAMP_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
secs=${STAMP_FUZZ_SECONDS:-15}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/corpus" "$art/$name"
if [ -d "$src/tests/fuzz/corpus/$name" ]; then
  cp -R "$src/tests/fuzz/corpus/$name/." "$tmp/corpus/"
fi
dict=()
[ -f "$src/tests/fuzz/$name.dict" ] && dict=(-dict="$src/tests/fuzz/$name.dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "fuzz/$name: $(ls "$tmp/corpus" | wc -l) seed(s), ${secs}s"
rc=0
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$art/$name/" "${dict[@]}" "$tmp/corpus" >"$tmp/log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
  cat "$tmp/log"
  echo "fuzz/$name: FAILED (exit $rc); the input is in $art/$name/:" >&2
  ls -t "$art/$name" | head -n 3 >&2
  exit 1
fi
grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^#[0-9]+.*DONE' "$tmp/log" || true
