#!/usr/bin/env bash
# Fencing: the leader of three replicas is SIGSTOPped with work in flight
# (deploys, then drains); another replica takes the lease (the epoch
# bumps); on SIGCONT the old leader steps down (its log, its stamp_leader
# gauge 0, stamp_leader_changes_total) and nothing was done twice: every
# exec step ran once, one process per unit, HAProxy's servers are the
# Active stamps.  Whether the database refused writes of the old leader
# (stamp_fenced_writes_total) depends on what it was doing when it woke:
# logged, not asserted.
TEST_NAME=pg_fencing
. "$(dirname "$0")/lib.sh"

RUNS=$T/runs
mkdir -p "$RUNS"
start_replicas 3
wait_leader
sed -e 's/name: synaxis-stamp/name: fencing-stamp/' \
    -e "s|run: mkdir -p \"\$STAMP_DIR/rg\" \&\&|run: echo network >> $RUNS/\$STAMP_NAME \&\& sleep 0.3 \&\& mkdir -p \"\$STAMP_DIR/rg\" \&\&|" \
    -e "s|run: echo \"managed identity|run: echo security >> $RUNS/\$STAMP_NAME \&\& sleep 0.3 \&\& echo \"managed identity|" \
    -e "s|run: echo \"service bus|run: echo integration >> $RUNS/\$STAMP_NAME \&\& sleep 0.3 \&\& echo \"service bus|" \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/fencing.yaml"
grep -c "$RUNS" "$T/fencing.yaml" | grep -qx 3 || fail "template edit: the exec steps were not all given a counter"
ctl_rr apply -f "$T/fencing.yaml" >/dev/null || fail apply

epoch() { cluster_json | jq -r .leader.epoch; }
FENCED=()
# fence WHAT: SIGSTOP the leader, wait until another leads with a higher
# epoch, let the new one work a moment, SIGCONT the old one and check it
# stepped down.
fence() {
  local old=$LEADER e0 e1 t0 ms
  e0=$(epoch)
  pause_replica "$old"
  t0=$(date +%s%3N)
  log "$1: stopped leader r$old (epoch $e0)"
  wait_leader "$old" 30
  e1=$(epoch)
  log "$1: r$LEADER leads with epoch $e1 after $FAILOVER_MS ms"
  [ "$e1" -gt "$e0" ] || fail "$1: the epoch did not move ($e0 -> $e1)"
  ok "$1: epoch $e0 -> $e1"
  sleep 1
  resume_replica "$old"
  wait_until "$1: r$old steps down" 20 sh -c "grep -q 'replica r$old steps down (epoch $e0)' $T/r$old.log"
  ms=$(( $(date +%s%3N) - t0 ))
  log "$1: r$old: $(grep "replica r$old steps down (epoch $e0)" "$T/r$old.log" | tail -n 1 | sed 's/.*WARNING - //') (stopped for $ms ms)"
  expect_eq "$1: r$old's stamp_leader gauge" "$(metric_on "$old" stamp_leader)" 0
  expect_eq "$1: r$old's stamp_leader_epoch gauge" "$(metric_on "$old" stamp_leader_epoch)" 0
  local changes
  changes=$(curl -fsS "http://127.0.0.1:${R_PORTS[$old]}/metrics" | grep '^stamp_leader_changes_total' | grep -v 'change="elected"' | awk '{s += $2} END {print s + 0}')
  expect_ok "$1: r$old counted its step down in stamp_leader_changes_total ($changes)" test "$changes" -ge 1
  local f
  f=$(metric_on "$old" stamp_fenced_writes_total)
  FENCED+=("${f:-0}")
  log "$1: stamp_fenced_writes_total on r$old: ${f:-absent}"
  [ "${f:-0}" != 0 ] && log "$1: the database refused $f stale write(s) of r$old: $(grep -c 'fenced' "$T/r$old.log") log lines name it"
  expect_eq "$1: the lease is r$LEADER's still" "$(leader_index)" "$LEADER"
  expect_ok "$1: r$old does not lead" test "$(metric_on "$old" stamp_leader)" = 0
}

# ---- 1. stopped during deploys ----
STAMPS=()
for i in 1 2 3 4; do
  ctl_rr deploy --region southeastasia --stamp-id "$i" --template fencing-stamp >/dev/null || fail "deploy $i"
  STAMPS+=("$(printf 'synaxis-sea-%03d' "$i")")
done
sleep 0.5
log "deploys: $(cat "$RUNS"/* 2>/dev/null | wc -l) exec steps started when the leader is stopped"
fence "deploys"
use_live_replica
for S in "${STAMPS[@]}"; do wait_for "$S" active 60s; done
ok "every stamp Active"
for S in "${STAMPS[@]}"; do
  wait_procs "$S/" 3 15
  expect_eq "$S: each exec step ran once" "$(sort "$RUNS/$S" | uniq -c | awk '{print $1}' | sort -u | tr -d ' \n')" 1
  expect_eq "$S: 3 exec steps" "$(sort -u "$RUNS/$S" | wc -l)" 3
done

# ---- 2. stopped during drains (a request in flight keeps them going) ----
CURLS=()
for S in "${STAMPS[@]:0:2}"; do
  curl -s -o /dev/null "http://$(endpoint "$S")/work?ms=1500" &
  CURLS+=($!)
done
for S in "${STAMPS[@]:0:2}"; do
  wait_until "$S: request in flight" 5 sh -c "curl -fsS http://$(endpoint "$S")/metrics | grep -q '^stamp_workload_active_connections 1'"
  ctl_rr drain "$S" >/dev/null || fail "drain $S"
done
sleep 0.2
fence "drains"
use_live_replica
for S in "${STAMPS[@]:0:2}"; do wait_for "$S" ready 60s; done
wait "${CURLS[@]}" 2>/dev/null

# ---- nothing twice, all converged ----
for S in "${STAMPS[@]:0:2}"; do wait_procs "$S/" 1 15; done
expect_eq "every exec step ran exactly once" "$(cat "$RUNS"/* | wc -l)" $(( 3 * ${#STAMPS[@]} ))
expect_eq "one process per unit" "$(proc_units synaxis- | sort | uniq -d)" ""
expect_eq "stamp processes: 2 Active x3, 2 standby x1" "$(procs synaxis-)" 8
active=$(ctl_rr list --state active -o json | jq -r '.items[].metadata.name' | sort | tr '\n' ' ')
expect_eq "the Active stamps" "$active" "synaxis-sea-003 synaxis-sea-004 "
serving_is() { [ "$(hap_serving | tr '\n' ' ')" = "$1" ]; }
wait_until "HAProxy serves the Active stamps" 10 serving_is "$active"
expect_eq "HAProxy's servers: the Active ones in rotation" "$(hap_serving | tr '\n' ' ')" "$active"
expect_eq "HAProxy's servers: all four" "$(hap_all | tr '\n' ' ')" "${STAMPS[*]} "
expect_eq "one leader among the replicas" "$(for i in 1 2 3; do metric_on "$i" stamp_leader; done | grep -c '^1$')" 1
log "fenced writes seen on the stopped leaders: ${FENCED[*]}"
finish
