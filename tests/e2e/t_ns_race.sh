#!/usr/bin/env bash
# Pods created while their namespace is reaped: four clients create pods in
# a loop while a manual reap runs (six rounds, a namespace each).  Every
# create must either be refused (4xx) or have its pod's log in the reap's
# archive: a pod started between the reap's stop and its delete would be
# deleted with its log never archived.  Afterwards no pod process and no
# directory of the namespace may be left.  The namespace holds many small
# files (every pod create walks them to check the disk budget, which
# widens the window between a create's look at the phase and its start)
# and three large logs (the archive takes a while).
TEST_NAME=ns-race
. "$(dirname "$0")/lib.sh"

start_stampd --set pod-command=/bin/sh --set ns-max-pods=4096 --set ns-disk-max=17179869184
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token acme rita)
TOKEN=$STAMP_TOKEN
BLOBS=$DATA/blobs/diagnostics

# creator K NS OUT: creates pods in NS until $T/stop appears, one line
# "POD HTTP-STATUS" per create into OUT.
creator() {
  local k=$1 ns=$2 out=$3 i=0 code
  while [ ! -e "$T/stop" ] && [ $i -lt 500 ]; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' \
      -d "{\"name\":\"c$k-$i\",\"args\":[\"-c\",\"echo pod c$k-$i started; echo pod c$k-$i done\"]}" \
      "http://127.0.0.1:$API_PORT/v1/platform/namespaces/$ns/pods")
    echo "c$k-$i $code" >>"$out"
    i=$((i + 1))
  done
}

TOTAL=0 ACCEPTED=0 REFUSED=0 OTHER=0 LOST=0 ARCHIVED=0
# race_round R: one namespace, its reap, four creators; checks the rule.
race_round() {
  local r=$1 ns=livecalc-bucket-race-$1 out=$T/creates-$1 pids=() code pod p
  ctl ns create race-$r >/dev/null || fail "create $r"
  # A namespace that takes a while to reap: large logs to archive, and many
  # small files that every pod create walks (the disk budget).
  for p in big-a big-b big-c; do
    ctl ns run-pod $ns $p -- -c 'yes "a line of a large log" | head -c 8000000' >/dev/null || fail "pod $p"
  done
  ctl ns run-pod $ns filler -- -c 'seq 1 30000 | xargs touch; echo filled' >/dev/null || fail "pod filler"
  wait_until "setup pods of round $r done" 120 sh -c "[ \"\$(ctl ns pods $ns -o json | jq '[.pods[] | select(.phase == \"Succeeded\")] | length')\" = 4 ]"
  rm -f "$T/stop"
  : >"$out"
  for k in 1 2 3 4; do
    creator $k $ns "$out" &
    pids+=($!)
  done
  sleep 1
  code=$(api POST "/v1/platform/namespaces/$ns/reap")
  expect_eq "round $r: the reap answers 200" "$code" 200
  sleep 1 # the creators go on against the reaped namespace
  touch "$T/stop"
  wait "${pids[@]}"
  expect_eq "round $r: reaped" "$(ns_status $ns)" reaped
  ctl ns get $ns -o json >"$T/ns-$r.json"
  TOTAL=$((TOTAL + $(wc -l <"$out")))
  ACCEPTED=$((ACCEPTED + $(awk '$2 == 201' "$out" | wc -l)))
  REFUSED=$((REFUSED + $(awk '$2 ~ /^4/' "$out" | wc -l)))
  OTHER=$((OTHER + $(awk '$2 != 201 && $2 !~ /^4/' "$out" | wc -l)))
  while read -r pod code; do
    [ "$code" = 201 ] || continue
    p=$(jq -r --arg f "/logs/$pod.log" '.diagnostics.blob_paths[] | select(endswith($f))' "$T/ns-$r.json")
    if [ -n "$p" ] && [ -f "$BLOBS/$p" ]; then
      ARCHIVED=$((ARCHIVED + 1))
    else
      LOST=$((LOST + 1))
      log "round $r: pod $pod was created (201) but its log is not in the archive"
    fi
  done <"$out"
  expect_eq "round $r: no pod process left" "$(procs "ns/$ns/")" 0
  [ ! -e "$DATA/namespaces/$ns" ] || fail "round $r: the namespace's directory is back after its reap: $(ls "$DATA/namespaces/$ns/pods" | head -n 5 | tr '\n' ' ')"
}

# The window is narrow: six rounds (the code before the fix lost a pod in
# about one round of three).
for r in 1 2 3 4 5 6; do race_round $r; done

# ---- every create refused, or archived ----
log "pod creates: $TOTAL in all, $ACCEPTED accepted, $REFUSED refused (4xx), $OTHER other; accepted pods with their log archived: $ARCHIVED"
expect_eq "no create answered other than 201 or 4xx" "$OTHER" 0
[ "$ACCEPTED" -gt 0 ] || fail "no create was accepted before a reap: the test did not race"
[ "$REFUSED" -gt 0 ] || fail "no create was refused: the creators did not outlast the reaps"
expect_eq "every accepted pod's log archived" "$LOST" 0
# A create after the reap is refused, naming the phase.
code=$(api POST "/v1/platform/namespaces/livecalc-bucket-race-1/pods" -H 'Content-Type: application/json' -d '{"name":"late","args":["-c","true"]}')
expect_eq "a create after the reap: 409" "$code:$(jq -r .error.code "$T/body")" "409:PhaseConflict"
expect_ok "and names the phase" grep -q "reaped" "$T/body"
finish
