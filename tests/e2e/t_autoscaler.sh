#!/usr/bin/env bash
# The StampAutoscaler on real load: stamp-loadgen burns CPU in the stamps'
# app replicas through the front door; after the trigger's duration a warm
# Ready stamp is activated first (and takes tenants), a second breach
# deploys a new stamp; without load, scale-in drains to standby after its
# duration and cooldown, never below minStamps or across the fleet rule; a
# stopped replica blocks scale-in and says why; paused does nothing; a
# kill -9 of stampd during the scale-out does not double it.
TEST_NAME=autoscaler
. "$(dirname "$0")/lib.sh"

start_stampd --set fleet-min-regions=2
# Small declared capacity (so a little load is a lot of CPU) and 2 workers.
sed -e 's|"--name", "${STAMP_NAME}", "--state-dir", "${STATE_DIR}"\]|"--name", "${STAMP_NAME}", "--state-dir", "${STATE_DIR}", "--workers", "2"]\n          resources: {cpu: 100m, memory: 64Mi}|' \
  "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/tpl.yaml"
apply_template "$T/tpl.yaml"
for s in "westeurope 1" "eastus 1" "westeurope 2"; do
  set -- $s
  ctl deploy --region "$1" --stamp-id "$2" --template synaxis-stamp >/dev/null || fail "deploy $s"
done
for s in synaxis-weu-001 synaxis-eus-001 synaxis-weu-002; do wait_for $s active 90s; done
ctl standby synaxis-weu-002 --skip-fleet-check >/dev/null || fail "standby weu-002"
wait_for synaxis-weu-002 ready 60s
ok "fleet: weu-001 and eus-001 Active, weu-002 warm in standby"

cat >"$T/as.yaml" <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: fleet}
spec:
  template: synaxis-stamp
  regions: [westeurope, eastus]
  interval: 1s
  scaleOut:
    triggers:
      - {metric: cpu_utilization, threshold: 30, duration: 3s}
    cooldown: 8s
    maxStamps: 4
  scaleIn:
    triggers:
      - {metric: cpu_utilization, threshold: 10, duration: 4s}
      - {metric: active_connections, threshold: 1000, duration: 4s}
    cooldown: 4s
    minStamps: 2
  standby: {maxAge: 72h, scaleDown: {generalPool: 0, gpuPool: 0}}
Y
ctl apply -f "$T/as.yaml" >/dev/null || fail "apply autoscaler"
events() { ctl events autoscaler/fleet -o json 2>/dev/null | jq -r '.items[] | .reason + " " + .message'; }
desc() { ctl describe autoscaler fleet; }
wait_until "first evaluation recorded" 20 sh -c "ctl get autoscaler fleet -o json | jq -e '.status.lastDecision.triggers | length == 3' >/dev/null"
# Idle: the scale-in triggers hold, but minStamps and the fleet rule refuse.
wait_until "idle scale-in refused by its limits" 30 sh -c "ctl get autoscaler fleet -o json | jq -e '.status.lastDecision.blocked.reason // \"\" | test(\"minStamps|fleet rule\")' >/dev/null"
expect_eq "idle: two stamps Active" "$(ctl list -o json | jq '[.items[] | select(.status.phase == "Active")] | length')" 2

# Load: CPU through the front door, spread over tenants.
"$STAMP_BIN/stamp-loadgen" --concurrency 6 --duration 120s --tenants 32 --timeout 20s \
  --path '/work?cpu_ms=30' "http://127.0.0.1:$FD_PORT" >"$T/load.txt" 2>&1 &
LOAD=$!
wait_until "scale-out: the warm stamp is activated first" 60 sh -c "ctl events autoscaler/fleet -o json | jq -e '.items[] | select(.reason == \"ScaledOut\" and (.message | test(\"activate synaxis-weu-002\")))' >/dev/null"
# kill -9 right after the decision: the restart must not repeat it.
crash_stampd
start_stampd --set fleet-min-regions=2
wait_for synaxis-weu-002 active 90s
ok "the warm stamp is Active again"
wait_until "weu-002 takes tenants through the front door" 30 sh -c "ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"synaxis-weu-002\") | .sessionsTotal > 0' >/dev/null"
wait_until "second breach: a new stamp deployed (cold)" 90 sh -c "ctl events autoscaler/fleet -o json | jq -e '.items[] | select(.reason == \"ScaledOut\" and (.message | test(\"^deploy \")))' >/dev/null"
NEW=$(ctl events autoscaler/fleet -o json | jq -r '[.items[] | select(.reason == "ScaledOut" and (.message | test("^deploy ")))][0].message' | awk '{print $2}')
log "deployed: $NEW"
expect_eq "activate happened once (no double after kill -9)" \
  "$(ctl events autoscaler/fleet -o json | jq '[.items[] | select(.reason == "ScaledOut" and (.message | test("activate")))] | length')" 1
wait_for "$NEW" active 120s
expect_eq "never above maxStamps" "$(ctl list -o json | jq '[.items[] | select(.status.phase != "Deleted" and .status.phase != "Ready")] | length <= 4')" true
desc >"$T/describe-out.txt"
expect_ok "describe: conditions and triggers" sh -c "grep -q AbleToScale '$T/describe-out.txt' && grep -q cpu_utilization '$T/describe-out.txt'"

# Load gone: scale in to standby, never below two stamps in two regions.
kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null
wait_until "scale-in: a stamp drained to standby" 90 sh -c "ctl events autoscaler/fleet -o json | jq -e '.items[] | select(.reason == \"ScaledIn\")' >/dev/null"
wait_until "scaled in to the floor" 120 sh -c "[ \"\$(ctl list -o json | jq '[.items[] | select(.status.phase == \"Active\")] | length')\" = 2 ]"
sleep 6
expect_eq "still two Active (minStamps)" "$(ctl list -o json | jq '[.items[] | select(.status.phase == "Active")] | length')" 2
expect_eq "in two regions (fleet rule)" "$(ctl list -o json | jq '[.items[] | select(.status.phase == "Active") | .spec.region] | unique | length')" 2
expect_ok "drained stamps are warm (Ready), not deleted" sh -c "ctl list -o json | jq -e '[.items[] | select(.status.phase == \"Ready\")] | length >= 1' >/dev/null"

# A metric source that stops answering blocks scale-in and says why.
ACTIVE=$(ctl list -o json | jq -r '[.items[] | select(.status.phase == "Active")][0].metadata.name')
APP=
[ -n "$APP" ] || APP=$(for p in /proc/[0-9]*; do { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -q "^STAMP_UNIT=$ACTIVE/p/app/0@" && basename "$p"; done | head -n1)
[ -n "$APP" ] || fail "no app replica of $ACTIVE"
kill -STOP "$APP"
wait_until "missing data named in the decision" 30 sh -c "ctl get autoscaler fleet -o json | jq -e '[.status.lastDecision.triggers[] | .missing // \"\"] | map(test(\"$ACTIVE\")) | any' >/dev/null"
kill -CONT "$APP"
ok "a stopped replica's stamp is named as missing data"

# Paused: evaluated, never acted on, even under load.
sed -e 's/^  interval: 1s/  interval: 1s\n  paused: true/' "$T/as.yaml" >"$T/as-paused.yaml"
ctl apply -f "$T/as-paused.yaml" >/dev/null || fail "apply paused"
before=$(ctl events autoscaler/fleet -o json | jq '[.items[] | select(.reason == "ScaledOut" or .reason == "ScaledIn")] | length')
"$STAMP_BIN/stamp-loadgen" --concurrency 6 --duration 12s --tenants 32 --timeout 20s \
  --path '/work?cpu_ms=30' "http://127.0.0.1:$FD_PORT" >"$T/load2.txt" 2>&1
wait_until "paused: the decision says so" 20 sh -c "ctl get autoscaler fleet -o json | jq -e '.status.lastDecision.paused == true' >/dev/null"
expect_eq "paused: no action taken" \
  "$(ctl events autoscaler/fleet -o json | jq '[.items[] | select(.reason == "ScaledOut" or .reason == "ScaledIn")] | length')" "$before"
desc >"$T/describe.txt"
log "describe autoscaler fleet:"; sed 's/^/    /' "$T/describe.txt"

# A second autoscaler over the same template and regions is refused (the
# two would undo each other); with the first deleted it is accepted.
# p99 latency and queue depth, each from its own real load (the second,
# paused, shows the values its triggers see).
cat >"$T/probe.yaml" <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: probe}
spec:
  template: synaxis-stamp
  regions: [westeurope, eastus]
  paused: true
  interval: 1s
  scaleOut:
    triggers:
      - {metric: request_latency_p99, threshold: 200ms, duration: 2s}
      - {metric: queue_depth, threshold: 5, duration: 2s}
    maxStamps: 4
  scaleIn:
    triggers: [{metric: cpu_utilization, threshold: 1, duration: 2s}]
    minStamps: 2
Y
ctl apply -f "$T/probe.yaml" >/dev/null || fail "apply probe"
wait_until "an overlapping autoscaler says so" 20 sh -c "ctl get autoscaler probe -o json | jq -e '.status.lastError | test(\"fleet already governs\")' >/dev/null"
expect_eq "delete the first" "$(ctl delete autoscaler fleet 2>&1)" "autoscaler/fleet deleted"
ctl apply -f "$T/probe.yaml" >/dev/null || fail "apply probe again"
trig() { ctl get autoscaler probe -o json | jq -r ".status.lastDecision.triggers[$1] | \"\(.value) \(.breaching)\""; }
# 16 requests of 400 ms in flight on 2 workers per app replica: they queue.
"$STAMP_BIN/stamp-loadgen" --concurrency 16 --duration 15s --tenants 32 --timeout 20s \
  --path '/work?ms=400' "http://127.0.0.1:$FD_PORT" >"$T/load3.txt" 2>&1 &
LOAD=$!
wait_until "request_latency_p99 over 200ms under queueing" 40 sh -c "ctl get autoscaler probe -o json | jq -e '.status.lastDecision.triggers[0] | .value > 0.2 and .breaching' >/dev/null"
log "p99 trigger: $(trig 0)"
kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null
# Jobs queued in every Active stamp's workloads.
for s in $(ctl list -o json | jq -r '.items[] | select(.status.phase == "Active") | .metadata.name'); do
  curl -fsS "http://$(endpoint "$s")/jobs?n=40&ms=3000" >/dev/null || fail "queue jobs on $s"
done
wait_until "queue_depth over 5" 30 sh -c "ctl get autoscaler probe -o json | jq -e '.status.lastDecision.triggers[1] | .value > 5 and .breaching' >/dev/null"
log "queue_depth trigger: $(trig 1)"
ok "p99 latency and queue depth measured from real load"
expect_eq "delete an autoscaler" "$(ctl delete autoscaler probe 2>&1)" "autoscaler/probe deleted"
expect_err "it is gone" "not found" ctl get autoscaler probe
expect_eq "its stamps stay" "$(ctl list -o json | jq '[.items[] | select(.status.phase == "Active")] | length >= 2')" true
finish
