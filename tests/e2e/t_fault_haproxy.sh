#!/usr/bin/env bash
# HAProxy's admin socket hanging (issue 16, fault injection).  The real
# HAProxy stampd drives is stopped with SIGSTOP: the kernel still takes
# connections on its admin socket into the listen backlog, and nothing ever
# answers them.  A deploy, a drain and an activation run while it hangs:
# stampd's API keeps answering, every command gives up at its deadline with
# an error that says what happened, no stamp goes to a wrong phase (a drain
# is never declared done while HAProxy's sessions cannot be read), every
# acknowledged request takes effect, and after SIGCONT HAProxy's servers
# converge to the serving stamps.  Then sockets that are not HAProxy at all:
# one that accepts and never answers, one that answers a byte a second and
# never ends (each read alone would come within any per-read timeout).
TEST_NAME=fault_haproxy
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
HAP_SOCK=$DATA/frontdoor/admin.sock
FD=127.0.0.1:$FD_PORT
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
HAP=
HUNG=
trap '[ -n "$HUNG" ] && kill -CONT "$HAP" 2>/dev/null; crash_stampd; kill_owned' EXIT
hang() { kill -STOP "$HAP" && HUNG=1; log "haproxy $HAP stopped (SIGSTOP)"; }
unhang() { kill -CONT "$HAP" && HUNG=; log "haproxy $HAP continued (SIGCONT)"; }
metric() { curl -fsS -m 10 "http://127.0.0.1:$API_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
# The servers HAProxy routes new requests to, one line, sorted (only while
# it answers: hap_cmd has no timeout of its own).
hap_ready() { hap_serving | tr '\n' ' '; }
hap_status() { hap_cmd "show stat" | awk -F, -v s="$1" '$1 == "stamps" && $2 == s {print $18}'; }
# The serving stamps by the store: Active ones.
active_stamps() { ctl get stamps -o json | jq -r '[.items[] | select(.status.phase == "Active") | .metadata.name] | sort | map(. + " ") | join("")'; }
converged() { [ "$(hap_ready)" = "$(active_stamps)" ]; }

# api_alive WHEN: the API answers while HAProxy hangs: /healthz, a listing
# and a status read, each well within curl's own limit.
api_alive() {
  local c
  c=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/healthz")
  expect_eq "GET /healthz answers $1" "$c" 200
  expect_eq "GET /v1/stamps answers $1" "$(curl -sS -m 10 -o "$T/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/v1/stamps")" 200
  expect_ok "the listing has every stamp $1" jq -e '.items | length >= 1' "$T/body"
}

ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy weu"
wait_for synaxis-weu-001 active
HAP=$(pgrep -f "haproxy -f $DATA/frontdoor/haproxy.cfg")
[ -n "$HAP" ] || fail "haproxy pid"
wait_until "weu-001 in the front door" 15 converged

# 1. A deploy while HAProxy hangs: the stamp is created and gets Active (its
#    reconcile gives up on the socket at each command's deadline and goes
#    on); its server is added once HAProxy answers again.
hang
t0=$(date +%s)
ctl deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy eus during the hang"
ok "deploy acknowledged during the hang"
api_alive "during a deploy while HAProxy hangs"
wait_for synaxis-eus-001 active 90s
ok "the new stamp got Active while HAProxy hung ($(( $(date +%s) - t0 )) s)"
expect_ok "its server is not recorded as applied" sh -c "[ \"\$(ctl status synaxis-eus-001 -o json | jq -r '.status.frontdoor // \"none\"')\" != ready ]"
wait_until "stamp_frontdoor_up 0" 30 sh -c "[ \"\$(curl -fsS -m 10 http://127.0.0.1:$API_PORT/metrics | awk '\$1 == \"stamp_frontdoor_up\" {print \$2}')\" = 0 ]"
ok "stamp_frontdoor_up is 0"
expect_ok "the log says the admin socket did not answer" grep -q "haproxy stopped or hung" "$T/stampd.log"
expect_err "stampctl frontdoor says why it has no answer" "haproxy stopped or hung" ctl frontdoor
api_alive "after the reconciles gave up"
unhang
wait_until "HAProxy's servers are the Active stamps after SIGCONT" 30 converged
expect_eq "both serving" "$(hap_ready)" "synaxis-eus-001 synaxis-weu-001 "
wait_until "the new stamp's server applied" 15 sh -c "[ \"\$(ctl status synaxis-eus-001 -o json | jq -r .status.frontdoor)\" = ready ]"
wait_until "stamp_frontdoor_up 1" 15 sh -c "[ \"\$(curl -fsS -m 10 http://127.0.0.1:$API_PORT/metrics | awk '\$1 == \"stamp_frontdoor_up\" {print \$2}')\" = 1 ]"
ok "stamp_frontdoor_up back to 1"
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: t1" "http://$FD/work?ms=1")
expect_eq "traffic flows through the front door" "$code" 200

# 2. A drain while HAProxy hangs: neither the server's drain state nor its
#    sessions can be had, so the drain waits (it says why) instead of
#    guessing that nothing is left; after SIGCONT it finishes gracefully.
hang
ctl drain synaxis-weu-001 >/dev/null || fail "drain during the hang"
ok "drain acknowledged during the hang"
wait_until "the drain says the front door did not answer" 60 sh -c "ctl status synaxis-weu-001 -o json | jq -e '.status.drain.frontdoorError | test(\"haproxy|front door|drain\")'"
log "drain waiting: $(jfield synaxis-weu-001 .status.drain.frontdoorError)"
# Two more reconciles of the drain that could not read HAProxy.
n0=$(grep -c "stamp synaxis-weu-001: front door" "$T/stampd.log")
wait_until "two more rounds of the drain" 60 sh -c "[ \$(grep -c 'stamp synaxis-weu-001: front door' $T/stampd.log) -ge $((n0 + 2)) ]"
expect_eq "still Draining: not declared done without HAProxy's session count" "$(phase synaxis-weu-001)" Draining
api_alive "during a drain while HAProxy hangs"
unhang
wait_for synaxis-weu-001 ready 60s
expect_eq "drained gracefully, not forced" "$(jfield synaxis-weu-001 .status.drain.forced)" false
expect_eq "no front door error left in the drain" "$(jfield synaxis-weu-001 '.status.drain.frontdoorError // "none"')" none
in_maint() { [ "$(hap_status "$1")" = MAINT ]; }
wait_until "the standby's server in MAINT" 15 in_maint synaxis-weu-001
ok "the standby's server is in MAINT"
wait_until "HAProxy's servers are the Active stamps" 15 converged
expect_eq "only eus serving" "$(hap_ready)" "synaxis-eus-001 "

# 3. An activation while HAProxy hangs: Active once healthy; in rotation
#    once HAProxy answers.
hang
ctl activate synaxis-weu-001 >/dev/null || fail "activate during the hang"
ok "activate acknowledged during the hang"
wait_for synaxis-weu-001 active 90s
ok "activated while HAProxy hung"
api_alive "during an activation while HAProxy hangs"
unhang
wait_until "HAProxy's servers are the Active stamps after the activation" 30 converged
expect_eq "both serving again" "$(hap_ready)" "synaxis-eus-001 synaxis-weu-001 "
tenants_on() { for i in $(seq 1 60); do curl -sS -m 10 -o /dev/null -D - -H "X-Tenant-Id: t$i" "http://$FD/work?ms=0" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p'; done | sort -u | tr '\n' ' '; }
expect_eq "requests reach both stamps" "$(tenants_on)" "synaxis-eus-001 synaxis-weu-001 "
expect_eq "one haproxy, the same one (never restarted for a hang)" "$(pgrep -f "haproxy -f $DATA/frontdoor/haproxy.cfg")" "$HAP"
expect_eq "nothing left Stalled" "$(ctl get stamps -o json | jq '[.items[] | select(any(.status.conditions[]?; .type == "Stalled" and .status == "True"))] | length')" 0

# 4. Sockets that are not HAProxy: stampd driving an HAProxy it does not own
#    (haproxy-socket) checks it at start; a socket that never answers, or
#    answers forever a byte at a time, is refused with a clear error, and
#    stampd does not hang at start.  perl's core IO::Socket::UNIX (no
#    python3 nor socat on the test machines); each listener ends on its own.
# fake_socket MODE PATH: silent accepts and keeps every connection, never
# writing; trickle writes "#" every second on each until the client leaves.
fake_socket() {
  perl -MIO::Socket::UNIX -MSocket -e '
    my ($mode, $path) = @ARGV;
    unlink $path;
    alarm 300;
    $SIG{CHLD} = "IGNORE";
    my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $path, Listen => 64) or die "$path: $!\n";
    my @keep;
    while (my $c = $l->accept) {
      if ($mode eq "trickle" && !fork) {
        $c->autoflush(1);
        for (1 .. 300) { print $c "#" or exit 0; sleep 1 }
        exit 0;
      }
      push @keep, $c;
    }' "$1" "$2" &
}
for mode in silent trickle; do
  fake_socket $mode "$T/$mode.sock"
  FAKE=$!
  wait_until "$mode socket listening" 10 test -S "$T/$mode.sock"
  port=$(free_port)
  t0=$(date +%s)
  rc=0
  # timeout(1) only ends a stampd that hangs, which fails the test.
  STAMP_CONFIG=$T/client-$mode.conf timeout 120 "$STAMP_BIN/stampd" --data-dir "$T/d-$mode" \
    --listen "127.0.0.1:$port" --set "haproxy-socket=$T/$mode.sock" >"$T/stampd-$mode.log" 2>&1 || rc=$?
  log "stampd on a $mode socket: exit $rc after $(( $(date +%s) - t0 )) s: $(tail -n 1 "$T/stampd-$mode.log")"
  expect_ok "stampd on a $mode socket did not hang" test "$rc" -ne 124
  expect_ok "stampd on a $mode socket refused to start" test "$rc" -ne 0
  expect_ok "the error names the socket and the missing answer" grep -q "$T/$mode.sock: no complete answer" "$T/stampd-$mode.log"
  kill "$FAKE" 2>/dev/null
  wait "$FAKE" 2>/dev/null
done
api_alive "at the end"
finish
