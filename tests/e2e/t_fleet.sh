#!/usr/bin/env bash
# Seed 001's fleet rule (at least 2 Active stamps in different regions) and
# the front door surviving the death of HAProxy and restarts of stampd in the
# middle of a lifecycle.
TEST_NAME=fleet
. "$(dirname "$0")/lib.sh"

STAMPD_ARGS=(--set fleet-min-regions=2)
start_stampd
apply_template
FD=127.0.0.1:$FD_PORT
for r in westeurope eastus; do
  ctl deploy --region $r --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy $r"
done
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
status_of() { ctl frontdoor -o json | jq -r --arg n "$1" '.servers[] | select(.name == $n) | .status'; }
serving() { ctl frontdoor -o json | jq -r '[.servers[] | select(.status | test("UP|no check")) | .name] | sort | join(",")'; }

# 1. The rule: with two Active stamps in two regions, none may leave.
for verb in drain standby delete; do
  expect_err "$verb refused by the fleet rule" "fleet rule needs at least 2 Active stamps" ctl $verb synaxis-weu-001
done
expect_err "the refusal says what would be left" "leave 1 Active stamp(s) in 1 region(s) (eastus)" ctl drain synaxis-weu-001
expect_eq "nothing changed" "$(phase synaxis-weu-001)" Active
expect_eq "nothing changed (desired)" "$(jfield synaxis-weu-001 .spec.desired)" active
expect_ok "the refusal is audited" sh -c "ctl audit synaxis-weu-001 | grep -q 'drain'"

# A third stamp in the same region as one of them does not make a drain of
# the other region's stamp legal; one in a third region does.
ctl deploy --region westeurope --stamp-id 2 --template synaxis-stamp >/dev/null || fail "deploy weu-002"
wait_for synaxis-weu-002 active
expect_err "draining the only eastus stamp is still refused" "fleet rule" ctl drain synaxis-eus-001
ctl drain synaxis-weu-002 >/dev/null || fail "drain weu-002 (weu-001 and eus-001 remain)"
wait_for synaxis-weu-002 ready
ok "a drain that keeps two regions is allowed"
ctl standby synaxis-eus-001 --skip-fleet-check >/dev/null || fail "standby --skip-fleet-check"
wait_for synaxis-eus-001 ready
ok "--skip-fleet-check overrides the rule"
ctl activate synaxis-eus-001 >/dev/null && wait_for synaxis-eus-001 active

# 2. HAProxy dies in the middle of a lifecycle: a deploy and a drain run
#    while it is down; stampd starts it again and HAProxy converges.
ctl activate synaxis-weu-002 >/dev/null && wait_for synaxis-weu-002 active
wait_until "three serving" 10 sh -c "[ \"\$(ctl frontdoor -o json | jq '[.servers[] | select(.status | test(\"UP|no check\"))] | length')\" = 3 ]"
hap=$(pgrep -f "haproxy -f $DATA/frontdoor/haproxy.cfg")
[ -n "$hap" ] || fail "haproxy pid"
kill -9 "$hap"
ctl deploy --region southeastasia --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy sea during outage"
ctl drain synaxis-weu-002 >/dev/null || fail "drain weu-002 during outage"
wait_for synaxis-sea-001 active
wait_for synaxis-weu-002 ready
converged() { [ "$(serving)" = "synaxis-eus-001,synaxis-sea-001,synaxis-weu-001" ] && [ "$(status_of synaxis-weu-002)" = MAINT ]; }
wait_until "HAProxy restarted and converged to the store" 15 converged
expect_ok "a new haproxy process" test "$(pgrep -f "haproxy -f $DATA/frontdoor/haproxy.cfg")" != "$hap"
expect_eq "one haproxy" "$(procs frontdoor/)" 1
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: t1" "http://$FD/work?ms=1")
expect_eq "traffic flows again" "$code" 200
expect_ok "restart counted" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -Eq '^stamp_frontdoor_restarts_total [1-9]'"

# 3. stampd restarts (SIGTERM, then kill -9): HAProxy is adopted, not
#    restarted, and keeps serving meanwhile.
hap=$(pgrep -f "haproxy -f $DATA/frontdoor/haproxy.cfg")
for how in stop crash; do
  if [ $how = stop ]; then stop_stampd; else crash_stampd; fi
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: t2" "http://$FD/work?ms=1")
  expect_eq "front door serves while stampd is down ($how)" "$code" 200
  start_stampd
  sleep 1
  expect_eq "same haproxy adopted after $how" "$(pgrep -f "haproxy -f $DATA/frontdoor/haproxy.cfg")" "$hap"
  wait_until "servers as before after $how" 10 converged
done

# 4. Deleting removes the server from HAProxy.
ctl delete synaxis-sea-001 --force >/dev/null || fail "delete sea"
wait_for synaxis-sea-001 deleted
wait_until "deleted stamp gone from HAProxy" 10 sh -c "[ -z \"\$(ctl frontdoor -o json | jq -r '.servers[] | select(.name == \"synaxis-sea-001\") | .name')\" ]"
finish
