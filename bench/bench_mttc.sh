#!/usr/bin/env bash
# MTTC overhead (seed 004's target: < 2 min): mttc/verify's eight steps with
# a pipeline whose own compute is tiny (scenarios=1, months=1), against the
# reference of running the same pipeline directly (init + run, no stampd),
# measured here in the same run.  The difference is what stamp adds: the
# namespace, bundle fetch and hash check, two supervised pods, comparing,
# and the cleanup reap with its diagnostics archive.
# Usage: bench/bench_mttc.sh BUILD_DIR   (TRIALS=N, BUNDLE_MB=M)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
TRIALS=${TRIALS:-10}
MB=${BUNDLE_MB:-8}
"$B/stampd" --data-dir "$T/data" --listen 127.0.0.1:$API --frontdoor-listen 127.0.0.1:$FDP \
  --set "pod-command=$B/stamp-nsworker" --set "pipeline-command=$B/stamp-pipeline" >"$T/stampd.log" 2>&1 &
SD=$!
cleanup() {
  kill -TERM $SD 2>/dev/null; wait $SD 2>/dev/null || true
  pkill -f "haproxy.*$T" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM
wait_api
export STAMP_TOKEN
STAMP_TOKEN=$("$CTL" token create --tenant bench --user bench 2>/dev/null)
head -c $((MB << 20)) /dev/urandom >"$T/model.bin"
H=$("$CTL" bundle push "$T/model.bin" -o json | jq -r .hash)
"$CTL" ns create mttc-bench >/dev/null
"$CTL" ns run livecalc-bucket-mttc-bench --bundle "$H" --set scenarios=1 --set months=1 >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now_ms() { date +%s%3N; }

echo "-- $TRIALS trials, ${MB} MiB bundle, pipeline scenarios=1 months=1"
: >"$T/direct"; : >"$T/verify"; : >"$T/steps"
echo '{"scenarios":1,"months":1}' >"$T/cfg.json"
for i in $(seq "$TRIALS"); do
  w=$T/direct-$i; mkdir -p "$w"
  t0=$(now_ms)
  "$B/stamp-pipeline" init "$w" "$T/model.bin" >/dev/null
  "$B/stamp-pipeline" run "$w" "$T/cfg.json" "$w/out" >/dev/null
  echo $(( $(now_ms) - t0 )) >>"$T/direct"
  "$CTL" mttc verify --bucket mttc-bench --bundle "$H" -o json >"$T/v.json"
  jq -e .success "$T/v.json" >/dev/null || { echo "verify failed: $(jq -r .message "$T/v.json")"; exit 1; }
  jq -r '.duration_seconds * 1000 | floor' "$T/v.json" >>"$T/verify"
  jq -c .steps "$T/v.json" >>"$T/steps"
done
d=$(median <"$T/direct"); v=$(median <"$T/verify")
echo "  pipeline directly (reference):  median ${d} ms"
echo "  mttc/verify, all eight steps:   median ${v} ms   (worst $(sort -n "$T/verify" | tail -n1) ms)"
echo "  overhead stamp adds:            $(echo "$v - $d" | bc) ms"
for k in namespace_create_seconds bundle_fetch_seconds bundle_verify_seconds pipeline_init_seconds execute_seconds cleanup_seconds; do
  printf '    %-26s median %7.1f ms\n' "$k" "$(jq ".$k * 1000" "$T/steps" | median)"
done
echo "  against seed 004's 120 s target: $(echo "scale=5; $v / 120000" | bc) of the budget"
