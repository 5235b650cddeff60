#!/usr/bin/env bash
# Drains and keep-alive: a drain waits for requests in flight, not for
# connections that carry none.  A client that keeps its connection to a
# replica open after its request (HTTP/1.1 keep-alive, straight to the
# replica or through the front door) holds no drain; a slow request sent
# on a kept-alive connection does, until it ends.  When open connections
# were counted, the first drain here waited for drain-connections-timeout
# and was then forced.
TEST_NAME=drain_keepalive
. "$(dirname "$0")/lib.sh"

start_stampd --set drain-connections-timeout=60s
apply_template
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
wait_for synaxis-weu-001 active
S=synaxis-weu-001
FD=127.0.0.1:$FD_PORT
in_fd() { ctl frontdoor -o json | jq -e ".servers[] | select(.name == \"$S\" and (.status | test(\"UP|no check\")))" >/dev/null; }
wait_until "the stamp in the front door" 10 in_fd
metric() { curl -fsS "http://$(endpoint $S)/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# hold FD HOST:PORT: a connection kept open on fd FD after one answered
# request.
hold() {
  local fd=$1 host=${2%:*} port=${2##*:} line
  eval "exec $fd<>/dev/tcp/$host/$port" || fail "connect $2"
  printf 'GET /work?ms=0 HTTP/1.1\r\nHost: x\r\nX-Tenant-Id: idle\r\n\r\n' >&"$fd"
  IFS= read -r -t 10 line <&"$fd" || fail "no answer on the kept-alive connection to $2"
  case $line in "HTTP/1.1 200"*) ;; *) fail "kept-alive request to $2: $line" ;; esac
}

# 1. Idle kept-alive connections: one straight to the replica, one through
# the front door.
hold 7 "$(endpoint $S)"
hold 8 "$FD"
conns=$(metric stamp_workload_active_connections)
log "replica: ${conns:-?} client connection(s) open, $(metric stamp_workload_inflight_requests) request(s) in flight"
expect_ok "the idle client connection is open on the replica" test "${conns:-0}" -ge 1
ctl drain $S >/dev/null || fail drain
wait_for $S ready 30s
expect_eq "drained without forcing" "$(jfield $S .status.drain.forced)" false
expect_eq "nothing dropped" "$(jfield $S .status.drain.droppedConnections)" 0
# (the replica closes an idle connection after 15 s: counted, the drain
# would have waited that long, recording what it waited for)
expect_eq "it never waited for a connection" "$(jfield $S '.status.drain.connections // 0')" 0
exec 7>&- 8>&-

# 2. A slow request, the second on one kept-alive client connection, holds
# the drain until it ends.
ctl activate $S >/dev/null || fail activate
wait_for $S active
wait_until "the stamp back in the front door" 10 in_fd
curl -sS -o "$T/ka0.out" -o "$T/ka.out" -w '%{http_code}\n' -H 'X-Tenant-Id: k' "http://$FD/work?ms=0" "http://$FD/work?ms=3000" >"$T/ka.codes" &
CURL=$!
wait_until "the slow request in flight" 10 sh -c "[ \"\$(curl -fsS http://$(endpoint $S)/metrics | awk '\$1 == \"stamp_workload_inflight_requests\" {print \$2}')\" = 1 ]"
ctl drain $S >/dev/null || fail "drain 2"
wait_until "the drain sees it" 10 sh -c "ctl status $S -o json | jq -e '.status.drain.connections >= 1' >/dev/null"
expect_eq "Draining while it runs" "$(phase $S)" Draining
wait $CURL
expect_eq "both requests answered" "$(tr '\n' ' ' <"$T/ka.codes")" "200 200 "
expect_ok "the slow one by the stamp" grep -q "done 3000ms by $S" "$T/ka.out"
wait_for $S ready 30s
expect_eq "drained without forcing" "$(jfield $S .status.drain.forced)" false
finish
