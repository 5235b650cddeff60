#!/usr/bin/env bash
# kill -9 of the leader of three replicas on PostgreSQL (a) during deploys
# of several stamps, (b) during drains, (c) during namespace reaps: each
# time another replica leads (the failover time is logged), the killed one
# comes back as a follower, and everything converges: every exec step ran
# exactly once (each appends a line to a counter file), one process per
# unit, HAProxy's servers are the Active stamps, and no write the API
# acknowledged (a writer loop creates namespaces through every live replica
# all along) is missing from the store.
TEST_NAME=pg_failover
. "$(dirname "$0")/lib.sh"

RUNS=$T/runs
mkdir -p "$RUNS"
R_ARGS=("${NS_ARGS[@]}" --set reap-interval=500ms --set reap-retry-initial=200ms --set reap-retry-max=1s
        --set inactivity-threshold=1h)
start_replicas 3
wait_leader
log "first leader r$LEADER after ${FAILOVER_MS} ms"
# The example template, each exec step counting its runs (and taking a
# moment, so that a kill finds steps running).
sed -e 's/name: synaxis-stamp/name: failover-stamp/' \
    -e "s|run: mkdir -p \"\$STAMP_DIR/rg\" \&\&|run: echo network >> $RUNS/\$STAMP_NAME \&\& sleep 0.3 \&\& mkdir -p \"\$STAMP_DIR/rg\" \&\&|" \
    -e "s|run: echo \"managed identity|run: echo security >> $RUNS/\$STAMP_NAME \&\& sleep 0.3 \&\& echo \"managed identity|" \
    -e "s|run: echo \"service bus|run: echo integration >> $RUNS/\$STAMP_NAME \&\& sleep 0.3 \&\& echo \"service bus|" \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/failover.yaml"
grep -c "$RUNS" "$T/failover.yaml" | grep -qx 3 || fail "template edit: the exec steps were not all given a counter"
ctl_rr apply -f "$T/failover.yaml" >/dev/null || fail "apply"

# The tenant's token for the namespace calls (the stamp calls are the operator's).
TT=$(ctl_on 1 token create --tenant acme --user dave) || fail "tenant token"
nsctl() { STAMP_TOKEN=$TT ctl "$@"; }
nsctl_rr() { STAMP_TOKEN=$TT ctl_rr "$@"; }
nsctl_on() { STAMP_TOKEN=$TT ctl_on "$@"; }

# The writer: namespaces created through every replica in turn (it runs in
# a subshell, which does not see the replicas restarted after it started:
# a killed one refuses the connection), the acknowledged ones listed (a
# refused or unanswered request is not).
ACKED=$T/acked-ns
: >"$ACKED"
writer() {
  local n=0 name
  while [ ! -e "$T/stop-writer" ] && kill -0 $$ 2>/dev/null; do
    n=$((n + 1))
    name=w-$n
    if nsctl_on $((n % 3 + 1)) ns create "$name" >/dev/null 2>"$T/writer.last"; then echo "livecalc-bucket-$name" >>"$ACKED"
    else echo "r$((n % 3 + 1)) $(tr '\n' ' ' <"$T/writer.last")" >>"$T/writer.err"; fi
    sleep 0.05
  done
}
writer &
WRITER=$!
trap 'kill "$WRITER" 2>/dev/null; crash_replicas; crash_stampd; kill_owned; stop_azurite; stop_pg' EXIT

FAILOVERS=()
# failover WHAT [SHOW]: kill -9 of the leader, wait for another, restart
# the old one.  SHOW (a function) logs what the store says right after the
# kill (no leader moves anything until another leads).
failover() {
  local old=$LEADER
  kill_replica "$old"
  [ -n "${2:-}" ] && log "$1: at the kill: $($2)"
  wait_leader "$old" 30
  FAILOVERS+=("$FAILOVER_MS")
  log "$1: killed leader r$old; r$LEADER leads after $FAILOVER_MS ms"
  start_replica "$old"
}

# ---- (a) during deploys ----
STAMPS=()
for i in 1 2 3 4; do
  S=$(printf 'synaxis-sea-%03d' "$i")
  ctl_rr deploy --region southeastasia --stamp-id "$i" --template failover-stamp >/dev/null || fail "deploy $i"
  STAMPS+=("$S")
done
sleep 0.5
show_a() { echo "$(ctl_rr list -o json | jq -r '[.items[].status.phase] | group_by(.) | map("\(length) \(.[0])") | join(", ")'), $(cat "$RUNS"/* 2>/dev/null | wc -l) exec steps started"; }
failover "(a) deploys" show_a
use_live_replica
for S in "${STAMPS[@]}"; do wait_for "$S" active 60s; done
ok "(a) every stamp Active after the failover"
for S in "${STAMPS[@]}"; do
  wait_procs "$S/" 3 15
  expect_eq "(a) $S: each exec step ran once" "$(sort "$RUNS/$S" | uniq -c | awk '{print $1}' | sort -u | tr -d ' \n')" 1
  expect_eq "(a) $S: 3 exec steps" "$(sort -u "$RUNS/$S" | wc -l)" 3
done

# ---- (b) during drains ----
# A request in flight on each keeps the drains going through the kill.
CURLS=()
for S in "${STAMPS[@]:0:2}"; do
  EP=$(endpoint "$S")
  curl -s -o /dev/null "http://$EP/work?ms=1500" &
  CURLS+=($!)
done
for S in "${STAMPS[@]:0:2}"; do
  wait_until "$S: request in flight" 5 sh -c "curl -fsS http://$(endpoint "$S")/metrics | grep -q '^stamp_workload_active_connections 1'"
done
for S in "${STAMPS[@]:0:2}"; do
  # Through a follower: an acknowledged drain must not be lost.
  f=$(live_replicas | grep -vx "$LEADER" | head -n 1)
  ctl_on "$f" drain "$S" >/dev/null || fail "drain $S on r$f"
done
sleep 0.3
show_b() { for S in "${STAMPS[@]:0:2}"; do printf '%s %s; ' "$S" "$(phase "$S")"; done; }
failover "(b) drains" show_b
use_live_replica
for S in "${STAMPS[@]:0:2}"; do wait_for "$S" ready 60s; done
wait "${CURLS[@]}" 2>/dev/null
for S in "${STAMPS[@]:0:2}"; do
  wait_procs "$S/" 1 15
  expect_eq "(b) $S: standby, system pool only" "$(procs "$S/")" 1
done

# ---- (c) during reaps ----
BLOBS=$STATE/blobs/diagnostics
NSS=()
for r in 1 2 3; do
  NS=livecalc-bucket-reap-$r
  nsctl_rr ns create "reap-$r" >/dev/null || fail "create reap-$r"
  nsctl_rr ns run-pod $NS big -- --steps 50000 --interval-ms 0 >/dev/null || fail "pod big $r"
  nsctl_rr ns run-pod $NS live -- --forever --interval-ms 20 >/dev/null || fail "pod live $r"
  NSS+=("$NS")
done
for NS in "${NSS[@]}"; do
  wait_until "$NS: big pod done" 60 sh -c "[ \"\$(STAMP_TOKEN=$TT ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"big\") | .phase')\" = Succeeded ]"
  nsctl ns logs $NS big --limit-bytes 67108864 >"$T/$NS-big.log" || fail "log of $NS/big"
done
for NS in "${NSS[@]}"; do
  f=$(live_replicas | grep -vx "$LEADER" | tail -n 1)
  nsctl_on "$f" ns finalize $NS >/dev/null || fail "finalize $NS on r$f"
done
show_c() { for NS in "${NSS[@]}"; do printf '%s %s; ' "$NS" "$(ns_status $NS)"; done; }
failover "(c) reaps" show_c
use_live_replica
for NS in "${NSS[@]}"; do wait_ns $NS reaped 60; done
for NS in "${NSS[@]}"; do
  b=${NS#livecalc-bucket-}
  expect_eq "(c) $NS: one archive, not two" "$(ls -d "$BLOBS"/acme/$b/*/ | wc -l)" 1
  expect_ok "(c) $NS: big log archived byte for byte" cmp -s "$T/$NS-big.log" "$(ls "$BLOBS"/acme/$b/*/logs/big.log)"
  expect_ok "(c) $NS: live pod's log archived" test -f "$(ls -d "$BLOBS"/acme/$b/*/)logs/live.log"
  expect_eq "(c) $NS: reaped once over all replicas" "$(cat "$T"/r[0-9]*.log | grep -c "Successfully reaped namespace $NS\$")" 1
  expect_eq "(c) $NS: no pod left" "$(procs "ns/$NS/")" 0
  expect_ok "(c) $NS: directory gone" test ! -e "$STATE/namespaces/$NS"
done

# ---- everything converged; nothing lost, nothing twice ----
touch "$T/stop-writer"
wait "$WRITER"
wait_leader
L=$LEADER
n_acked=$(wc -l <"$ACKED")
[ "$n_acked" -gt 10 ] || fail "the writer got only $n_acked acknowledgements ($(tail -n 3 "$T/writer.err"))"
psql_store "SELECT name FROM resources WHERE kind = 'Namespace'" | sort >"$T/store-ns"
missing=$(sort "$ACKED" | comm -23 - "$T/store-ns" | wc -l)
expect_eq "all $n_acked acknowledged namespace creates are in the store" "$missing" 0
expect_eq "acknowledged writes all active" \
  "$(psql_store "SELECT count(*) FROM resources WHERE kind = 'Namespace' AND name LIKE 'livecalc-bucket-w-%'")" "$n_acked"
for S in "${STAMPS[@]}"; do
  expect_eq "$S: in the store" "$(psql_store "SELECT count(*) FROM resources WHERE kind = 'Stamp' AND name = '$S'")" 1
done
expect_eq "every exec step ran exactly once, over all stamps" "$(cat "$RUNS"/* | wc -l)" $(( 3 * ${#STAMPS[@]} ))
dups=$(proc_units "synaxis-" | sort | uniq -d)
expect_eq "one process per unit" "$dups" ""
expect_eq "stamp processes: 2 Active x3, 2 standby x1" "$(procs synaxis-)" 8
active=$(ctl_on "$L" list --state active -o json | jq -r '.items[].metadata.name' | sort | tr '\n' ' ')
expect_eq "the Active stamps" "$active" "synaxis-sea-003 synaxis-sea-004 "
serving_is() { [ "$(hap_serving | tr '\n' ' ')" = "$1" ]; }
wait_until "HAProxy serves the Active stamps" 10 serving_is "$active"
expect_eq "HAProxy's servers: the Active stamps in rotation" "$(hap_serving | tr '\n' ' ')" "$active"
expect_eq "HAProxy's servers: and the standby ones in maintenance" "$(hap_all | tr '\n' ' ')" "${STAMPS[*]} "
expect_eq "three replicas live" "$(live_replicas | wc -l)" 3
expect_eq "one leader among them" "$(for i in 1 2 3; do metric_on "$i" stamp_leader; done | grep -c '^1$')" 1
log "failover times (ms): ${FAILOVERS[*]}; writer: $n_acked acknowledged, $(cat "$T/writer.err" 2>/dev/null | grep -c .) refused or unanswered ($(cut -d' ' -f1 "$T/writer.err" 2>/dev/null | sort | uniq -c | tr '\n' ' '))"
finish
