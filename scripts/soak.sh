#!/usr/bin/env bash
# soak.sh - kill -9 of stampd at random moments under a mixed load (issue 16,
# item 2).  One stampd (SQLite store) on tests/e2e/lib.sh; a background load
# deploys, drains, activates and deletes stamps and creates namespaces, runs
# pods in them and finalizes them (which reaps them), logging every
# operation it tries and every one acknowledged (stampctl exit 0: HTTP 2xx).
# SOAK_KILLS times (default 1000): after 0.2-3 s, kill -9 of stampd and a
# restart.  Every SOAK_CHECK_EVERY kills (default 10) and at the end the load
# stops, stampd is left to converge and the invariants are checked:
#   - no acknowledged write lost: every acknowledged deploy / ns create is in
#     the store, and an acknowledged operation no later one was tried on
#     left its resource in the state it asks for;
#   - every exec step ran exactly once (each step appends a line per run);
#   - one process per unit, none leaked (the count each phase implies);
#   - no namespace reaped without its diagnostics archived and verified (the
#     recorded sha256 matches the blob), nor reaped twice;
#   - HAProxy's serving servers equal the Active stamps.
# SOAK_STORE=pg: three replicas on a throwaway PostgreSQL behind one shared
# HAProxy instead; each kill is of the leader (two times in three) or of a
# random replica, which is restarted; the load goes to any replica, and the
# same invariants hold across the replicas (files in the shared state dir).
# Prints kills survived, every violation found and the duration; exits 1
# when a violation was found.
#
# STAMP_BIN (build directory) and STAMP_SRC (source tree) as for ctest;
# `make soak` sets both.
TEST_NAME=soak
: "${STAMP_SRC:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${STAMP_BIN:=$STAMP_SRC/build}"
export STAMP_SRC STAMP_BIN
. "$STAMP_SRC/tests/e2e/lib.sh"

KILLS=${SOAK_KILLS:-1000}
CHECK_EVERY=${SOAK_CHECK_EVERY:-10}
CONVERGE_S=${SOAK_CONVERGE_S:-120}
MAX_STAMPS=${SOAK_MAX_STAMPS:-4}
MAX_NS=${SOAK_MAX_NS:-4}
RUNS=$T/runs
OPS=$T/ops.log          # "<ms> try|ack OP NAME", appended by the load
VIOL=$T/violations
mkdir -p "$RUNS"
: >"$OPS"
: >"$VIOL"
T0=$(date +%s)
KILLED=0
CHECKS=0

violation() { log "VIOLATION: $*"; echo "$*" >>"$VIOL"; }

summary() {
  local n
  n=$(grep -c . "$VIOL")
  echo "==== soak: $KILLED kill(s) of $KILLS survived, $CHECKS invariant check(s), $n violation(s), $(( $(date +%s) - T0 )) s ===="
  [ -s "$FAILOVERS" ] && echo "     failovers: $(wc -l <"$FAILOVERS") kill(s) of the leader, next leader after median $(sort -n "$FAILOVERS" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}') ms, worst $(sort -n "$FAILOVERS" | tail -n 1) ms"
  echo "     operations: $(grep -c ' try ' "$OPS") tried, $(grep -c ' ack ' "$OPS") acknowledged ($(awk '$2 == "ack" {print $3}' "$OPS" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//'))"
  echo "     autoscaler: $(ctl events autoscaler/soak-as -o json 2>/dev/null | jq -r '[.items[] | .reason] | group_by(.) | map("\(.[0]) \(length)") | join(", ")') (its recorded events)"
  echo "     MTTC: $(grep -c ' ack mttc-verify ' "$OPS") verification(s) matched, $(grep -c -- '^livecalc-mttc-.* reaped' "$T/nsst" 2>/dev/null) verification namespace(s) reaped"
  [ "$n" -eq 0 ] || sed 's/^/     violation: /' "$VIOL"
}

# lib.sh's fail ends the run (stampd not coming back, say): a violation too,
# with the figures printed first.
eval "lib_$(declare -f fail)"
fail() {
  violation "fatal: $*"
  stop_load
  summary
  lib_fail "$@"
}

ARGS=("${NS_ARGS[@]}" --set reap-interval=500ms --set reap-retry-initial=200ms --set reap-retry-max=1s)
STORE=${SOAK_STORE:-sqlite}
FAILOVERS=$T/failovers   # pg: ms from a leader's kill to the next leader
: >"$FAILOVERS"
case $STORE in
  sqlite)
    start_stampd "${ARGS[@]}"
    FILES=$DATA
    LOGS=("$T/stampd.log")
    ;;
  pg)
    R_ARGS=("${ARGS[@]}" --set inactivity-threshold=1h)
    start_replicas 3
    wait_leader
    FILES=$STATE
    LOGS=("$T"/r[0-9]*.log)
    # The load runs in a subshell that does not see restarts: it picks a
    # replica by number, and a dead one refuses (not acknowledged).
    ctl() { local i=$((RANDOM % R_N + 1)); [ -s "$T/client-r$i.conf" ] || i=$(live_replicas | head -n 1); STAMP_CONFIG=$T/client-r$i.conf "$STAMP_BIN/stampctl" "$@"; }
    ;;
  *) fail "SOAK_STORE: sqlite or pg, not $STORE" ;;
esac
# The example template, each exec step also counting its own runs (as t_crash).
sed -e 's/name: synaxis-stamp/name: soak-stamp/' \
    -e "s|run: mkdir -p \"\$STAMP_DIR/rg\" \&\&|run: echo network >> $RUNS/\$STAMP_NAME \&\& mkdir -p \"\$STAMP_DIR/rg\" \&\&|" \
    -e "s|run: echo \"managed identity|run: echo security >> $RUNS/\$STAMP_NAME \&\& echo \"managed identity|" \
    -e "s|run: echo \"service bus|run: echo integration >> $RUNS/\$STAMP_NAME \&\& echo \"service bus|" \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/soak.yaml"
grep -q 'echo integration' "$T/soak.yaml" || fail "template rewrite did not take (exec step counters)"
apply_template "$T/soak.yaml"
# (a soak outlives the default hour of a token)
TT=$(env -u STAMP_TOKEN ctl token create --tenant acme --user soak --ttl 7d) || fail "tenant token"

# MTTC: a bundle and one recorded run of bucket soak-mttc; the load then
# verifies it (each verification runs the pipeline again in a namespace of
# its own, which it reaps).
head -c 20000 /dev/urandom >"$T/model.bin"
BUNDLE=$(STAMP_TOKEN=$TT ctl bundle push "$T/model.bin" -o json | jq -r .hash)
[ ${#BUNDLE} = 64 ] || fail "bundle push"
STAMP_TOKEN=$TT ctl ns create soak-mttc >/dev/null || fail "ns create soak-mttc"
STAMP_TOKEN=$TT ctl ns run livecalc-bucket-soak-mttc --bundle "$BUNDLE" --set scenarios=50 -o json >"$T/run.json" ||
  fail "mttc run: $(cat "$T/run.json")"

# The autoscaler governs westeurope (the load's own stamps are in
# southeastasia): the load moves its floor between 1 and 2, so it deploys,
# drains to standby and activates stamps of its own; scale-in (the stamps
# are idle) takes it back down to the floor.
AS_MAX=3
as_yaml() {
  cat <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: soak-as}
spec:
  template: soak-stamp
  regions: [westeurope]
  regionMinimums: {westeurope: $1}
  interval: 1s
  scaleOut:
    triggers: [{metric: cpu_utilization, threshold: 95, duration: 60s}]
    cooldown: 2s
    maxStamps: $AS_MAX
  scaleIn:
    triggers: [{metric: cpu_utilization, threshold: 50, duration: 2s}]
    cooldown: 2s
    minStamps: $1
  standby: {maxAge: 72h, scaleDown: {generalPool: 0, gpuPool: 0}}
Y
}
as_yaml 1 >"$T/as-1.yaml"
as_yaml 2 >"$T/as-2.yaml"
ctl apply -f "$T/as-1.yaml" >/dev/null || fail "apply autoscaler"

# ---- the load ----

# op OP NAME cmd...: logs the try, runs cmd (20 s at most), logs the ack.
op() {
  local o=$1 n=$2
  shift 2
  echo "$(date +%s%3N) try $o $n" >>"$OPS"
  if timeout 20 "$@" >>"$T/load.log" 2>&1; then echo "$(date +%s%3N) ack $o $n" >>"$OPS"; fi
}
# Names the load has tried to create of a kind (stamp / ns) and not seen an
# acknowledged delete / finalize of.
live_names() {
  awk -v c="$1" -v d="$2" '$3 == c {live[$4] = 1} $2 == "ack" && $3 == d {delete live[$4]} END {for (n in live) print n}' "$OPS"
}
pick() { local a; mapfile -t a; [ ${#a[@]} -gt 0 ] && echo "${a[RANDOM % ${#a[@]}]}"; }
next_id() { local n; n=$(( $(cat "$T/$1.next" 2>/dev/null || echo 0) + 1 )); echo "$n" >"$T/$1.next"; echo "$n"; }

load() {
  local r s n id
  while [ ! -e "$T/stop" ]; do
    r=$((RANDOM % 100))
    if [ "$r" -lt 45 ]; then
      # stamps: deploy while few, else drain / activate / delete one
      s=$(live_names deploy delete | pick)
      if [ "$(live_names deploy delete | wc -l)" -lt "$MAX_STAMPS" ] && { [ -z "$s" ] || [ $((RANDOM % 3)) -eq 0 ]; }; then
        id=$(next_id stamp)
        op deploy "$(printf 'synaxis-sea-%03d' "$id")" ctl deploy --region southeastasia --stamp-id "$id" --template soak-stamp
      elif [ -n "$s" ]; then
        case $((RANDOM % 5)) in
          0 | 1) op drain "$s" ctl drain "$s" ;;
          2 | 3) op activate "$s" ctl activate "$s" ;;
          4) op delete "$s" ctl delete "$s" ;;
        esac
      fi
    elif [ "$r" -lt 52 ]; then
      # an MTTC verification (acknowledged only when the hashes match)
      op mttc-verify "mttc-$(next_id mttc)" env STAMP_TOKEN="$TT" ctl mttc verify --bucket soak-mttc --bundle "$BUNDLE"
    elif [ "$r" -lt 56 ]; then
      # the autoscaler's floor in westeurope: 1 or 2
      id=$((1 + RANDOM % 2))
      op "as-min-$id" soak-as ctl apply -f "$T/as-$id.yaml"
    else
      # namespaces: create while few, else a short pod or a finalize (reap)
      n=$(live_names ns-create ns-finalize | pick)
      if [ "$(live_names ns-create ns-finalize | wc -l)" -lt "$MAX_NS" ] && { [ -z "$n" ] || [ $((RANDOM % 3)) -eq 0 ]; }; then
        id=$(next_id ns)
        op ns-create "livecalc-bucket-soak-$id" env STAMP_TOKEN="$TT" ctl ns create "soak-$id"
      elif [ -n "$n" ]; then
        if [ $((RANDOM % 3)) -eq 0 ]; then
          op ns-finalize "$n" env STAMP_TOKEN="$TT" ctl ns finalize "$n"
        else
          id=$(next_id pod)
          op ns-pod "$n" env STAMP_TOKEN="$TT" ctl ns run-pod "$n" "p$id" -- --steps 50 --interval-ms 5
        fi
      fi
    fi
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
  done
}
LOAD_PID=
start_load() { rm -f "$T/stop"; load & LOAD_PID=$!; }
stop_load() {
  [ -n "$LOAD_PID" ] || return 0
  touch "$T/stop"
  wait "$LOAD_PID" 2>/dev/null
  LOAD_PID=
}

# ---- convergence and invariants ----

STEADY='^(Active|Ready|Deleted|Failed)$'
converged() {
  ctl list -o json >"$T/list.json" 2>/dev/null || return 1
  STAMP_TOKEN=$TT ctl ns list -o json >"$T/ns.json" 2>/dev/null || return 1
  [ -z "$(jq -r '.items[].status.phase' "$T/list.json" | grep -Ev "$STEADY")" ] || return 1
  # the autoscaler has brought westeurope up to its last acknowledged floor
  [ "$(jq '[.items[] | select((.metadata.name | startswith("synaxis-weu-")) and .status.phase == "Active")] | length' "$T/list.json")" -ge \
    "$(awk '$2 == "ack" && $3 ~ /^as-min-/ {f = substr($3, 8)} END {print (f + 0 > 0) ? f : 1}' "$OPS")" ] || return 1
  [ -z "$(jq -r '.namespaces[] | select(.status == "finalized" or .status == "reaping") | .namespace' "$T/ns.json")" ]
}

# The phase (stamp) or status (namespace) an acknowledged operation leaves.
want_of() {
  case $1 in
    deploy | activate) echo Active ;;
    drain) echo Ready ;;
    delete) echo Deleted ;;
    ns-create | ns-pod) echo active ;;
    ns-finalize) echo reaped ;;
    *) echo - ;; # checked on their own
  esac
}

check() {
  CHECKS=$((CHECKS + 1))
  local end=$(( $(date +%s) + CONVERGE_S )) name ph st want last lastack units dup
  while ! converged; do
    if [ "$(date +%s)" -ge "$end" ]; then
      violation "check $CHECKS: no convergence in ${CONVERGE_S}s: $(jq -r '.items[] | select(.status.phase | test("'"$STEADY"'") | not) | "\(.metadata.name)=\(.status.phase)"' "$T/list.json" 2>/dev/null | tr '\n' ' ')$(jq -r '.namespaces[] | select(.status == "finalized" or .status == "reaping") | "\(.namespace)=\(.status)"' "$T/ns.json" 2>/dev/null | tr '\n' ' ')"
      break
    fi
    sleep 0.5
  done
  ctl list -o json >"$T/list.json" || { violation "check $CHECKS: list failed"; return; }
  STAMP_TOKEN=$TT ctl ns list -o json >"$T/ns.json" || { violation "check $CHECKS: ns list failed"; return; }
  jq -r '.items[] | "\(.metadata.name) \(.status.phase)"' "$T/list.json" | sort >"$T/phases"
  jq -r '.namespaces[] | "\(.namespace) \(.status)"' "$T/ns.json" | sort >"$T/nsst"

  # No acknowledged write lost: acknowledged creates exist; the last
  # operation tried on a resource, when acknowledged, holds.
  for name in $(awk '$2 == "ack" && ($3 == "deploy" || $3 == "ns-create") {print $4}' "$OPS" | sort -u); do
    grep -q "^$name " "$T/phases" "$T/nsst" 2>/dev/null || violation "check $CHECKS: acknowledged create of $name lost (not in the store)"
  done
  # (one pass over the log: each name whose last line is an ack, and the
  # operation last tried on it)
  awk '$2 == "try" {o[$4] = $3} {k[$4] = $2} END {for (n in k) if (k[n] == "ack") print n, o[n]}' "$OPS" |
  while read -r name last; do
    want=$(want_of "$last")
    [ "$want" = - ] && continue
    st=$(awk -v n="$name" '$1 == n {print $2}' "$T/phases" "$T/nsst")
    [ "$st" = "$want" ] || violation "check $CHECKS: $name: acknowledged $last, now '${st:-absent}' (want $want)"
  done

  # Exec steps exactly once (3 of them for a stamp that came up).
  while read -r name ph; do
    f=$RUNS/$name
    dup=$(sort "$f" 2>/dev/null | uniq -d | tr '\n' ' ')
    [ -z "$dup" ] || violation "check $CHECKS: $name: exec step(s) ran twice: $dup"
    case $ph in Active | Ready)
      [ "$(sort -u "$f" 2>/dev/null | wc -l)" = 3 ] || violation "check $CHECKS: $name ($ph): exec steps run: $(sort -u "$f" 2>/dev/null | tr '\n' ' ')" ;;
    esac
  done <"$T/phases"

  # One process per unit; the count each phase implies; one HAProxy.
  # The autoscaler acts while the load is stopped: processes are compared
  # only for stamps whose phase is the same before and after the scan (and
  # the scan is taken once more if one moved).
  local try2 moved
  for try2 in 1 2 3; do
    units=$(proc_units)
    ctl list -o json | jq -r '.items[] | "\(.metadata.name) \(.status.phase)"' | sort >"$T/phases2"
    moved=$(comm -3 "$T/phases" "$T/phases2" | awk '{print $1}' | sort -u | tr '\n' ' ')
    [ -z "$moved" ] && break
    cp "$T/phases2" "$T/phases"
  done
  dup=$(sed 's/@.*//' <<<"$units" | sort | uniq -d | tr '\n' ' ')
  [ -z "$dup" ] || violation "check $CHECKS: unit(s) run twice: $dup"
  # (with replicas the HAProxy is the test's own, no replica's unit)
  [ "$(grep -c '^frontdoor/' <<<"$units")" = "$([ "$STORE" = pg ] && echo 0 || echo 1)" ] || violation "check $CHECKS: front door processes: $(grep -c '^frontdoor/' <<<"$units")"
  while read -r name ph; do
    case $ph in Active) want=3 ;; Ready) want=1 ;; Deleted) want=0 ;; *) continue ;; esac
    case " $moved " in *" $name "*) continue ;; esac
    n=$(grep -c "^$name/" <<<"$units")
    [ "$n" = "$want" ] || violation "check $CHECKS: $name ($ph): $n process(es), want $want"
  done <"$T/phases"

  # Reaped namespaces: no pod left, directory gone, reaped once, and every
  # diagnostics file stored with the recorded checksum (the archive of each
  # once: $T/verified lists those checked).
  touch "$T/verified"
  cat "${LOGS[@]}" | sed -n 's/.*Successfully reaped namespace \(.*\)$/\1/p' | sort | uniq -d |
    while read -r name; do violation "check $CHECKS: $name reaped more than once"; done
  while read -r name st; do
    [ "$st" = reaped ] || continue
    grep -q "^ns/$name/" <<<"$units" && violation "check $CHECKS: $name reaped but pods run"
    [ -e "$FILES/namespaces/$name" ] && violation "check $CHECKS: $name reaped but its directory is left"
    grep -qx "$name" "$T/verified" && continue
    echo "$name" >>"$T/verified"
    STAMP_TOKEN=$TT ctl ns get "$name" -o json >"$T/g.json" || { violation "check $CHECKS: ns get $name"; continue; }
    [ "$(jq -r .diagnostics.logs_archived "$T/g.json")" = true ] || violation "check $CHECKS: $name reaped without logs_archived"
    jq -r '.diagnostics.files[]? | "\(.path) \(.sha256)"' "$T/g.json" | while read -r p sha; do
      [ "$(sha256sum <"$FILES/blobs/diagnostics/$p" 2>/dev/null | cut -d' ' -f1)" = "$sha" ] ||
        echo "check $CHECKS: $name: diagnostics $p missing or not its recorded sha256" >>"$VIOL"
    done
  done <"$T/nsst"

  # MTTC: no verification namespace left behind (each reaps its own; one
  # cut short by a kill is taken by the reaper after the restart).
  left=$(awk '$1 ~ /^livecalc-mttc-/ && $2 != "reaped" {printf "%s=%s ", $1, $2}' "$T/nsst")
  [ -z "$left" ] || violation "check $CHECKS: verification namespace(s) not reaped: $left"

  # The autoscaler: never above maxStamps in its region, its floor held
  # (the last floor acknowledged; scale-in may not have come down yet).
  local floor weu_live weu_act
  floor=$(awk '$2 == "ack" && $3 ~ /^as-min-/ {f = substr($3, 8)} END {print f + 0}' "$OPS")
  [ "$floor" -gt 0 ] || floor=1
  weu_live=$(awk '$1 ~ /^synaxis-weu-/ && $2 != "Deleted" && $2 != "Ready"' "$T/phases" | wc -l)
  weu_act=$(awk '$1 ~ /^synaxis-weu-/ && $2 == "Active"' "$T/phases" | wc -l)
  [ "$weu_live" -le "$AS_MAX" ] || violation "check $CHECKS: autoscaler: $weu_live stamps serving in westeurope, maxStamps $AS_MAX"
  [ "$weu_act" -ge "$floor" ] || violation "check $CHECKS: autoscaler: $weu_act Active in westeurope, floor $floor"

  # HAProxy: the servers taking traffic are the Active stamps.
  [ "$STORE" = pg ] || HAP_SOCK=$DATA/frontdoor/admin.sock
  # The autoscaler goes on acting while the load is stopped: HAProxy is
  # compared with a list of Active stamps that did not change around it.
  local hap act before try
  for try in 1 2 3 4 5; do
    before=$(ctl list -o json | jq -r '.items[] | select(.status.phase == "Active") | .metadata.name' | sort | tr '\n' ' ')
    hap=$(hap_serving | tr '\n' ' ')
    act=$(ctl list -o json | jq -r '.items[] | select(.status.phase == "Active") | .metadata.name' | sort | tr '\n' ' ')
    [ "$before" = "$act" ] && break
    sleep 0.5
  done
  [ "$hap" = "$act" ] || violation "check $CHECKS: HAProxy serves [$hap], Active stamps [$act]"
  log "check $CHECKS after $KILLED kill(s): $(awk '{print $2}' "$T/phases" | sort | uniq -c | awk '{printf "%s %s ", $2, $1}')| ns $(awk '{print $2}' "$T/nsst" | sort | uniq -c | awk '{printf "%s %s ", $2, $1}')| violations so far $(grep -c . "$VIOL")"
}

# ---- the kills ----
log "soak: $KILLS kill(s), invariants every $CHECK_EVERY, dir $T"
for k in $(seq 1 "$KILLS"); do
  [ -n "$LOAD_PID" ] || start_load
  ms=$((200 + RANDOM % 2801))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  if [ "$STORE" = pg ]; then
    victim=$(leader_index)
    [ -n "$victim" ] && [ $((RANDOM % 3)) -ne 0 ] || victim=$((RANDOM % R_N + 1))
    was_leader=$(leader_index)
    kill_replica "$victim"
    if [ "$victim" = "$was_leader" ]; then
      wait_leader "$victim" 60
      echo "$FAILOVER_MS" >>"$FAILOVERS"
    fi
    start_replica "$victim"
  else
    crash_stampd
    start_stampd "${ARGS[@]}"
  fi
  KILLED=$k
  [ $((k % 10)) -eq 0 ] && log "progress: $k/$KILLS kills, $(grep -c ' ack ' "$OPS") acknowledged operations, $(grep -c . "$VIOL") violation(s)"
  if [ $((k % CHECK_EVERY)) -eq 0 ] || [ "$k" -eq "$KILLS" ]; then
    stop_load
    check
  fi
done
stop_load
summary
[ -s "$VIOL" ] && FAILED=$((FAILED + 1))
finish
