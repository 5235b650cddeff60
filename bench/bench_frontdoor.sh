#!/usr/bin/env bash
# The front door and the health controller, measured (figures, not tests):
#   1. requests per second through HAProxy to a stamp, against the same
#      workload hit directly and against HAProxy's own static reply;
#   2. failure -> out of rotation over many trials, against
#      unhealthyThreshold x interval (kill -9: the replica is gone; SIGSTOP:
#      a hung replica only the http check can see);
#   3. last connection -> Ready over many trials.
# Usage: bench/bench_frontdoor.sh BUILD_DIR   (TRIALS=N, LOAD_SECONDS=S)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
TRIALS=${TRIALS:-10}
SECS=${LOAD_SECONDS:-3}
INTERVAL_MS=100; UNHEALTHY=3
"$B/stampd" --data-dir "$T/data" --listen 127.0.0.1:$API --frontdoor-listen 127.0.0.1:$FDP \
  --set health-interval=${INTERVAL_MS}ms --set health-unhealthy-threshold=$UNHEALTHY --set probe-timeout=200ms \
  --set drain-poll-interval=20ms --set frontdoor-sync-interval=200ms --set fleet-min-regions=0 \
  --set health-recovery-grace=1s --set health-max-retries=100 --set port-range=32000-32199 >"$T/stampd.log" 2>&1 &
SD=$!
cleanup() {
  for s in $("$CTL" list -o json 2>/dev/null | jq -r '.items[] | select(.status.phase != "Deleted") | .metadata.name'); do
    "$CTL" delete "$s" --force --skip-fleet-check >/dev/null 2>&1 || true
  done
  for s in $("$CTL" list -o json 2>/dev/null | jq -r '.items[].metadata.name'); do
    "$CTL" wait --for=deleted "$s" --timeout 30s >/dev/null 2>&1 || true
  done
  owner=$(sed -n 's/.*owner \([0-9a-f]*\).*/\1/p' "$T/stampd.log" | head -n1)
  kill -TERM $SD 2>/dev/null; wait $SD 2>/dev/null || true
  for d in /proc/[0-9]*; do
    tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "STAMPD_OWNER=$owner" && kill -9 "${d#/proc/}" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM
wait_api
"$CTL" apply -f "$SRC/deploy/templates/synaxis-stamp.yaml" >/dev/null
for r in westeurope eastus; do "$CTL" deploy --region $r --stamp-id 1 --template synaxis-stamp >/dev/null; done
"$CTL" wait --for=active synaxis-weu-001 --timeout 60s >/dev/null
"$CTL" wait --for=active synaxis-eus-001 --timeout 60s >/dev/null
sleep 1
S=synaxis-weu-001
EP=$("$CTL" status $S -o json | jq -r .status.endpoint)
fdstat() { "$CTL" frontdoor -o json | jq -r --arg n "$1" '.servers[] | select(.name == $n) | .status'; }
now() { date +%s%3N; }

echo "-- 1. throughput, $SECS s each, 4 connections, keep-alive on the client side"
ref=$("$B/stamp-loadgen" "http://127.0.0.1:$FDP/.stamp/ping" 4 "$SECS")
direct=$("$B/stamp-loadgen" "http://$EP/work?ms=0" 4 "$SECS")
via=$("$B/stamp-loadgen" "http://127.0.0.1:$FDP/work?ms=0" 4 "$SECS" 1000)
echo "  haproxy static reply (reference): $ref"
echo "  workload directly:                $direct"
echo "  through the front door (2 stamps, 1000 tenants): $via"
r_ref=${ref%% *}; r_dir=${direct%% *}; r_via=${via%% *}
echo "  ratio front door / direct: $(echo "scale=2; $r_via / $r_dir" | bc)   front door / static reply: $(echo "scale=2; $r_via / $r_ref" | bc)"

echo "-- 2. failure -> out of rotation, $TRIALS trials each (unhealthyThreshold x interval = $((UNHEALTHY * INTERVAL_MS)) ms)"
for mode in kill hang; do
  xs=()
  for i in $(seq 1 "$TRIALS"); do
    until [ "$(fdstat $S)" != MAINT ] && [ "$("$CTL" status $S -o json | jq -r '.status.health.recovery // empty')" = "" ]; do sleep 0.05; done
    sleep 0.3
    pid=$(pgrep -f "stamp-workload --port ${EP#*:} " | head -n1)
    t0=$(now)
    if [ $mode = kill ]; then kill -9 "$pid"; else kill -STOP "$pid"; fi
    until [ "$(fdstat $S)" = MAINT ]; do sleep 0.005; done
    xs+=($(( $(now) - t0 )))
    [ $mode = hang ] && kill -CONT "$pid" 2>/dev/null || true
  done
  sorted=$(printf '%s\n' "${xs[@]}" | sort -n)
  echo "  $mode: ms to MAINT: $(echo $sorted | tr ' ' ,)  median $(echo "$sorted" | sed -n "$(( (TRIALS + 1) / 2 ))p")  max $(echo "$sorted" | tail -n1)"
done

echo "-- 3. last connection -> Ready, $TRIALS trials (drain-poll-interval 20 ms)"
xs=()
until [ "$(fdstat $S)" != MAINT ]; do sleep 0.05; done
for i in $(seq 1 "$TRIALS"); do
  "$CTL" wait --for=active $S --timeout 30s >/dev/null
  until [ "$(fdstat $S)" != MAINT ] && [ "$(fdstat $S)" != DRAIN ]; do sleep 0.02; done
  tenant=$(for t in $(seq 1 200); do w=$(curl -sS -o /dev/null -D - -H "X-Tenant-Id: t$t" "http://127.0.0.1:$FDP/work?ms=0" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p'); [ "$w" = $S ] && { echo t$t; break; }; done)
  ( curl -sS -o /dev/null -H "X-Tenant-Id: $tenant" "http://127.0.0.1:$FDP/work?ms=600"; now >"$T/end" ) &
  REQ=$!
  sleep 0.2
  "$CTL" drain $S --skip-fleet-check >/dev/null
  wait $REQ   # not a bare wait: stampd is a background job of this shell too
  "$CTL" wait --for=ready $S --timeout 30s >/dev/null
  xs+=($(( $("$CTL" status $S -o json | jq -r .status.phaseSince) - $(cat "$T/end") )))
  "$CTL" activate $S >/dev/null
done
sorted=$(printf '%s\n' "${xs[@]}" | sort -n)
echo "  ms from the last answer to Ready: $(echo $sorted | tr ' ' ,)  median $(echo "$sorted" | sed -n "$(( (TRIALS + 1) / 2 ))p")  max $(echo "$sorted" | tail -n1)  (aim: < 100)"
