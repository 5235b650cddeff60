# lib.sh - shared by the end-to-end tests.  Each test starts the real stampd
# in its own temporary directory on free loopback ports and drives it with
# the real stampctl.  Nothing here is mocked.
#
# Needs STAMP_BIN (the build directory) and STAMP_SRC (the source tree);
# ctest sets both.
set -u
: "${STAMP_BIN:?set STAMP_BIN to the build directory}"
: "${STAMP_SRC:?set STAMP_SRC to the source tree}"

T=$(mktemp -d "${TMPDIR:-/tmp}/stamp-e2e.XXXXXX")
# Pods run as the pod user when the tests run as root: it must be able to
# pass through (not list) the test directory to reach its pod's.
chmod 0711 "$T"
# As root, pods run as the pod user and must reach the programs they run in
# the build tree: open (o+x, no listing) any directory above it that is
# closed, as a checkout in a private temporary directory is.
if [ "$(id -u)" -eq 0 ]; then
  d=$STAMP_BIN
  while [ "$d" != / ] && [ -n "$d" ]; do
    d=$(dirname "$d")
    [ -n "$(find "$d" -maxdepth 0 ! -perm -o=x 2>/dev/null)" ] && chmod o+x "$d"
  done
fi
export STAMP_CONFIG=$T/client.conf
DATA=$T/data
STAMPD_PID=
API_PORT=
PASSED=0
FAILED=0
STAMPD_ARGS=()

log() { printf '%s [%s] %s\n' "$(date +%H:%M:%S.%3N)" "${TEST_NAME:-e2e}" "$*"; }

fail() {
  log "FAIL: $*"
  FAILED=$((FAILED + 1))
  dump
  finish
}

ok() { PASSED=$((PASSED + 1)); log "ok: $*"; }

dump() {
  log "---- stampd log (tail) ----"
  tail -n 60 "$T/stampd.log" 2>/dev/null || true
  local f
  for f in "$T"/r[0-9]*.log; do
    [ -f "$f" ] || continue
    log "---- ${f##*/} (tail) ----"
    tail -n 40 "$f"
  done
}

# A free TCP port on 127.0.0.1 (nothing answers on it now), from 10000-19999:
# below the kernel's ephemeral range (32768-60999), where client sockets
# would take it between the check and the bind, and apart from the stamp
# port ranges (20000-31999).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port" >&2
  return 1
}

# `ctl` is stampctl, also inside sh -c.
mkdir -p "$T/bin"
ln -sf "$STAMP_BIN/stampctl" "$T/bin/ctl"
export PATH="$T/bin:$PATH"

# The store's owner id, from stampd's log (or, with replicas, which all share
# the store's, from the first replica's log that names it).
owner_id() {
  local f o
  for f in "$T/stampd.log" "$T"/r[0-9]*.log; do
    [ -f "$f" ] || continue
    o=$(sed -n 's/.*owner \([0-9a-f]*\).*/\1/p' "$f" | head -n 1)
    [ -n "$o" ] && { echo "$o"; return 0; }
  done
  return 0
}

# Live (non-zombie) processes of this test's stampd whose unit starts with $1.
procs() {
  local owner prefix=${1:-} n=0 pid st
  owner=$(owner_id)
  [ -n "$owner" ] || { echo 0; return; }
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ -r "$d/environ" ] || continue
    env=$(tr '\0' '\n' 2>/dev/null <"$d/environ") || continue
    grep -qx "STAMPD_OWNER=$owner" <<<"$env" || continue
    unit=$(sed -n 's/^STAMP_UNIT=//p' <<<"$env")
    case "$unit" in "$prefix"*) ;; *) continue ;; esac
    # State and process group; only a group leader is a unit (its children
    # inherit the markers), as in the runtime's own scan.
    read -r st pg < <(sed 's/.*) //' "$d/stat" 2>/dev/null | awk '{print $1, $3}') || continue
    [ "$st" = Z ] && continue
    [ "$pg" = "$pid" ] || continue
    n=$((n + 1))
  done
  echo "$n"
}

# wait_procs PREFIX COUNT TIMEOUT_S: until exactly COUNT processes run.
wait_procs() {
  local end=$(( $(date +%s) + ${3:-15} ))
  while [ "$(procs "$1")" != "$2" ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "processes $1: $(procs "$1"), want $2"
    sleep 0.1
  done
}

kill_owned() {
  local owner
  owner=$(owner_id)
  [ -n "$owner" ] || return 0
  for d in /proc/[0-9]*; do
    if tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "STAMPD_OWNER=$owner"; then
      kill -9 "${d#/proc/}" 2>/dev/null || true
    fi
  done
}

# A stamp port range of its own for this test (20000-31999 in 60 slots of
# 200): claimed with an atomic mkdir, so tests running at the same time never
# share one; a slot whose owner is gone is taken over.
claim_port_slot() {
  local i d start=$((RANDOM % 60))
  for k in $(seq 0 59); do
    i=$(( (start + k) % 60 ))
    d=${TMPDIR:-/tmp}/stamp-e2e-slot.$i
    if mkdir "$d" 2>/dev/null || { ! kill -0 "$(cat "$d/pid" 2>/dev/null)" 2>/dev/null && rm -rf "$d" && mkdir "$d" 2>/dev/null; }; then
      echo $$ >"$d/pid"
      PORT_SLOT=$d
      PORT_BASE=$((20000 + i * 200))
      return 0
    fi
  done
  PORT_BASE=$((20000 + start * 200))
}
PORT_SLOT=

# Fast timings so the lifecycle runs in seconds; tests add their own.
start_stampd() {
  # Ports picked here (not by the test) may be taken by another test between
  # the pick and stampd's bind; stampd refuses a port in use, so pick again.
  local picked=
  [ -n "$API_PORT" ] && [ -n "${FD_PORT:-}" ] || picked=1
  local attempt
  for attempt in 1 2 3 4 5; do
    [ -n "$API_PORT" ] || API_PORT=$(free_port)
    [ -n "${FD_PORT:-}" ] || FD_PORT=$(free_port)
    start_stampd_once "$@" && return 0
    if [ -n "$picked" ] && [ "$attempt" -lt 5 ] && tail -n 5 "$T/stampd.log" | grep -q "in use"; then
      log "port taken between pick and bind ($API_PORT/$FD_PORT); picking again"
      API_PORT= FD_PORT=
      continue
    fi
    fail "stampd exited at start"
  done
}

# 0 when up, 1 when stampd exited at start.
start_stampd_once() {
  # One port range per test, kept across restarts of stampd.
  [ -n "${PORT_BASE:-}" ] || claim_port_slot
  local base=$PORT_BASE
  # The real front door on every test (HAProxy on FD_PORT); the fleet rule
  # off unless a test turns it on (most run one or two stamps).
  "$STAMP_BIN/stampd" --data-dir "$DATA" --listen "127.0.0.1:$API_PORT" \
    --frontdoor-listen "127.0.0.1:$FD_PORT" --set frontdoor-sync-interval=200ms \
    --set fleet-min-regions=0 --set health-recovery-grace=2s \
    --set port-range=$base-$((base + 199)) \
    --set health-interval=100ms --set drain-poll-interval=50ms \
    --set backoff-initial=200ms --set backoff-max=2s --set stop-grace=2s \
    --set creating-timeout=60s --set probe-timeout=1s \
    "${STAMPD_ARGS[@]}" ${STAMP_SANITIZED:+--set pod-memory-max=4611686018427387904} "$@" >>"$T/stampd.log" 2>&1 &
  STAMPD_PID=$!
  for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && [ -s "$STAMP_CONFIG" ]; then
      return 0
    fi
    if ! kill -0 "$STAMPD_PID" 2>/dev/null; then
      wait "$STAMPD_PID" 2>/dev/null
      STAMPD_PID=
      return 1
    fi
    sleep 0.1
  done
  fail "stampd did not come up on $API_PORT"
}

STAMPD_BAD_EXITS=0
stop_stampd() {
  [ -n "$STAMPD_PID" ] || return 0
  kill -TERM "$STAMPD_PID" 2>/dev/null || true
  local rc=0
  wait "$STAMPD_PID" 2>/dev/null || rc=$?
  # A SIGTERM stop is clean: exit 0 (under ASan a leak makes it non-zero).
  if [ "$rc" -ne 0 ]; then
    log "stampd exited $rc after SIGTERM"
    STAMPD_BAD_EXITS=$((STAMPD_BAD_EXITS + 1))
  fi
  STAMPD_PID=
}

# Sanitizer reports anywhere in the test's files (stampd, stampctl, workloads).
sanitizer_reports() {
  grep -rlaE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$T" 2>/dev/null || true
}

crash_stampd() {
  [ -n "$STAMPD_PID" ] || return 0
  kill -9 "$STAMPD_PID" 2>/dev/null || true
  wait "$STAMPD_PID" 2>/dev/null || true
  STAMPD_PID=
}

finish() {
  stop_replicas
  stop_stampd
  kill_owned
  stop_azurite
  stop_pg
  [ -n "$PORT_SLOT" ] && rm -rf "$PORT_SLOT"
  local bad
  bad=$(sanitizer_reports)
  if [ -n "$bad" ]; then
    log "FAIL: sanitizer reports in: $bad"
    grep -haE -A20 "ERROR: (Address|Leak)Sanitizer|runtime error:" $bad | head -n 60
    FAILED=$((FAILED + 1))
  fi
  if [ "$STAMPD_BAD_EXITS" -ne 0 ]; then
    log "FAIL: stampd did not stop cleanly $STAMPD_BAD_EXITS time(s)"
    FAILED=$((FAILED + 1))
  fi
  log "$PASSED passed, $FAILED failed"
  if [ "$FAILED" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; else log "left $T"; fi
  [ "$FAILED" -eq 0 ] && exit 0 || exit 1
}
trap 'crash_stampd; kill_owned; stop_azurite; stop_pg' EXIT

apply_template() { ctl apply -f "${1:-$STAMP_SRC/deploy/templates/synaxis-stamp.yaml}" >/dev/null || fail "apply ${1:-}"; }

# expect_ok DESC cmd...
expect_ok() {
  local desc=$1
  shift
  local out
  if out=$("$@" 2>&1); then ok "$desc"; else fail "$desc: $out"; fi
}

# expect_err DESC SUBSTRING cmd...: fails with a message containing SUBSTRING
expect_err() {
  local desc=$1 want=$2
  shift 2
  local out
  if out=$("$@" 2>&1); then fail "$desc: succeeded: $out"; fi
  case "$out" in *"$want"*) ok "$desc" ;; *) fail "$desc: message \"$out\" lacks \"$want\"" ;; esac
}

expect_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', want '$3'"; fi
}

phase() { ctl status "$1" -o json | jq -r .status.phase; }
jfield() { ctl status "$1" -o json | jq -r "$2"; }
endpoint() { jfield "$1" .status.endpoint; }

wait_for() { ctl wait --for="$2" "$1" --timeout "${3:-60s}" >>"$T/wait.log" 2>&1 || fail "wait $1 $2: $(tail -n 3 "$T/wait.log")"; }

# wait_until DESC TIMEOUT_S cmd...: polls cmd until it succeeds
wait_until() {
  local desc=$1 t=$2
  shift 2
  local end=$(( $(date +%s) + t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out: $desc"
    sleep 0.1
  done
}

# ---- seed 004 helpers ----

AZURITE_PID=
AZURITE_PORT=
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# A real Azurite (make check installs it into .deps/); in memory, on
# AZURITE_PORT (chosen once, kept across restarts).
start_azurite() {
  local bin=$STAMP_SRC/.deps/azurite/node_modules/.bin/azurite-blob
  [ -x "$bin" ] || fail "$bin missing (scripts/install-deps.sh test installs it)"
  [ -n "$AZURITE_PORT" ] || AZURITE_PORT=$(free_port)
  mkdir -p "$T/azurite"
  (cd "$T/azurite" && exec "$bin" --disableTelemetry --skipApiVersionCheck --inMemoryPersistence \
     --silent --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT") >>"$T/azurite.log" 2>&1 &
  AZURITE_PID=$!
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$AZURITE_PORT") 2>/dev/null && return 0
    kill -0 "$AZURITE_PID" 2>/dev/null || fail "azurite exited at start: $(tail -n 5 "$T/azurite.log")"
    sleep 0.1
  done
  fail "azurite did not come up on $AZURITE_PORT"
}
stop_azurite() {
  [ -n "$AZURITE_PID" ] || return 0
  kill -9 "$AZURITE_PID" 2>/dev/null || true
  wait "$AZURITE_PID" 2>/dev/null || true
  AZURITE_PID=
}
azurite_conn() {
  echo "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$AZURITE_PORT/devstoreaccount1;"
}

# The namespace programs from the build tree.
NS_ARGS=(--set "pod-command=$STAMP_BIN/stamp-nsworker" --set "pipeline-command=$STAMP_BIN/stamp-pipeline")
# A sanitizer build maps terabytes of shadow memory: no address-space limit
# for its pods, whatever else a test passes.
STAMP_SANITIZED=
grep -q '^STAMP_SANITIZE:BOOL=ON' "$STAMP_BIN/CMakeCache.txt" 2>/dev/null && STAMP_SANITIZED=1

# tenant_token TENANT USER: an HS256 token minted by stampd (operator call).
tenant_token() { env -u STAMP_TOKEN ctl token create --tenant "$1" --user "$2" 2>/dev/null || fail "token for $1/$2"; }

# api METHOD PATH [curl args...]: prints the HTTP status; body in $T/body.
# Uses $TOKEN.
api() {
  local m=$1 p=$2
  shift 2
  curl -sS --path-as-is -o "$T/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer ${TOKEN:-}" \
    "$@" "http://127.0.0.1:$API_PORT$p"
}

nsfield() { ctl ns get "$1" -o json | jq -r "$2"; }
ns_status() { nsfield "$1" .status; }
wait_ns() { wait_until "namespace $1 $2" "${3:-30}" sh -c "[ \"\$(ctl ns get $1 -o json | jq -r .status)\" = $2 ]"; }

# ---- PostgreSQL (tests/pg/pg.sh) ----

# A throwaway PostgreSQL cluster in $T/pg: 127.0.0.1 on a free port, kept
# across kill_pg/restart_pg (same port, same data).  PG_URL is its URL
# (superuser postgres, database postgres).  Stopped by finish and by the
# default EXIT trap (a test with a trap of its own adds stop_pg to it); a
# watcher kills it if the test is killed before either runs.  pg.sh's
# timings go to $T/pg-sh.log.
PG_DIR=$T/pg
PG_URL=
pg_sh() { bash "$STAMP_SRC/tests/pg/pg.sh" "$@" 2>>"$T/pg-sh.log"; }
start_pg() {
  PG_URL=$(PG_WATCH_PID=$$ pg_sh start "$PG_DIR") || fail "postgres did not start: $(tail -n 5 "$T/pg-sh.log")"
  log "postgres on $PG_URL ($(tail -n 1 "$T/pg-sh.log" | sed 's/.*: //'))"
}
# Clean stop (pg_ctl stop -m fast; a kill -9 if that fails).  Nothing when
# no cluster was started.
stop_pg() {
  [ -d "$PG_DIR/data" ] || return 0
  pg_sh stop "$PG_DIR" || pg_sh kill "$PG_DIR" || true
}
# kill -9 of the postmaster and all its processes (a crash of the server).
kill_pg() { pg_sh kill "$PG_DIR" || fail "kill -9 of postgres: $(tail -n 3 "$T/pg-sh.log")"; }
# Stops it if it runs, starts it again on the same port (crash recovery
# after kill_pg).
restart_pg() {
  PG_URL=$(pg_sh restart "$PG_DIR") || fail "postgres did not restart: $(tail -n 5 "$T/pg-sh.log")"
  log "postgres restarted on $PG_URL ($(tail -n 1 "$T/pg-sh.log" | sed 's/.*: //'))"
}
# pg_createdb NAME: a new database ([a-z_][a-z0-9_]*); prints its URL.  It
# runs in $(...), where fail would not end the test: url=$(pg_createdb x) || fail ...
pg_createdb() {
  pg_sh createdb "$PG_DIR" "$1" && return 0
  log "create database $1: $(tail -n 3 "$T/pg-sh.log")" >&2
  return 1
}

# ---- stampd replicas on one PostgreSQL (issue 15) ----
#
# start_replicas N starts PostgreSQL (start_pg, unless PG_URL is set), ONE
# HAProxy of the test's own (the front door no replica owns: each replica
# gets haproxy-socket=$HAP_SOCK and only the leader drives it) and N stampd
# replicas r1..rN: each its own data dir ($T/r<i>) and API port
# (R_PORTS[i]), all on the same store and state dir ($T/state, so STATE is
# what DATA is to one stampd), the same test-friendly flags as
# start_stampd_once, short election figures (R_ELECT), extra flags from
# R_ARGS; logs $T/r<i>.log.  Each replica writes its own client config
# ($T/client-r<i>.conf: its endpoint, the store's operator token); ctl
# talks to the replica STAMP_CONFIG names (use_replica i), ctl_on i to
# replica i, ctl_rr to the next live one, round robin.  The stamps' ports
# come from one claimed slot, shared by all (leases are in the store).
R_N=0
R_PIDS=()
R_PORTS=()
R_PAUSED=()
R_ELECT=(--set leader-lease=2s --set leader-renew-deadline=1500ms --set leader-retry=300ms)
R_ARGS=()
STATE=$T/state
HAP_PID=
HAP_SOCK=$T/hap.sock
LEADER=
FAILOVER_MS=

# hap_cmd CMD: one command on the shared HAProxy's admin socket, its reply on
# stdout (perl's core IO::Socket::UNIX: no socat on the test machines).
hap_cmd() {
  perl -MIO::Socket::UNIX -e '
    my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "hap.sock: $!\n";
    print $s "$ARGV[1]\n";
    print while <$s>;' "$HAP_SOCK" "$1"
}

# The shared front door, configured as src/traffic/haproxy.c write_config
# writes it for an HAProxy stampd owns.
start_fd_haproxy() {
  [ -n "$HAP_PID" ] && return 0
  [ -n "${FD_PORT:-}" ] || FD_PORT=$(free_port)
  cat >"$T/haproxy.cfg" <<HAP
global
    stats socket $HAP_SOCK mode 600 level admin
    noreuseport
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout queue 30s
    option http-server-close
frontend stamp-frontdoor
    bind 127.0.0.1:$FD_PORT
    http-request return status 200 content-type text/plain string "ok\n" if { path /.stamp/ping }
    default_backend stamps
backend stamps
    balance hdr(X-Tenant-Id)
    hash-type consistent sdbm avalanche
HAP
  /usr/sbin/haproxy -db -f "$T/haproxy.cfg" >>"$T/haproxy.log" 2>&1 &
  HAP_PID=$!
  for _ in $(seq 100); do
    hap_cmd "show info" >/dev/null 2>&1 && return 0
    kill -0 "$HAP_PID" 2>/dev/null || { HAP_PID=; fail "haproxy exited at start: $(tail -n 5 "$T/haproxy.log")"; }
    sleep 0.1
  done
  fail "haproxy did not come up on $HAP_SOCK"
}
stop_fd_haproxy() {
  [ -n "$HAP_PID" ] || return 0
  kill -TERM "$HAP_PID" 2>/dev/null || true
  wait "$HAP_PID" 2>/dev/null || true
  HAP_PID=
}

# Servers of the shared HAProxy's backend that take new requests (not in
# maintenance nor draining), sorted, one a line.
hap_serving() {
  hap_cmd "show stat" | awk -F, '$1 == "stamps" && $2 != "BACKEND" && $2 != "FRONTEND" && $18 !~ /MAINT|DRAIN/ {print $2}' | sort
}
# All the servers of the backend, whatever their state.
hap_all() { hap_cmd "show stat" | awk -F, '$1 == "stamps" && $2 != "BACKEND" && $2 != "FRONTEND" {print $2}' | sort; }

replica_live() { [ -n "${R_PIDS[$1]:-}" ] && [ -z "${R_PAUSED[$1]:-}" ] && kill -0 "${R_PIDS[$1]}" 2>/dev/null; }
live_replicas() { local i; for i in $(seq 1 "$R_N"); do replica_live "$i" && echo "$i"; done; return 0; }
r_token() { sed -n 's/^token: //p' "$T/client-r$1.conf"; }

# 0 when up, 1 when it exited at start.
start_replica_once() {
  local i=$1 port=${R_PORTS[$1]}
  rm -f "$T/client-r$i.conf"
  STAMP_CONFIG=$T/client-r$i.conf "$STAMP_BIN/stampd" --data-dir "$T/r$i" --listen "127.0.0.1:$port" \
    --frontdoor-listen "127.0.0.1:$FD_PORT" --set "haproxy-socket=$HAP_SOCK" \
    --set "store=$PG_URL" --set "state-dir=$STATE" --set "replica-id=r$i" "${R_ELECT[@]}" \
    --set frontdoor-sync-interval=200ms \
    --set fleet-min-regions=0 --set health-recovery-grace=2s \
    --set port-range=$PORT_BASE-$((PORT_BASE + 199)) \
    --set health-interval=100ms --set drain-poll-interval=50ms \
    --set backoff-initial=200ms --set backoff-max=2s --set stop-grace=2s \
    --set creating-timeout=60s --set probe-timeout=1s \
    "${R_ARGS[@]}" ${STAMP_SANITIZED:+--set pod-memory-max=4611686018427387904} >>"$T/r$i.log" 2>&1 &
  R_PIDS[$i]=$!
  R_PAUSED[$i]=
  for _ in $(seq 150); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && [ -s "$T/client-r$i.conf" ]; then
      return 0
    fi
    if ! kill -0 "${R_PIDS[$i]}" 2>/dev/null; then
      wait "${R_PIDS[$i]}" 2>/dev/null
      R_PIDS[$i]=
      return 1
    fi
    sleep 0.1
  done
  fail "replica r$i did not come up on $port"
}

# start_replica i: (re)starts replica i on its data dir and port (a port is
# picked on the first start, again if another process took it first).
start_replica() {
  local i=$1 attempt picked=
  [ -n "${PORT_BASE:-}" ] || claim_port_slot
  [ -n "${R_PORTS[$i]:-}" ] || picked=1
  for attempt in 1 2 3 4 5; do
    [ -n "${R_PORTS[$i]:-}" ] || R_PORTS[$i]=$(free_port)
    start_replica_once "$i" && { [ "$i" -gt "$R_N" ] && R_N=$i; return 0; }
    if [ -n "$picked" ] && [ "$attempt" -lt 5 ] && tail -n 5 "$T/r$i.log" | grep -q "in use"; then
      log "r$i: port ${R_PORTS[$i]} taken between pick and bind; picking again"
      R_PORTS[$i]=
      continue
    fi
    fail "replica r$i exited at start: $(tail -n 3 "$T/r$i.log")"
  done
}

start_replicas() {
  local n=$1 i
  [ -n "$PG_URL" ] || start_pg
  start_fd_haproxy
  for i in $(seq 1 "$n"); do start_replica "$i"; done
  use_replica 1
  log "replicas: $(for i in $(seq 1 "$n"); do printf 'r%s=%s(pid %s) ' "$i" "${R_PORTS[$i]}" "${R_PIDS[$i]}"; done)front door $FD_PORT"
}

# use_replica i: plain ctl (and wait_for, phase, ...) talk to replica i.
use_replica() { export STAMP_CONFIG=$T/client-r$1.conf; API_PORT=${R_PORTS[$1]}; }
# The replica plain ctl talks to.
used_replica() { local c=${STAMP_CONFIG##*/client-r}; echo "${c%.conf}"; }
# Points plain ctl at a live replica when the one it uses is gone.
use_live_replica() {
  replica_live "$(used_replica)" 2>/dev/null && return 0
  local i
  i=$(live_replicas | head -n 1)
  [ -n "$i" ] && use_replica "$i"
  return 0
}

# ctl_on i ARGS: stampctl against replica i.
ctl_on() { local i=$1; shift; STAMP_CONFIG=$T/client-r$i.conf ctl "$@"; }
# rr_pick: the next live replica, round robin (the counter is a file, so
# that it also moves when called in a subshell).
rr_pick() {
  local n k i
  n=$(cat "$T/rr" 2>/dev/null || echo 0)
  for k in $(seq 1 "$R_N"); do
    i=$(( (n + k - 1) % R_N + 1 ))
    if replica_live "$i"; then
      echo $((n + k)) >"$T/rr"
      echo "$i"
      return 0
    fi
  done
  return 1
}
# ctl_rr ARGS: stampctl against the next live replica.
ctl_rr() { local i; i=$(rr_pick) || { echo "no live replica" >&2; return 1; }; ctl_on "$i" "$@"; }

# GET /v1/cluster through the first live replica that answers.
cluster_json() {
  local i
  for i in $(live_replicas); do
    curl -fsS -m 5 -H "Authorization: Bearer $(r_token "$i")" "http://127.0.0.1:${R_PORTS[$i]}/v1/cluster" 2>/dev/null && return 0
  done
  return 1
}
# metric_on i NAME[{labels}]: the value of a metric on replica i (empty when absent).
metric_on() {
  curl -fsS -m 5 "http://127.0.0.1:${R_PORTS[$1]}/metrics" 2>/dev/null | awk -v m="$2" '$1 == m {print $2; exit}'
}
# leader_index: the replica holding a valid lease (GET /v1/cluster), or
# nothing.
leader_index() {
  local j h
  j=$(cluster_json) || return 0
  h=$(jq -r 'if .leader.valid then .leader.holder else "" end' <<<"$j" 2>/dev/null)
  case $h in r[0-9]*) echo "${h#r}" ;; esac
  return 0
}
# wait_leader [NOT] [TIMEOUT_S]: until a live replica other than NOT holds
# the lease and says so itself (its stamp_leader gauge is 1).  Sets LEADER,
# and FAILOVER_MS (the wait, in ms).  Not in $(...): it fails the test.
wait_leader() {
  local not=${1:-} t=${2:-30} t0 end l
  t0=$(date +%s%3N)
  end=$(( $(date +%s) + t ))
  while :; do
    l=$(leader_index)
    if [ -n "$l" ] && [ "$l" != "$not" ] && replica_live "$l" && [ "$(metric_on "$l" stamp_leader)" = 1 ]; then
      LEADER=$l
      FAILOVER_MS=$(( $(date +%s%3N) - t0 ))
      return 0
    fi
    [ "$(date +%s)" -lt "$end" ] || fail "no leader other than '${not}' after ${t}s (lease holder '$l'): $(cluster_json)"
    sleep 0.1
  done
}

# kill_replica i: kill -9 (a crash of that replica).
kill_replica() {
  local i=$1
  [ -n "${R_PIDS[$i]:-}" ] || return 0
  kill -9 "${R_PIDS[$i]}" 2>/dev/null || true
  wait "${R_PIDS[$i]}" 2>/dev/null || true
  R_PIDS[$i]=
  R_PAUSED[$i]=
  use_live_replica
}
# pause_replica i / resume_replica i: SIGSTOP / SIGCONT.
pause_replica() { kill -STOP "${R_PIDS[$1]}" && R_PAUSED[$1]=1; use_live_replica; }
resume_replica() { kill -CONT "${R_PIDS[$1]}"; R_PAUSED[$1]=; }

# Every replica stopped with SIGTERM (a stop must be clean, as stop_stampd
# counts), then the shared HAProxy.
stop_replicas() {
  local i rc
  for i in $(seq 1 "$R_N"); do
    [ -n "${R_PIDS[$i]:-}" ] || continue
    kill -CONT "${R_PIDS[$i]}" 2>/dev/null || true
    kill -TERM "${R_PIDS[$i]}" 2>/dev/null || true
  done
  for i in $(seq 1 "$R_N"); do
    [ -n "${R_PIDS[$i]:-}" ] || continue
    rc=0
    wait "${R_PIDS[$i]}" 2>/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
      log "replica r$i exited $rc after SIGTERM"
      STAMPD_BAD_EXITS=$((STAMPD_BAD_EXITS + 1))
    fi
    R_PIDS[$i]=
  done
  stop_fd_haproxy
}
crash_replicas() {
  local i
  for i in $(seq 1 "$R_N"); do
    [ -n "${R_PIDS[$i]:-}" ] && kill -9 "${R_PIDS[$i]}" 2>/dev/null
    R_PIDS[$i]=
  done
  stop_fd_haproxy
}
trap 'crash_replicas; crash_stampd; kill_owned; stop_azurite; stop_pg' EXIT

# psql_store SQL: a query on the store's database (unaligned, tuples only).
psql_store() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$PG_URL" -c "$1"; }

# proc_units PREFIX: the unit of each live process of the store's owner whose
# unit starts with PREFIX (group leaders only, as procs counts), one a line:
# a unit listed twice runs twice.
proc_units() {
  local owner prefix=${1:-} pid st pg env unit d
  owner=$(owner_id)
  [ -n "$owner" ] || return 0
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    env=$(tr '\0' '\n' 2>/dev/null <"$d/environ") || continue
    grep -qx "STAMPD_OWNER=$owner" <<<"$env" || continue
    unit=$(sed -n 's/^STAMP_UNIT=//p' <<<"$env")
    case "$unit" in "$prefix"*) ;; *) continue ;; esac
    read -r st pg < <(sed 's/.*) //' "$d/stat" 2>/dev/null | awk '{print $1, $3}') || continue
    [ "$st" = Z ] && continue
    [ "$pg" = "$pid" ] || continue
    echo "$unit"
  done
  return 0
}
