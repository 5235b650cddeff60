#!/usr/bin/env bash
# The StampAutoscaler from breach to serving capacity, warm against cold
# (figures, not tests).  A real stampd with the real HAProxy front door; the
# synaxis template with a small declared CPU (100m) and 2 workers, so
# stamp-loadgen's CPU requests through the front door breach a
# cpu_utilization > 30% trigger of 3s (interval 1s).  Each trial:
#   warm: 2 Active stamps in 2 regions + 1 Ready: the autoscaler activates
#         the Ready one;
#   cold: 2 Active, none Ready (maxStamps allows one more): it deploys a
#         new stamp through the template's six phases.
# (Between them the activated stamp is deleted; the deployed one goes to
# standby and is the next trial's warm stamp.)
# Times, from the moment the trigger's duration ended (its breach start,
# status.state.outSinceMs, + duration):
#   decision  the evaluation that scaled out (status.state.lastScaleOutMs);
#   Active    the new stamp's phaseSince once Active;
#   serving   the first poll of `stampctl frontdoor -o json` that shows the
#             stamp's server with sessionsTotal above what it had before:
#             HAProxy routed a request to it (polled about every 50 ms).
# Two configs, each on a stampd of its own: its defaults (health-interval
# 1s), and health-interval 100ms (as the e2e tests run): an activation is
# Active once its reset health checks pass, so it waits on that interval.
# Usage: bench/bench_autoscaler.sh BUILD_DIR   (TRIALS=N per config, default 3)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
TRIALS=${TRIALS:-3}
DURATION_S=3
SD=
LOAD=
cleanup() {
  [ -n "$LOAD" ] && { kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null || true; }
  stop_stampd
  rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM
start_stampd() { # DATA_DIR [--set k=v ...]
  local dir=$1
  shift
  rm -f "$STAMP_CONFIG"
  "$B/stampd" --data-dir "$dir" --listen 127.0.0.1:$API --frontdoor-listen 127.0.0.1:$FDP \
    --set fleet-min-regions=2 --set port-range=32200-32399 --set health-recovery-grace=2s \
    --set stop-grace=2s --set creating-timeout=60s "$@" >"$T/stampd.log" 2>&1 &
  SD=$!
  wait_api
}
now() { date +%s%3N; }
die() {
  echo "bench_autoscaler: $*" >&2
  tail -n 20 "$T/stampd.log" >&2
  [ -n "$LOAD" ] && kill "$LOAD" 2>/dev/null
  exit 1
}
# until_ok TIMEOUT_S DESC cmd...: polls cmd every 50 ms.
until_ok() {
  local end=$(( $(date +%s) + $1 )) desc=$2
  shift 2
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || die "timed out: $desc"; sleep 0.05; done
}
wait_phase() { "$CTL" wait --for="$2" "$1" --timeout "${3:-90s}" >/dev/null || die "$1 never $2"; }

# Small declared capacity (a little load is a lot of CPU) and 2 workers.
sed -e 's|"--name", "${STAMP_NAME}", "--state-dir", "${STATE_DIR}"\]|"--name", "${STAMP_NAME}", "--state-dir", "${STATE_DIR}", "--workers", "2"]\n          resources: {cpu: 100m, memory: 64Mi}|' \
  "$SRC/deploy/templates/synaxis-stamp.yaml" >"$T/tpl.yaml"
# 2 Active stamps in 2 regions and a third warm (Ready) in standby.
fleet() {
  "$CTL" apply -f "$T/tpl.yaml" >/dev/null
  for s in "westeurope 1" "eastus 1" "westeurope 2"; do
    set -- $s
    "$CTL" deploy --region "$1" --stamp-id "$2" --template synaxis-stamp >/dev/null
  done
  for s in synaxis-weu-001 synaxis-eus-001 synaxis-weu-002; do wait_phase $s active; done
  "$CTL" standby synaxis-weu-002 --skip-fleet-check >/dev/null
  wait_phase synaxis-weu-002 ready
  WARM=synaxis-weu-002
}

autoscaler() { # NAME [paused]
  cat <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: $1}
spec:
  template: synaxis-stamp
  regions: [westeurope, eastus]
  paused: ${2:-false}
  interval: 1s
  scaleOut:
    triggers:
      - {metric: cpu_utilization, threshold: 30, duration: ${DURATION_S}s}
    cooldown: 30m
    maxStamps: 3
  scaleIn:
    triggers:
      - {metric: cpu_utilization, threshold: 1, duration: 30m}
    cooldown: 30m
    minStamps: 2
  standby: {maxAge: 72h, scaleDown: {generalPool: 0, gpuPool: 0}}
Y
}
stot() { "$CTL" frontdoor -o json | jq -r --arg n "$1" '[.servers[] | select(.name == $n) | .sessionsTotal][0] // 0'; }

# One scale-out under load with a fresh autoscaler NAME; prints
# "stamp action breach_end decision active serving" (epoch ms).
measure() {
  local as=$1 j lo since target act before s t_serv
  autoscaler "$as" >"$T/$as.yaml"
  "$CTL" apply -f "$T/$as.yaml" >/dev/null
  until_ok 20 "$as: first evaluation" sh -c "'$CTL' get autoscaler $as -o json | jq -e '.status.lastDecision' >/dev/null"
  before=$([ -n "$WARM" ] && stot "$WARM" || echo 0)
  "$B/stamp-loadgen" --concurrency 6 --duration 90s --tenants 32 --timeout 20s \
    --path '/work?cpu_ms=30' "http://127.0.0.1:$FDP" >"$T/load-$as.txt" 2>&1 &
  LOAD=$!
  local end=$(( $(date +%s) + 60 ))
  while :; do
    j=$("$CTL" get autoscaler "$as" -o json)
    lo=$(jq '.status.state.lastScaleOutMs // 0' <<<"$j")
    [ "$lo" -gt 0 ] && break
    [ "$(date +%s)" -lt "$end" ] || die "$as: no scale-out within 60s: $(jq -c .status.lastDecision.reason <<<"$j")"
    sleep 0.05
  done
  since=$(jq '.status.state.outSinceMs[0]' <<<"$j")
  [ "$since" -gt 0 ] || since=$((lo - DURATION_S * 1000))
  target=$(jq -r '.status.lastDecision.actions[0].stamp // ""' <<<"$j")
  act=$(jq -r '.status.lastDecision.actions[0].action // ""' <<<"$j")
  if [ -z "$target" ]; then
    until_ok 10 "$as: ScaledOut event" sh -c "'$CTL' events autoscaler/$as -o json | jq -e '.items[] | select(.reason == \"ScaledOut\")'"
    read -r act target < <("$CTL" events autoscaler/"$as" -o json | jq -r '[.items[] | select(.reason == "ScaledOut")][0].message' | awk '{print $1, $2}')
  fi
  [ "$target" = "$WARM" ] || before=0
  end=$(( $(date +%s) + 120 ))
  while :; do
    s=$(stot "$target")
    if [ "$s" -gt 0 ] && [ "$s" != "$before" ]; then t_serv=$(now); break; fi
    [ "$(date +%s)" -lt "$end" ] || die "$as: $target not serving within 120s"
    sleep 0.05
  done
  wait_phase "$target" active 10s
  echo "$target $act $((since + DURATION_S * 1000)) $lo $("$CTL" status "$target" -o json | jq .status.phaseSince) $t_serv"
  kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null || true
  LOAD=
  autoscaler "$as" true >"$T/$as.yaml"
  "$CTL" apply -f "$T/$as.yaml" >/dev/null
}

row() { # CONFIG CASE "stamp act t0 dec active serving"
  local k=$1
  set -- $2 $3
  printf '  %-5s %-16s %-9s %10d %10d %10d\n' "$1" "$2" "$3" $(($5 - $4)) $(($6 - $4)) $(($7 - $4))
  echo "$(($5 - $4)) $(($6 - $4)) $(($7 - $4))" >>"$T/$k-$1"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
# The trials on one stampd: CONFIG_NAME [--set k=v ...].
trials() {
  local k=$1 r
  shift
  start_stampd "$T/data-$k" "$@"
  fleet
  local how="${*:-the defaults of stampd}"
  echo "-- $k: $how"
  printf '  %-5s %-16s %-9s %10s %10s %10s   %s\n' case stamp action decision "->Active" "->serving" "(ms from the breach's end)"
  for i in $(seq "$TRIALS"); do
    r=$(measure $k-warm-$i)
    row $k warm "$r"
    # Back to 2 Active and none Ready: the activated stamp goes away.
    set -- $r
    "$CTL" delete "$1" >/dev/null
    wait_phase "$1" deleted
    WARM=
    r=$(measure $k-cold-$i)
    row $k cold "$r"
    # The new stamp is the next trial's warm one.
    set -- $r
    "$CTL" standby "$1" --skip-fleet-check >/dev/null
    wait_phase "$1" ready
    WARM=$1
  done
  stop_stampd
  local w c wd cd wa ca
  w=$(awk '{print $3}' "$T/$k-warm" | median); c=$(awk '{print $3}' "$T/$k-cold" | median)
  wd=$(awk '{print $3 - $1}' "$T/$k-warm" | median); cd=$(awk '{print $3 - $1}' "$T/$k-cold" | median)
  wa=$(awk '{print $2 - $1}' "$T/$k-warm" | median); ca=$(awk '{print $2 - $1}' "$T/$k-cold" | median)
  echo "  median, breach's end -> serving: warm ${w} ms, cold ${c} ms; cold/warm $(echo "scale=2; $c / $w" | bc)"
  echo "  median, decision -> serving:     warm ${wd} ms, cold ${cd} ms; cold/warm $(echo "scale=2; $cd / $wd" | bc)"
  echo "  median, decision -> Active:      warm ${wa} ms (activation), cold ${ca} ms (deploy)"
}

echo "breach -> serving: cpu_utilization > 30% for ${DURATION_S}s (interval 1s) under stamp-loadgen" \
  "(6 in flight, /work?cpu_ms=30, 32 tenants through the front door), $TRIALS trial(s) per config"
trials defaults
trials fast-health --set health-interval=100ms
echo "seed's figures: warm 1-2 min, cold 5-10 min (cold/warm 2.5-10).  Here the template's steps are" \
  "local and fast (echo, mkdir, processes on loopback, a smoke test polling every 100 ms): the times" \
  "are the control plane's own.  An activation goes Active once every health check passes after" \
  "its reset (a check not passing yet is tried again every 200 ms while gating); a deploy once its validation step's smoke test passes."
