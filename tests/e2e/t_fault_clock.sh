#!/usr/bin/env bash
# Steps of the wall clock (issue 16, fault injection).  stampd runs under
# Debian's libfaketime with its wall clock read from a file the test writes
# (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE) and the monotonic clocks left
# alone (FAKETIME_DONT_FAKE_MONOTONIC): the test steps stampd's clock 2 h
# forward and back while it runs.  Token checks follow the wall clock, as
# they must (exp, nbf, iat with the allowed leeway); durations do not: with
# a request in flight through a drain, an exec step still running in a
# Creating stamp, an autoscaler evaluating and a namespace being finalized,
# a step forward fires no timeout and a step back holds nothing.
TEST_NAME=fault_clock
. "$(dirname "$0")/lib.sh"

FT_LIB=
for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib; do
  [ -f "$d/faketime/libfaketimeMT.so.1" ] && FT_LIB=$d/faketime/libfaketimeMT.so.1 && break
done
[ -n "$FT_LIB" ] || fail "libfaketime missing (Debian's faketime package; scripts/install-deps.sh test)"
CLOCK=$T/faketime
echo "+0" >"$CLOCK"
# step OFFSET: stampd's wall clock is the real one plus OFFSET from now on.
step() { echo "$1" >"$CLOCK.tmp" && mv "$CLOCK.tmp" "$CLOCK"; log "stampd's clock: real $1"; }

# stampd runs through a wrapper with the preload (its children inherit it:
# workloads, stamp-run and HAProxy see the same clock); the rest of the build
# directory as it is.  A sanitizer build loads its runtime first and must be
# told that a preload before it is wanted.
REAL_BIN=$STAMP_BIN
mkdir -p "$T/fbin"
for f in "$REAL_BIN"/*; do ln -s "$f" "$T/fbin/"; done
rm -f "$T/fbin/stampd"
cat >"$T/fbin/stampd" <<W
#!/bin/sh
export LD_PRELOAD=$FT_LIB FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_TIMESTAMP_FILE=$CLOCK FAKETIME_NO_CACHE=1
export ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}verify_asan_link_order=0
exec "$REAL_BIN/stampd" "\$@"
W
chmod +x "$T/fbin/stampd"
STAMP_BIN=$T/fbin

JWT=$REAL_BIN/stamp-jwt
"$JWT" keygen ec "$T/ec.pem" || fail keygen
"$JWT" jwks idp="$T/ec.pem" >"$T/jwks.json" || fail jwks
# creating-timeout 5m, drain limits 10m/30m/40m (the defaults): far beyond
# this test's real minutes, far within the 2 h step.
start_stampd "${NS_ARGS[@]}" --set creating-timeout=5m --set jwt-algorithms=HS256,ES256 \
  --set "jwt-jwks=$T/jwks.json" --set jwt-leeway=30s
expect_ok "stampd runs with the preload" grep -q faketime "/proc/$STAMPD_PID/maps"
apply_template

# ---- tokens: exp, nbf and iat against stampd's wall clock ----
now=$(date +%s)
tok() { # iat nbf exp: an ES256 token of tenant-a (0: claim left out)
  local c
  c=$(jq -nc --argjson iat "$1" --argjson nbf "$2" --argjson exp "$3" \
    '{iss: "stampd", aud: "stamp", sub: "ann", user_id: "ann", tenant_id: "tenant-a", exp: $exp}
     + (if $iat > 0 then {iat: $iat} else {} end) + (if $nbf > 0 then {nbf: $nbf} else {} end)')
  "$JWT" sign ES256 "$T/ec.pem" idp "$c" || fail "sign $c"
}
H1=$(tok "$now" 0 $((now + 3600)))                      # valid for 1 h
LATER=$(tok "$now" $((now + 7200 - 60)) $((now + 4 * 3600)))  # valid from +2 h (less a minute)
SKEW_OK=$(tok $((now + 7200 + 10)) 0 $((now + 4 * 3600)))      # issued 10 s past +2 h
SKEW_BAD=$(tok $((now + 7200 + 600)) 0 $((now + 4 * 3600)))    # issued 10 min past +2 h
# as TOKEN: the HTTP status of a tenant's listing
as() { TOKEN=$1 api GET /v1/platform/namespaces; }
tokens() { # expected codes: H1 LATER SKEW_OK SKEW_BAD
  expect_eq "$5: a token valid for 1 h" "$(as "$H1")" "$1"
  expect_eq "$5: a token valid from +2 h" "$(as "$LATER")" "$2"
  expect_eq "$5: a token issued 10 s past +2 h (within the 30 s leeway there)" "$(as "$SKEW_OK")" "$3"
  expect_eq "$5: a token issued 10 min past +2 h" "$(as "$SKEW_BAD")" "$4"
}
tokens 200 401 401 401 "real time"
as "$LATER" >/dev/null
expect_ok "the refusal says why: not yet valid" grep -q "not yet valid" "$T/body"
as "$SKEW_OK" >/dev/null
expect_ok "the refusal says why: issued in the future" grep -q "issued in the future" "$T/body"

# ---- the world the steps hit ----
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy weu"
ctl deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy eus"
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
wait_until "both in the front door" 15 sh -c "[ \"\$(ctl frontdoor -o json | jq '[.servers[] | select(.status | test(\"UP|no check\"))] | length')\" = 2 ]"
# A request in flight for 40 s through the front door, and its stamp drained.
curl -sS -m 120 -o "$T/slow.out" -w '%{http_code}' -H "X-Tenant-Id: t1" "http://127.0.0.1:$FD_PORT/work?ms=40000" >"$T/slow.code" &
CURL=$!
busy() { ctl frontdoor -o json | jq -r '.servers[] | select(.currentSessions > 0) | .name'; }
wait_until "the request in flight at the front door" 10 sh -c "[ -n \"\$(ctl frontdoor -o json | jq -r '.servers[] | select(.currentSessions > 0) | .name')\" ]"
D=$(busy)
ctl drain "$D" >/dev/null || fail "drain $D"
wait_for "$D" draining 10s
# A stamp whose exec step runs for 20 s.
cat >"$T/slow.yaml" <<Y
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: slow-stamp}
spec:
  phases:
    - name: network
      steps:
        - {name: slow, kind: exec, run: "sleep 20", timeout: 10m}
    - name: compute
      steps:
        - name: app
          kind: process
          pool: general
          command: ["\${STAMP_LIBEXEC}/stamp-workload", "--port", "\${PORT}", "--name", "\${STAMP_NAME}"]
Y
apply_template "$T/slow.yaml"
C=synaxis-uks-001
ctl deploy --region uksouth --stamp-id 1 --template slow-stamp >/dev/null || fail "deploy $C"
wait_until "$C's exec step runs" 15 sh -c "ctl status $C -o json | jq -e '.status.steps[0].state == \"Running\"'"
# An autoscaler that evaluates every second (paused: it records, never acts).
cat >"$T/as.yaml" <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: clock-as}
spec:
  template: synaxis-stamp
  regions: [westeurope, eastus]
  paused: true
  interval: 1s
  scaleOut:
    triggers: [{metric: active_connections, threshold: 1000, duration: 1m}]
    cooldown: 10m
    maxStamps: 4
  scaleIn:
    triggers: [{metric: active_connections, threshold: 1, duration: 1m}]
    cooldown: 10m
    minStamps: 1
Y
ctl apply -f "$T/as.yaml" >/dev/null || fail "apply the autoscaler"
last_eval() { ctl get autoscaler clock-as -o json | jq -r '.status.lastEvaluationMs // 0'; }
# evaluating: lastEvaluationMs takes two new values.
evaluating() {
  local a b c
  a=$(last_eval)
  wait_until "the autoscaler evaluates ($1)" 30 sh -c "[ \"\$(ctl get autoscaler clock-as -o json | jq -r '.status.lastEvaluationMs // 0')\" != $a ]"
  b=$(last_eval)
  wait_until "the autoscaler evaluates again ($1)" 30 sh -c "[ \"\$(ctl get autoscaler clock-as -o json | jq -r '.status.lastEvaluationMs // 0')\" != $b ]"
  c=$(last_eval)
  ok "the autoscaler evaluates ($1): $a -> $b -> $c"
}
evaluating "real time"
NS=$(ctl ns create clock-1 | sed -n 's|^namespace/\(.*\) created$|\1|p')
[ -n "$NS" ] || fail "namespace"

# ---- 2 h forward ----
step +2h
wait_until "stampd's clock is 2 h ahead (a 1 h token expired)" 30 sh -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $H1' http://127.0.0.1:$API_PORT/v1/platform/namespaces)\" = 401 ]"
tokens 401 200 200 401 "+2 h"
expect_ok "the expired token's refusal says so" sh -c "TOKEN='$H1' curl -sS -H 'Authorization: Bearer $H1' http://127.0.0.1:$API_PORT/v1/platform/namespaces | grep -q expired"
evaluating "+2 h"
wait_for $C active 90s
ok "the Creating stamp finished its step and got Active: no Creating timeout after the step"
expect_eq "$C: one deployment attempt" "$(jfield $C '.status.attempt // 1')" 1
expect_eq "the drain still waits for its request: not forced by the step" "$(phase "$D")" Draining
expect_ok "no forced drain nor failed creation in the log" sh -c "! grep -E 'DrainForced|StampCreationFailed|AttemptFailed' $T/stampd.log"
for s in synaxis-weu-001 synaxis-eus-001; do
  [ "$s" = "$D" ] && continue
  expect_eq "$s still Active" "$(phase $s)" Active
done
expect_eq "nothing Failed" "$(ctl get stamps -o json | jq '[.items[] | select(.status.phase == "Failed")] | length')" 0

# ---- 2 h back (to the real time) ----
step +0
wait_until "stampd's clock is back (the 1 h token accepted again)" 30 sh -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $H1' http://127.0.0.1:$API_PORT/v1/platform/namespaces)\" = 200 ]"
tokens 200 401 401 401 "back"
evaluating "after the step back"
ctl ns finalize "$NS" >/dev/null || fail "finalize $NS"
wait_ns "$NS" reaped 30
ok "a namespace finalized after the step back is reaped"
wait "$CURL"
expect_eq "the request in flight through the drain completed" "$(cat "$T/slow.code")" 200
wait_for "$D" ready 30s
expect_eq "drained gracefully" "$(jfield "$D" .status.drain.forced)" false
expect_eq "nothing dropped" "$(jfield "$D" .status.drain.droppedConnections)" 0
# A stamp that became Active 2 h ahead goes on: drained and activated again.
ctl drain $C >/dev/null || fail "drain $C"
wait_for $C ready 30s
ctl activate $C >/dev/null || fail "activate $C"
wait_for $C active 60s
ok "drain and activation after the step back"

# ---- 2 h behind the real time ----
# Every token was issued "in the future" now, stampctl's operator token too:
# only the checks that need none.
step -2h
tokens 401 401 401 401 "-2 h"
expect_ok "the refusal: issued in the future" grep -q "issued in the future" "$T/body"
expect_eq "GET /healthz answers at -2 h" "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/healthz")" 200
step +0
wait_until "the operator's token accepted again" 30 ctl get stamps
ctl activate "$D" >/dev/null || fail "activate $D"
wait_for "$D" active 60s
ok "an activation after the steps"
expect_eq "the operator's view: no stamp Failed" "$(ctl get stamps -o json | jq '[.items[] | select(.status.phase == "Failed")] | length')" 0
expect_eq "no drain was forced" "$(ctl get stamps -o json | jq '[.items[] | select(.status.drain.forced == true)] | length')" 0
finish
