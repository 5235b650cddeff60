#!/usr/bin/env bash
# Drains: one waits for a slow in-flight request and a job, then completes;
# --force completes at once and counts what it dropped; cancel goes back to
# Active; a grace period passing forces the drain with a warning.
TEST_NAME=drain
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
wait_for synaxis-weu-001 active
S=synaxis-weu-001
EP=$(endpoint $S)

# 1. Graceful: a 3 s request in flight holds the drain until it ends.
curl -sS -o "$T/slow.out" -w '%{http_code}' "http://$EP/work?ms=3000" >"$T/slow.code" &
CURL=$!
wait_until "request in flight" 5 sh -c "curl -fsS http://$EP/metrics | grep -q '^stamp_workload_active_connections 1'"
ctl drain $S >/dev/null || fail drain
wait_until "drain sees the connection" 5 sh -c "ctl status $S -o json | jq -e '.status.drain.connections == 1'"
expect_eq "still Draining while the request runs" "$(phase $S)" Draining
expect_ok "status shows what the drain waits for" sh -c "ctl status $S | grep -q 'waiting for 1 connection'"
wait $CURL
expect_eq "slow request completed" "$(cat "$T/slow.code")" 200
expect_ok "slow request answered by the stamp" grep -q "done 3000ms by $S" "$T/slow.out"
wait_for $S ready 10s
expect_eq "graceful drain dropped nothing" "$(jfield $S .status.drain.forced)" false

# 2. A background job also holds a drain.
ctl activate $S >/dev/null && wait_for $S active
EP=$(endpoint $S)
curl -fsS "http://$EP/job?ms=2500" >/dev/null || fail "start job"
ctl drain $S >/dev/null || fail drain-job
wait_until "drain sees the job" 5 sh -c "ctl status $S -o json | jq -e '.status.drain.jobs == 1'"
expect_eq "Draining while the job runs" "$(phase $S)" Draining
wait_for $S ready 10s

# 3. --force: the request in flight is dropped and counted.
ctl activate $S >/dev/null && wait_for $S active
EP=$(endpoint $S)
curl -sS -o /dev/null -w '%{http_code}' "http://$EP/work?ms=20000" >"$T/forced.code" 2>/dev/null &
CURL=$!
wait_until "request in flight" 5 sh -c "curl -fsS http://$EP/metrics | grep -q '^stamp_workload_active_connections 1'"
ctl drain $S --force >/dev/null || fail force-drain
wait_for $S ready 10s
expect_eq "forced" "$(jfield $S .status.drain.forced)" true
expect_eq "dropped connection counted" "$(jfield $S .status.drain.droppedConnections)" 1
wait $CURL
expect_ok "dropped request did not complete" sh -c "[ \"\$(cat $T/forced.code)\" != 200 ]"
expect_ok "forced drain is a warning event" sh -c "ctl events $S -o json | jq -e '[.items[] | select(.reason==\"DrainForced\" and .type==\"Warning\")] | length == 1'"
expect_ok "dropped metric" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q '^stamp_drain_dropped_total 1'"

# 4. Cancel: activate during a drain returns to Active without dropping.
ctl activate $S >/dev/null && wait_for $S active
EP=$(endpoint $S)
curl -sS -o /dev/null -w '%{http_code}' "http://$EP/work?ms=2000" >"$T/cancel.code" &
CURL=$!
wait_until "request in flight" 5 sh -c "curl -fsS http://$EP/metrics | grep -q '^stamp_workload_active_connections 1'"
ctl drain $S >/dev/null || fail drain-cancel
wait_until "Draining" 5 sh -c "[ \"\$(ctl status $S -o json | jq -r .status.phase)\" = Draining ]"
ctl activate $S >/dev/null || fail cancel
wait_for $S active 10s
wait $CURL
expect_eq "request survived the cancelled drain" "$(cat "$T/cancel.code")" 200
expect_ok "cancel event" sh -c "ctl events $S | grep -q DrainCancelled"

# 5. --grace-period: a drain past its limit is forced, Ready with a warning.
EP=$(endpoint $S)
curl -sS -o /dev/null "http://$EP/work?ms=30000" 2>/dev/null &
CURL=$!
wait_until "request in flight" 5 sh -c "curl -fsS http://$EP/metrics | grep -q '^stamp_workload_active_connections 1'"
ctl drain $S --grace-period 1s >/dev/null || fail grace
wait_for $S ready 10s
expect_eq "grace period forced the drain" "$(jfield $S .status.drain.forced)" true
expect_ok "reason names the limit" sh -c "ctl events $S -o json | jq -e '[.items[] | select(.reason==\"DrainForced\")][-1].message | test(\"limit of 1s\")'"
kill $CURL 2>/dev/null; wait $CURL 2>/dev/null
finish
