#!/usr/bin/env bash
# PostgreSQL under three replicas restarted under a load of API writes (a
# loop applying templates and creating namespaces through every replica):
# once cleanly (pg_ctl stop, start) and once after a kill -9 of the server
# (crash recovery).  Each time the replicas answer again, a leader exists
# again, a write on a follower still wakes the leader (the LISTEN sessions
# reconnected), everything converges, and every write the API acknowledged
# is in the store.
TEST_NAME=pg_restart
. "$(dirname "$0")/lib.sh"

R_ARGS=("${NS_ARGS[@]}" --set inactivity-threshold=1h)
start_replicas 3
wait_leader
ctl_rr apply -f "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >/dev/null || fail apply
ctl_rr deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy weu"
ctl_rr deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy eus"
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
TT=$(ctl_on 1 token create --tenant acme --user erin) || fail "tenant token"

# The load: through every replica in turn, a new template or a new
# namespace; the acknowledged ones listed as "Kind name".
ACKED=$T/acked
: >"$ACKED"
writer() {
  local n=0
  while [ ! -e "$T/stop-writer" ] && kill -0 $$ 2>/dev/null; do
    n=$((n + 1))
    if [ $((n % 2)) = 0 ]; then
      sed "s/name: synaxis-stamp/name: load-$n/" "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/load.yaml"
      if ctl_on $((n % 3 + 1)) apply -f "$T/load.yaml" >/dev/null 2>"$T/writer.last"; then echo "StampTemplate load-$n" >>"$ACKED"
      else echo "$(date +%s%3N) $(tr '\n' ' ' <"$T/writer.last")" >>"$T/writer.err"; fi
    else
      if STAMP_TOKEN=$TT ctl_on $((n % 3 + 1)) ns create "w-$n" >/dev/null 2>"$T/writer.last"; then
        echo "Namespace livecalc-bucket-w-$n" >>"$ACKED"
      else echo "$(date +%s%3N) $(tr '\n' ' ' <"$T/writer.last")" >>"$T/writer.err"; fi
    fi
    sleep 0.02
  done
}
writer &
WRITER=$!
trap 'kill "$WRITER" 2>/dev/null; crash_replicas; crash_stampd; kill_owned; stop_azurite; stop_pg' EXIT

answers() { ctl_on "$1" list -o json >/dev/null 2>&1; }
acked() { wc -l <"$ACKED"; }

# after WHAT: the replicas answer, a leader exists, a deploy taken by a
# follower converges (its wake-up reaches the leader), the load goes on.
after() {
  local t0 i a0 f S=$2
  t0=$(date +%s%3N)
  for i in 1 2 3; do wait_until "$1: r$i answers again" 60 answers "$i"; done
  log "$1: all replicas answer $(( $(date +%s%3N) - t0 )) ms after the server came back"
  wait_leader "" 60
  log "$1: r$LEADER leads, $(( $(date +%s%3N) - t0 )) ms after the server came back (epoch $(cluster_json | jq .leader.epoch))"
  f=$(live_replicas | grep -vx "$LEADER" | head -n 1)
  ctl_on "$f" deploy --region southeastasia --stamp-id "${S##*-}" --template synaxis-stamp >/dev/null || fail "$1: deploy $S on r$f"
  use_replica "$f"
  wait_for "$S" active 60s
  ok "$1: $S deployed through follower r$f"
  a0=$(acked)
  wait_until "$1: the load's writes are acknowledged again" 30 sh -c "[ \$(wc -l <$ACKED) -gt $((a0 + 3)) ]"
  ok "$1: writes acknowledged again"
}

# ---- 1. a clean restart ----
wait_until "load under way" 20 sh -c "[ \$(wc -l <$ACKED) -ge 10 ]"
a=$(acked)
restart_pg
UP1=$(date +%s%3N)
log "clean restart: $(( $(acked) - a )) writes acknowledged during it"
after "clean restart" synaxis-sea-002

# ---- 2. a crash: kill -9 of every PostgreSQL process, down 2 s ----
a=$(acked)
kill_pg
sleep 2
log "crash: server down, $(( $(acked) - a )) writes acknowledged meanwhile" # (/metrics needs the store: it answers 503 now)
restart_pg
UP2=$(date +%s%3N)
after "crash" synaxis-sea-003
# A drain through a follower after the crash reaches the leader too.
f=$(live_replicas | grep -vx "$LEADER" | tail -n 1)
ctl_on "$f" drain synaxis-weu-001 >/dev/null || fail "drain on r$f"
wait_for synaxis-weu-001 ready 60s

# ---- converged; nothing acknowledged lost ----
touch "$T/stop-writer"
wait "$WRITER"
n=$(acked)
[ "$n" -gt 20 ] || fail "only $n writes acknowledged"
psql_store "SELECT kind || ' ' || name FROM resources WHERE kind IN ('Namespace', 'StampTemplate')" | sort >"$T/store"
expect_eq "all $n acknowledged writes are in the store" "$(sort "$ACKED" | comm -23 - "$T/store" | wc -l)" 0
sort "$ACKED" | comm -23 - "$T/store" | head -n 5
for S in synaxis-weu-001 synaxis-eus-001 synaxis-sea-002 synaxis-sea-003; do wait_procs "$S/" "$([ $S = synaxis-weu-001 ] && echo 1 || echo 3)" 20; done
expect_eq "stamp processes: 3 Active x3, 1 standby x1" "$(procs synaxis-)" 10
expect_eq "one process per unit" "$(proc_units synaxis- | sort | uniq -d)" ""
active=$(ctl_rr list --state active -o json | jq -r '.items[].metadata.name' | sort | tr '\n' ' ')
expect_eq "the Active stamps" "$active" "synaxis-eus-001 synaxis-sea-002 synaxis-sea-003 "
serving_is() { [ "$(hap_serving | tr '\n' ' ')" = "$1" ]; }
wait_until "HAProxy serves the Active stamps" 10 serving_is "$active"
expect_eq "HAProxy's servers in rotation" "$(hap_serving | tr '\n' ' ')" "$active"
expect_eq "one leader among the replicas" "$(for i in 1 2 3; do metric_on "$i" stamp_leader; done | grep -c '^1$')" 1
expect_eq "three replicas live" "$(live_replicas | wc -l)" 3
log "writer: $n acknowledged, $(cat "$T/writer.err" 2>/dev/null | grep -c .) refused or unanswered; after the server was back: $(awk -v a="$UP1" -v b="$UP2" '($1 > a && $1 < a + 60000 && $1 < b - 3000) || $1 > b' "$T/writer.err" 2>/dev/null | grep -c .)"
awk -v a="$UP1" -v b="$UP2" '($1 > a && $1 < b - 3000) || $1 > b' "$T/writer.err" 2>/dev/null | head -n 5
log "reconnections logged: $(cat "$T"/r[0-9].log | grep -c 'LISTEN session ended') LISTEN, step downs: $(cat "$T"/r[0-9].log | grep -c 'steps down')"
finish
