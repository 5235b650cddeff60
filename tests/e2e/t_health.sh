#!/usr/bin/env bash
# StampHealthCheck: every kind of check gates Creating -> Active; a killed
# workload takes its stamp out of rotation and recovery redeploys it; a stamp
# that stays unhealthy goes Failed after maxRetries; when every stamp is
# unhealthy the policy keeps the last one serving, loudly; bad manifests are
# refused with the field named.
TEST_NAME=health
. "$(dirname "$0")/lib.sh"

start_stampd
FD=127.0.0.1:$FD_PORT
cat >"$T/hc.yaml" <<'EOF'
apiVersion: stamp/v1
kind: StampHealthCheck
metadata:
  name: synaxis-health
spec:
  checks:
    - name: kubernetes
      interval: 200ms
      timeout: 1s
      healthyThreshold: 1
      unhealthyThreshold: 2
    - name: application
      endpoint: /health
      interval: 200ms
      timeout: 1s
      healthyThreshold: 2
      unhealthyThreshold: 2
    - name: port
      type: tcp
      interval: 200ms
      timeout: 1s
      healthyThreshold: 1
      unhealthyThreshold: 2
    - name: smoke
      command: test -d "$STAMP_DIR/volumes"
      interval: 500ms
      timeout: 2s
      healthyThreshold: 1
      unhealthyThreshold: 2
    - name: data
      interval: 300ms
      timeout: 1s
      healthyThreshold: 1
      unhealthyThreshold: 2
      checks:
        - stamp_workload_data_latency_seconds < 500ms
  recovery:
    enabled: true
    maxRetries: 2
    action: redeploy
EOF
ctl apply -f "$T/hc.yaml" >/dev/null || fail "apply health check"
sed -e 's/name: synaxis-stamp/name: checked-stamp/' -e 's/^spec:/spec:\n  healthCheck: synaxis-health/' \
  "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/tpl.yaml"
ctl apply -f "$T/tpl.yaml" >/dev/null || fail "apply template"

# Bad manifests change nothing and say what is wrong.
bad() { # bad DESC WANT YAML
  printf '%s\n' "$3" >"$T/bad.yaml"
  expect_err "$1" "$2" ctl apply -f "$T/bad.yaml"
}
bad "unknown check type" 'spec.checks[0].type: "icmp"' 'kind: StampHealthCheck
metadata: {name: bad-one}
spec: {checks: [{name: a, type: icmp}]}'
bad "malformed threshold" 'spec.checks[0].checks[0]' 'kind: StampHealthCheck
metadata: {name: bad-one}
spec: {checks: [{name: a, checks: ["latency ~ 3"]}]}'
bad "unknown recovery action" 'spec.recovery.action' 'kind: StampHealthCheck
metadata: {name: bad-one}
spec: {checks: [{name: a}], recovery: {action: reboot}}'
bad "threshold out of range" 'spec.checks[0].unhealthyThreshold' 'kind: StampHealthCheck
metadata: {name: bad-one}
spec: {checks: [{name: a, unhealthyThreshold: 0}]}'
expect_err "nothing stored from a refused manifest" "" sh -c "ctl apply -f $T/bad.yaml; exit 1"

for r in westeurope eastus; do
  ctl deploy --region $r --stamp-id 7 --template checked-stamp >/dev/null || fail "deploy $r"
done
wait_for synaxis-weu-007 active
wait_for synaxis-eus-007 active
ctl health synaxis-weu-007 | tee "$T/health.txt"
expect_eq "five checks, all passing" "$(grep -cE ' Passing ' "$T/health.txt")" 5
expect_ok "health -o json names the source" sh -c "ctl health synaxis-weu-007 -o json | jq -e '.source == \"StampHealthCheck/synaxis-health\"'"
wait_until "both in the front door" 10 sh -c "[ \"\$(ctl frontdoor -o json | jq '[.servers[] | select(.status | test(\"UP|no check\"))] | length')\" = 2 ]"
status_of() { ctl frontdoor -o json | jq -r --arg n "$1" '.servers[] | select(.name == $n) | .status'; }

# 1. Kill the workload: out of rotation at once, redeployed, back in.
S=synaxis-weu-007
EP=$(endpoint $S)
pid=$(pgrep -f "stamp-workload --port ${EP#*:} " | head -n1)
[ -n "$pid" ] || fail "workload pid"
t0=$(date +%s%3N)
kill -9 "$pid"
out_of_rotation() { [ "$(status_of $S)" = MAINT ]; }
wait_until "killed stamp leaves rotation" 10 out_of_rotation
log "out of rotation $(( $(date +%s%3N) - t0 )) ms after kill -9 (unhealthyThreshold x interval = 400 ms; informational)"
expect_ok "OutOfRotation event" sh -c "ctl events $S | grep -q OutOfRotation"
# Recovery may bring the stamp back within a few hundred ms (a loaded
# machine, the sanitizer build): a request it answers counts against it only
# if it is still out of rotation after answering.
served=0
for i in $(seq 1 10); do
  w=$(curl -sS -o /dev/null -D - -H "X-Tenant-Id: t$i" "http://$FD/work" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p')
  if [ "$w" != synaxis-eus-007 ]; then
    out_of_rotation && fail "request for t$i went to '$w' while $S is out of rotation"
    log "$S back in rotation after $served requests"
    break
  fi
  served=$((served + 1))
done
ok "every tenant served by the healthy stamp while $S was out ($served requests)"
in_rotation() { [ "$(status_of $S)" != MAINT ]; }
wait_until "redeployed stamp back in rotation" 20 in_rotation
expect_ok "RecoveryStarted event" sh -c "ctl events $S | grep -q 'RecoveryStarted.*redeploy'"
expect_ok "Recovered event" sh -c "ctl events $S | grep -q Recovered"
expect_eq "exactly the template's processes again" "$(procs $S/)" 3
expect_eq "still Active" "$(phase $S)" Active
expect_ok "recovery counted in /metrics" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q 'stamp_recoveries_total{action=\"redeploy\"}'"

# 2. A threshold that keeps failing: maxRetries redeploys, then Failed.
for d in "$DATA/stamps/$S/volumes"/*/; do echo 2000 >"$d/inject-data-latency-ms"; done
wait_for $S failed 60s
expect_ok "StampRecoveryFailed event" sh -c "ctl events $S | grep -q StampRecoveryFailed"
expect_ok "the threshold is the reason" sh -c "ctl status $S | grep -q 'stamp_workload_data_latency_seconds'"
# The kill above used one of the two retries (a stamp's count starts again
# only after ten intervals of health), the threshold the other.
expect_eq "maxRetries recoveries, then Failed" "$(ctl events $S | grep -c 'RecoveryStarted')" 2
expect_ok "Failed names the attempts" sh -c "ctl events $S | grep -q 'after 2 recovery attempt'"
gone_from_fd() { [ -z "$(status_of $S)" ]; }
wait_until "failed stamp removed from the front door" 10 gone_from_fd

# 3. All unhealthy: the last stamp keeps serving (policy last-healthy), loudly.
S2=synaxis-eus-007
for d in "$DATA/stamps/$S2/volumes"/*/; do echo 2000 >"$d/inject-data-latency-ms"; done
wait_until "FleetAllUnhealthy event" 15 sh -c "ctl events $S2 | grep -q FleetAllUnhealthy"
expect_eq "the last stamp stays in rotation" "$([ "$(status_of $S2)" != MAINT ] && echo yes)" yes
expect_ok "all-unhealthy gauge is 1" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q '^stamp_fleet_all_unhealthy 1'"
for i in 1 2 3 4 5; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: t$i" "http://$FD/work?ms=1")
  [ "$code" = 200 ] || fail "request $i while all unhealthy: HTTP $code"
  sleep 0.3
done
ok "requests still answered while every stamp is unhealthy"
expect_eq "no recovery takes the last capacity away" "$(ctl events $S2 | grep -c RecoveryStarted)" 0
expect_eq "still Active" "$(phase $S2)" Active
for d in "$DATA/stamps/$S2/volumes"/*/; do rm -f "$d/inject-data-latency-ms"; done
wait_until "gauge back to 0 once healthy" 15 sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q '^stamp_fleet_all_unhealthy 0'"
finish
