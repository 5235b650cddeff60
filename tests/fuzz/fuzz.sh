#!/usr/bin/env bash
# make fuzz: every harness built in BUILD_DIR, one after the other, for
# SECONDS each:   tests/fuzz/fuzz.sh BUILD_DIR SECONDS
# The corpus is tests/fuzz/corpus/NAME/ in the tree, and the inputs that
# reach new code are added there: commit those worth keeping (a corpus is
# minimised with `fuzz_NAME -merge=1 NEWDIR tests/fuzz/corpus/NAME`).  A
# crash, leak or timeout stops the run; its input is kept in
# BUILD_DIR/fuzz-artifacts/NAME/.  Prints execs per second per harness.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=$1 secs=$2
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
n_run=0
for b in "$build"/fuzz_*; do
  [ -x "$b" ] || continue
  n=${b##*/fuzz_}
  mkdir -p "tests/fuzz/corpus/$n" "$build/fuzz-artifacts/$n"
  dict=()
  [ -f "tests/fuzz/$n.dict" ] && dict=(-dict="tests/fuzz/$n.dict")
  before=$(ls "tests/fuzz/corpus/$n" | wc -l)
  echo "fuzz $n: ${secs}s over tests/fuzz/corpus/$n ($before inputs)"
  log="$build/fuzz-artifacts/$n.log"
  if ! "$b" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build/fuzz-artifacts/$n/" "${dict[@]}" "tests/fuzz/corpus/$n" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz $n: FAILED; the input is in $build/fuzz-artifacts/$n/ (log $log)" >&2
    exit 1
  fi
  after=$(ls "tests/fuzz/corpus/$n" | wc -l)
  execs=$(awk -F: '/^stat::number_of_executed_units/ {gsub(/ /, "", $4); print $4}' "$log")
  rate=$(awk -F: '/^stat::average_exec_per_sec/ {gsub(/ /, "", $4); print $4}' "$log")
  echo "fuzz $n: ok, $execs execs ($rate/s), corpus $before -> $after inputs"
  n_run=$((n_run + 1))
done
[ "$n_run" -gt 0 ] || { echo "fuzz: no harnesses in $build" >&2; exit 1; }
echo "fuzz: $n_run harnesses ran ${secs}s each without a failure"
