#!/usr/bin/env bash
# The front door, with a real HAProxy on loopback and real traffic: tenant
# affinity, a new stamp takes only its share of tenants, a drain finishes the
# request in flight and routes nothing new to the draining stamp, --force
# drops what is left and counts it, and `stampctl metrics` reports it all.
TEST_NAME=frontdoor
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
for r in westeurope eastus; do
  ctl deploy --region $r --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy $r"
done
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
FD=127.0.0.1:$FD_PORT
servers_up() { ctl frontdoor -o json | jq -r '[.servers[] | select(.status != "MAINT" and .status != "DRAIN") | .name] | sort | join(",")'; }
wait_until "both stamps in the front door" 10 sh -c "[ \"\$(ctl frontdoor -o json | jq '[.servers[] | select(.status | test(\"UP|no check\"))] | length')\" = 2 ]"

# who TENANT: the stamp that answers a request for TENANT through the front door.
who() { curl -sS -m 10 -o /dev/null -D - -H "X-Tenant-Id: $1" "http://$FD/work?ms=${2:-0}" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p'; }
map_tenants() { for i in $(seq 1 120); do echo "t$i $(who t$i)"; done; }

# 1. Tenant affinity: the same tenant always reaches the same stamp.
map_tenants >"$T/map1"
map_tenants >"$T/map2"
expect_eq "every tenant answered" "$(awk '$2 != ""' "$T/map1" | wc -l)" 120
expect_ok "same tenant, same stamp, twice over" cmp -s "$T/map1" "$T/map2"
n_weu=$(grep -c 'synaxis-weu-001' "$T/map1")
log "tenants per stamp: weu $n_weu, eus $((120 - n_weu))"
expect_ok "both stamps get tenants" test "$n_weu" -gt 10 -a "$n_weu" -lt 110

# 2. A third stamp moves only about its share, and only to itself.
ctl deploy --region southeastasia --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy sea"
wait_for synaxis-sea-001 active
wait_until "three servers ready" 10 sh -c "[ \"\$(ctl frontdoor -o json | jq '[.servers[] | select(.status | test(\"UP|no check\"))] | length')\" = 3 ]"
map_tenants >"$T/map3"
moved=$(paste "$T/map1" "$T/map3" | awk '$2 != $4' | wc -l)
wrong=$(paste "$T/map1" "$T/map3" | awk '$2 != $4 && $4 != "synaxis-sea-001"' | wc -l)
log "adding a third stamp moved $moved of 120 tenants (a third would be 40)"
expect_eq "moved tenants all went to the new stamp" "$wrong" 0
expect_ok "about a third moved (between 15 and 70 of 120)" test "$moved" -ge 15 -a "$moved" -le 70

# 3. Drain through the front door with a long request in flight.
S=synaxis-weu-001
mine=$(awk -v s=$S '$2 == s {print $1}' "$T/map3" | head -n 10)
first=$(echo "$mine" | head -n 1)
curl -sS -m 30 -o "$T/slow.out" -w '%{http_code}' -H "X-Tenant-Id: $first" "http://$FD/work?ms=3000" >"$T/slow.code" &
CURL=$!
wait_until "request in flight at the front door" 5 sh -c "ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"$S\") | .currentSessions == 1' >/dev/null"
ctl drain $S >/dev/null || fail drain
wait_until "HAProxy has the server in drain" 5 sh -c "ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"$S\") | .status == \"DRAIN\"' >/dev/null"
expect_ok "status shows the front door session it waits for" sh -c "ctl status $S | grep -q 'front door   1 session'"
others=0
for t in $mine; do
  w=$(who "$t")
  [ "$w" != "$S" ] && [ -n "$w" ] && others=$((others + 1))
done
expect_eq "no new request reaches the draining stamp" "$others" "$(echo "$mine" | wc -l)"
expect_eq "still Draining while the request runs" "$(phase $S)" Draining
wait $CURL
expect_eq "the request in flight completed" "$(cat "$T/slow.code")" 200
expect_ok "answered by the draining stamp" grep -q "done 3000ms by $S" "$T/slow.out"
wait_for $S ready 10s
expect_eq "graceful: nothing dropped" "$(jfield $S .status.drain.droppedConnections)" 0
ready_ms=$(( $(jfield $S .status.phaseSince) - $(date -d "$(stat -c %y "$T/slow.code")" +%s%3N) ))
log "Ready $ready_ms ms after the last request's answer was written (informational)"
wait_until "standby server in maint" 5 sh -c "ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"$S\") | .status == \"MAINT\"' >/dev/null"

# 4. Activate: back in rotation, and its tenants come back to it.
ctl activate $S >/dev/null || fail activate
wait_for $S active
back_home() { [ "$(who "$first")" = "$S" ]; }
wait_until "back in rotation" 10 back_home
ok "tenant $first is back on $S"

# 5. --force drops the request in flight and counts it.
curl -sS -m 60 -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: $first" "http://$FD/work?ms=30000" >"$T/cut.code" 2>/dev/null &
CURL=$!
wait_until "long request in flight" 5 sh -c "ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"$S\") | .currentSessions == 1' >/dev/null"
ctl drain $S --force >/dev/null || fail "drain --force"
wait_for $S ready 10s
wait $CURL
log "the forced-out client saw HTTP $(cat "$T/cut.code")"
expect_ok "the client did not get a 200" test "$(cat "$T/cut.code")" != 200
expect_eq "drain marked forced" "$(jfield $S .status.drain.forced)" true
expect_ok "dropped connection counted" test "$(jfield $S .status.drain.droppedConnections)" -ge 1
expect_ok "DrainForced event" sh -c "ctl events $S | grep -q DrainForced"
expect_ok "dropped counter in /metrics" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -Eq '^stamp_drain_dropped_total [1-9]'"
wait_until "no session left at the front door" 5 sh -c "ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"$S\") | .currentSessions == 0' >/dev/null"

# 6. stampctl metrics and health.
ctl metrics $S --period=1h >"$T/metrics.txt" || fail metrics
cat "$T/metrics.txt"
expect_ok "metrics: transitions counted" sh -c "ctl metrics $S -o json | jq -e '.transitionsTotal >= 6'"
expect_ok "metrics: two drains" sh -c "ctl metrics $S -o json | jq -e '(.drains | length) == 2'"
expect_ok "metrics: one activation" sh -c "ctl metrics $S -o json | jq -e '(.activations | length) == 1'"
expect_ok "metrics: front door figures" sh -c "ctl metrics synaxis-eus-001 -o json | jq -e '.frontdoor.requestsTotal > 0'"
expect_err "metrics: bad period refused" "is not a duration" ctl metrics $S --period=forever
expect_ok "health: the default check passes on an Active stamp" sh -c "ctl health synaxis-eus-001 | grep -Eq '^health +http +Passing'"

# 7. Deleting takes the server out of HAProxy.
ctl delete synaxis-sea-001 >/dev/null || fail "delete sea"
wait_for synaxis-sea-001 deleted
wait_until "deleted stamp gone from HAProxy" 5 sh -c "! ctl frontdoor -o json | jq -e '.servers[] | select(.name == \"synaxis-sea-001\")' >/dev/null"
finish
