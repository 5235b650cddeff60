#!/usr/bin/env bash
# stampd replicas on PostgreSQL, measured (figures, not tests):
#   1. failover: 3 replicas on one PostgreSQL (a throwaway cluster,
#      tests/pg/pg.sh), a stamp drained or activated each round, kill -9 of
#      the leader (GET /v1/cluster names it); the time from the kill to the
#      new leader's first reconcile (its DEBUG line "reconcile Kind/name"),
#      split at its "leads the controllers" line; the killed replica is
#      started again before the next round.  Twice: with the default
#      election figures (client-go's: lease 15 s, renew 10 s, retry 2 s;
#      KILLS_DEFAULT kills, 3 by default) and with short ones (lease 2 s,
#      renew 1.5 s, retry 200 ms; KILLS_SHORT kills, 20 by default).  The
#      reference is client-go's lease duration, ~15 s.
#   2. durable writes/s: POST /v1/apply of distinct small StampHealthCheck
#      manifests (stamp-loadgen --body, 1 and 8 clients) on one replica on
#      PostgreSQL, against raw single-row commits on the same server in the
#      same run (pgbench, a custom script of one INSERT, each its own
#      transaction, synchronous_commit on; and the same under one
#      transaction advisory lock, the way store_pg serializes every write
#      that adds an event), and against the same API load on one stampd on
#      SQLite.
# Each API write is one store transaction (the object, its event and its
# audit row) committed before the answer.
# Usage: bench/bench_pg.sh BUILD_DIR  (KILLS_DEFAULT, KILLS_SHORT, WRITE_SECONDS)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/pg/pg.sh"
KILLS_DEFAULT=${KILLS_DEFAULT:-3}
KILLS_SHORT=${KILLS_SHORT:-20}
SECS=${WRITE_SECONDS:-5}
PG=$T/pg
PIDS=(); APIS=(); FDS=()
cleanup() {
  set +e # every step runs, whatever the one before it found
  local i
  for i in 0 1 2; do
    [ -n "${PIDS[$i]:-}" ] || continue
    kill -9 "${PIDS[$i]}" 2>/dev/null; wait "${PIDS[$i]}" 2>/dev/null || true
  done
  # The stamps' processes: found by the owner id the replicas share.
  local owner
  owner=$(sed -n 's/.*owner \([0-9a-f]*\).*/\1/p' "$T"/r*.log 2>/dev/null | head -n1)
  if [ -n "$owner" ]; then
    for d in /proc/[0-9]*; do
      tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "STAMPD_OWNER=$owner" && kill -9 "${d#/proc/}" 2>/dev/null
    done
  fi
  stop_stampd
  pgh_stop "$PG" 2>/dev/null || pgh_kill "$PG" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM
now() { date +%s%3N; }
# Without Debian's PostgreSQL (scripts/install-deps.sh test) there is
# nothing to measure: said, and make bench goes on.
if ! PGBIN=$(_pgh_bin 2>/dev/null) || [ ! -x "$PGBIN/pgbench" ]; then
  echo "skipped: no PostgreSQL server with pgbench (scripts/install-deps.sh test installs it)"
  exit 0
fi
URL=$(PG_WATCH_PID=$$ pgh_start "$PG" 2>"$T/pg-sh.log") || { cat "$T/pg-sh.log" >&2; exit 1; }
PGPORT=$(cat "$PG/port")
psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }

for i in 0 1 2; do APIS[$i]=$(port); FDS[$i]=$(port); done
FLAGS=()
# start_replica I: replica rI+1 on its own data dir and API port, one
# store and one state dir for all three.
start_replica() {
  local i=$1
  STAMP_CONFIG=$T/r$i.conf "$B/stampd" --data-dir "$T/r$i" --listen "127.0.0.1:${APIS[$i]}" \
    --frontdoor-listen "127.0.0.1:${FDS[$i]}" --set "store=$URL" --set "state-dir=$T/state" \
    --set traffic-driver=none --set replica-id=r$i --set log-level=DEBUG --set fleet-min-regions=0 \
    --set port-range=33000-33199 --set health-interval=200ms --set drain-poll-interval=50ms \
    --set stop-grace=1s "${FLAGS[@]}" >>"$T/r$i.log" 2>&1 &
  PIDS[$i]=$!
}
healthy() { curl -fsS "http://127.0.0.1:${APIS[$1]}/healthz" >/dev/null 2>&1 && [ -s "$T/r$1.conf" ]; }
wait_replica() {
  for _ in $(seq 100); do healthy "$1" && return 0; sleep 0.1; done
  echo "replica r$1 did not answer; its log:" >&2; tail -n 30 "$T/r$1.log" >&2; return 1
}
TOKEN=
cluster() {
  local i
  for i in 0 1 2; do
    curl -fsS -m 2 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${APIS[$i]}/v1/cluster" 2>/dev/null && return 0
  done
  return 1
}
# log line -> epoch ms ("2024-05-01 12:00:00.123 - ..." in UTC)
log_ms() { local s=${1:0:23}; echo $(( $(date -u -d "${s:0:19}" +%s) * 1000 + 10#${s:20:3} )); }

# failover LABEL KILLS: the rounds, then one line of figures.
failover() {
  local label=$1 kills=$2 k phase want= leader epoch idx t0 ln el rc xs=() es=() i ctl
  [ "$kills" -gt 0 ] || return 0
  for i in 0 1 2; do start_replica "$i"; done
  for i in 0 1 2; do wait_replica "$i"; done
  TOKEN=$(sed -n 's/^token: //p' "$T/r0.conf")
  ctl() { STAMP_CONFIG=$T/r0.conf "$CTL" "$@"; }
  for _ in $(seq 300); do [ "$(cluster | jq -r '.leader.holder // empty')" != "" ] && break; sleep 0.1; done
  if [ -z "$(ctl list -o json | jq -r '.items[] | select(.metadata.name == "synaxis-weu-001") | .metadata.name')" ]; then
    ctl apply -f "$SRC/deploy/templates/synaxis-stamp.yaml" >/dev/null
    ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null
  fi
  for k in $(seq "$kills"); do
    # work for the next leader: a drain or an activation in flight (once
    # the previous round's has brought the stamp where it was going)
    phase=
    for _ in $(seq 600); do
      phase=$(ctl status synaxis-weu-001 -o json | jq -r .status.phase)
      case $want:$phase in *:Active | *:Ready) [ -z "$want" ] || [ "$want" = "$phase" ] && break ;; esac
      sleep 0.1
    done
    [ -z "$want" ] || [ "$want" = "$phase" ] || { echo "synaxis-weu-001 stayed $phase, not $want" >&2; exit 1; }
    # the leader: the holder of the lease row whose own log says it took
    # that epoch (a row left by a replica of an earlier run of the loop
    # names a process that does not lead)
    for _ in $(seq 600); do
      read -r leader epoch < <(cluster | jq -r '"\(.leader.holder) \(.leader.epoch)"')
      idx=${leader#r}
      grep -q "leads the controllers, epoch $epoch\$" "$T/$leader.log" 2>/dev/null && break
      sleep 0.05
    done
    grep -q "leads the controllers, epoch $epoch\$" "$T/$leader.log" 2>/dev/null ||
      { echo "no replica leads (GET /v1/cluster: $(cluster))" >&2; exit 1; }
    case $phase in
      Active) ctl drain synaxis-weu-001 >/dev/null; want=Ready ;;
      Ready) ctl activate synaxis-weu-001 >/dev/null; want=Active ;;
      *) echo "synaxis-weu-001 stayed $phase" >&2; exit 1 ;;
    esac
    t0=$(now)
    kill -9 "${PIDS[$idx]}"
    wait "${PIDS[$idx]}" 2>/dev/null || true
    # the new leader: a live replica whose log says it leads with a higher epoch
    el=; rc=
    for _ in $(seq 1200); do
      for i in 0 1 2; do
        [ "$i" = "$idx" ] && continue
        ln=$(grep -n "leads the controllers, epoch" "$T/r$i.log" | tail -n1 || true)
        [ -n "$ln" ] && [ "${ln##* }" -gt "$epoch" ] || continue
        el=$(log_ms "${ln#*:}")
        rc=$(tail -n +"${ln%%:*}" "$T/r$i.log" | grep -m1 -- " - DEBUG - reconcile [A-Za-z]*/[^:]*: rc=" || true)
        [ -n "$rc" ] && break 2
      done
      sleep 0.05
    done
    [ -n "$rc" ] || { echo "no new leader reconciled within 60 s of kill $k" >&2; exit 1; }
    rc=$(log_ms "$rc")
    xs+=($((rc - t0))); es+=($((el - t0)))
    start_replica "$idx"
    wait_replica "$idx"
  done
  # After the last round the stamp goes (its processes with it), so that
  # nothing works in the background of the write figures.
  if [ "${3:-}" = last ]; then
    ctl delete synaxis-weu-001 --force --skip-fleet-check >/dev/null
    ctl wait --for=deleted synaxis-weu-001 --timeout 60s >/dev/null
  fi
  # a clean stop: the leader hands its lease over
  for i in 0 1 2; do kill -TERM "${PIDS[$i]}" 2>/dev/null; wait "${PIDS[$i]}" 2>/dev/null || true; PIDS[$i]=; done
  local sx se n=${#xs[@]}
  sx=$(printf '%s\n' "${xs[@]}" | sort -n); se=$(printf '%s\n' "${es[@]}" | sort -n)
  printf '  %-44s %2d kills: kill -> first reconcile by the new leader: median %5.2f s, worst %5.2f s (elected: median %5.2f s, worst %5.2f s)\n' \
    "$label" "$n" "$(echo "$(echo "$sx" | sed -n "$(( (n + 1) / 2 ))p") / 1000" | bc -l)" \
    "$(echo "$(echo "$sx" | tail -n1) / 1000" | bc -l)" \
    "$(echo "$(echo "$se" | sed -n "$(( (n + 1) / 2 ))p") / 1000" | bc -l)" \
    "$(echo "$(echo "$se" | tail -n1) / 1000" | bc -l)"
  echo "      kill -> reconcile, ms: $(echo $sx | tr ' ' ,)"
}

echo "-- 1. failover: 3 replicas on one PostgreSQL, kill -9 of the leader (reference: client-go's lease, ~15 s)"
FLAGS=()
failover "defaults (lease 15s, renew 10s, retry 2s)" "$KILLS_DEFAULT"
FLAGS=(--set leader-lease=2s --set leader-renew-deadline=1500ms --set leader-retry=200ms)
failover "short (lease 2s, renew 1500ms, retry 200ms)" "$KILLS_SHORT" last

echo "-- 2. durable writes/s, $SECS s each: POST /v1/apply of a new StampHealthCheck against a raw single-row INSERT commit"
# load LABEL PORT TOKEN CLIENTS: ok writes/s of stamp-loadgen
load() {
  local body
  body='{"apiVersion":"stamp.dev/v1","kind":"StampHealthCheck","metadata":{"name":"'"$1"'-{n}"},"spec":{"checks":[{"name":"kubernetes","interval":"10s","timeout":"5s","healthyThreshold":2,"unhealthyThreshold":3}]}}'
  "$B/stamp-loadgen" --concurrency "$4" --duration "${SECS}s" -o json --header "Authorization: Bearer $3" \
    --body "$body" "http://127.0.0.1:$2/v1/apply" >"$T/load.json"
  jq -e '.errors == 0' "$T/load.json" >/dev/null || { echo "$1: errors: $(cat "$T/load.json")" >&2; exit 1; }
  jq -r '"\(.ok / .elapsedSeconds | . * 10 | round / 10) \(.latencyMs.p50 | . * 10 | round / 10)"' "$T/load.json"
}
# one replica on PostgreSQL (the other two would only add election traffic)
FLAGS=()
start_replica 0
wait_replica 0
TOKEN=$(sed -n 's/^token: //p' "$T/r0.conf")
psql_ -d postgres -c "CREATE TABLE bench_raw (id bigserial PRIMARY KEY, name text NOT NULL, body text NOT NULL)"
ins="INSERT INTO bench_raw (name, body) VALUES ('hc-' || :client_id || '-' || random(), repeat('x', 200));"
printf '%s\n' "$ins" >"$T/raw.sql"
# The same commit under one transaction-wide lock, as store_pg takes
# LOCK_EVENTS in every write that adds an event (event ids visible in
# commit order): the writes and their commits one at a time.
printf '%s\n' "BEGIN;" "SELECT pg_advisory_xact_lock(4242);" "$ins" "COMMIT;" >"$T/raw-locked.sql"
raw() {
  "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$PGPORT" -U postgres -f "$T/$2.sql" -c "$1" -j "$1" -T "$SECS" postgres 2>&1 |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' | awk '{ printf "%.1f\n", $1 }'
}
declare -A W
for c in 1 8; do
  read -r W[pg$c] W[pg50$c] < <(load "pg-c$c" "${APIS[0]}" "$TOKEN" "$c")
  W[raw$c]=$(raw "$c" raw)
  W[lock$c]=$(raw "$c" raw-locked)
done
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true; PIDS[0]=
psql_ -d postgres -c "SHOW synchronous_commit" -t | tr -d ' ' | grep -qx on
# one stampd on SQLite (lib.sh's API port and scratch dir)
"$B/stampd" --data-dir "$T/data" --listen 127.0.0.1:$API --frontdoor-listen 127.0.0.1:$FDP \
  --set traffic-driver=none >"$T/stampd.log" 2>&1 &
SD=$!
wait_api
STOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
for c in 1 8; do read -r W[sq$c] W[sq50$c] < <(load "sq-c$c" "$API" "$STOKEN" "$c"); done
stop_stampd
ratio() { echo "scale=3; $1 / $2" | bc | awk '{ printf "%.3f", $1 }'; }
for c in 1 8; do
  printf '  %d client(s): API on PostgreSQL %7s/s (p50 %4s ms)   API on SQLite %7s/s (p50 %4s ms)   raw INSERT commits %8s/s, under one lock %8s/s\n' \
    "$c" "${W[pg$c]}" "${W[pg50$c]}" "${W[sq$c]}" "${W[sq50$c]}" "${W[raw$c]}" "${W[lock$c]}"
  printf '               ratios: API-PG / raw %s   API-PG / raw under one lock %s   API-PG / API-SQLite %s\n' \
    "$(ratio "${W[pg$c]}" "${W[raw$c]}")" "$(ratio "${W[pg$c]}" "${W[lock$c]}")" "$(ratio "${W[pg$c]}" "${W[sq$c]}")"
done
