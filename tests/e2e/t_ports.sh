#!/usr/bin/env bash
# stampd owns its ports or does not start: a second stampd given the front
# door port of a running one refuses before it starts HAProxy (HAProxy would
# share the port through SO_REUSEPORT and take a share of the first one's
# requests), names the port and leaves nothing running, while the first
# front door answers every request.  The same for an API port in use.
# Also the operator basics: --version, log-format json, --shutdown-all.
TEST_NAME=ports
. "$(dirname "$0")/lib.sh"

# haproxy_of DIR: live HAProxy processes whose configuration is under DIR.
haproxy_of() {
  local n=0 d
  for d in /proc/[0-9]*; do
    tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q -- "-f $1/frontdoor/haproxy.cfg" && n=$((n + 1))
  done
  echo "$n"
}

expect_ok "no internal references in stampd's help" sh -c "! '$STAMP_BIN/stampd' --help --help-config 2>&1 | grep -i 'seed [0-9]'"
expect_ok "no internal references in the config help" sh -c "! '$STAMP_BIN/stampd' --help-config 2>&1 | grep -i 'seed'"
expect_ok "stampd --version" sh -c "'$STAMP_BIN/stampd' --version | grep -qx 'stampd [0-9]*\.[0-9]*\.[0-9]*'"

# sd_notify: a datagram socket standing in for systemd's.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    with open(sys.argv[2], "ab") as f:
        f.write(s.recv(4096) + b"\n")
' "$T/notify.sock" "$T/notify.log" &
NOTIFY_PID=$!
wait_until "notify socket" 5 test -S "$T/notify.sock"
STAMPD_ARGS=(--set log-format=json)
NOTIFY_SOCKET=$T/notify.sock start_stampd
wait_until "READY=1 sent to NOTIFY_SOCKET" 5 grep -qx READY=1 "$T/notify.log"
ok "stampd told systemd it is ready"
apply_template
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
wait_for synaxis-weu-001 active
wait_until "the stamp in the front door" 10 sh -c "[ \"\$(ctl frontdoor -o json | jq '[.servers[] | select(.status | test(\"UP|no check\"))] | length')\" = 1 ]"
FD=127.0.0.1:$FD_PORT
expect_eq "front door answers" "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tenant-Id: t1' "http://$FD/work?ms=0")" 200

# Every log line is one JSON object with time, level and msg.
expect_ok "log-format json: every line parses with jq" jq -e -s 'length > 5 and all(.[]; (.time | test("^[0-9-]+T[0-9:.]+Z$")) and (.level | type == "string") and (.msg | type == "string"))' "$T/stampd.log"

# A loop of requests through the first front door for the whole attempt.
(
  end=$(( $(date +%s) + 6 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -m 5 -w '%{http_code}\n' -H "X-Tenant-Id: t$RANDOM" "http://$FD/work?ms=0" || echo 000
  done >"$T/codes"
) &
LOOP=$!
sleep 1

API2=$(free_port)
out=$("$STAMP_BIN/stampd" --data-dir "$T/data2" --listen "127.0.0.1:$API2" --frontdoor-listen "$FD" 2>&1) && rc=0 || rc=$?
log "second stampd: exit $rc: $out"
expect_ok "second stampd on the same front door port exits non-zero" test "$rc" -ne 0
case "$out" in *"$FD"*"in use"*) ok "its message names the port" ;; *) fail "message lacks $FD: $out" ;; esac
expect_eq "no HAProxy of the second stampd" "$(haproxy_of "$T/data2")" 0
expect_eq "no API of the second stampd" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API2/healthz")" 000

# The API port of the first one, with a front door port of its own.
FD3=$(free_port)
out=$("$STAMP_BIN/stampd" --data-dir "$T/data3" --listen "127.0.0.1:$API_PORT" --frontdoor-listen "127.0.0.1:$FD3" 2>&1) && rc=0 || rc=$?
log "third stampd: exit $rc: $out"
expect_ok "stampd on a taken API port exits non-zero" test "$rc" -ne 0
case "$out" in *"127.0.0.1:$API_PORT"*) ok "its message names the API address" ;; *) fail "message lacks the API address: $out" ;; esac
expect_eq "no HAProxy of the third stampd" "$(haproxy_of "$T/data3")" 0
expect_eq "nothing listens on its front door port" "$( (exec 3<>"/dev/tcp/127.0.0.1/$FD3") 2>/dev/null && echo open || echo closed)" closed

wait "$LOOP"
total=$(wc -l <"$T/codes")
bad=$(grep -vc '^200$' "$T/codes" || true)
log "first front door: $total requests during the attempts, $bad not 200"
expect_ok "requests were made" test "$total" -gt 10
expect_eq "every request of the first front door answered 200" "$bad" 0
expect_eq "the first stampd's HAProxy is still the only one" "$(haproxy_of "$DATA")" 1

# --shutdown-all: stampd, the workloads and HAProxy all stop.
expect_ok "workloads run before" test "$(procs synaxis-weu-001/)" -gt 0
out=$("$STAMP_BIN/stampd" --shutdown-all --data-dir "$DATA" 2>&1) || fail "shutdown-all: $out"
log "$out"
wait "$STAMPD_PID" 2>/dev/null || true
STAMPD_PID=
expect_eq "stampd stopped" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/healthz")" 000
expect_eq "no process of the setup is left" "$(procs)" 0
expect_eq "no HAProxy is left" "$(haproxy_of "$DATA")" 0
expect_ok "STOPPING=1 sent at the stop" grep -qx STOPPING=1 "$T/notify.log"
kill "$NOTIFY_PID" 2>/dev/null || true
finish
