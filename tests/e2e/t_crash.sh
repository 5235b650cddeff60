#!/usr/bin/env bash
# kill -9 of stampd during deploy, drain and delete, at many points; after a
# restart every stamp must converge to the right phase with exactly the
# expected processes (none duplicated, none leaked), every exec step run
# exactly once, and no acknowledged request lost.
TEST_NAME=crash
. "$(dirname "$0")/lib.sh"

POINTS=${CRASH_POINTS:-8}
RUNS=$T/runs
mkdir -p "$RUNS"
start_stampd
# The example template, with each exec step also counting its own runs.
sed -e 's/name: crash-stamp/&/' \
    -e 's/name: synaxis-stamp/name: crash-stamp/' \
    -e "s|run: mkdir -p \"\$STAMP_DIR/rg\" \&\&|run: echo network >> $RUNS/\$STAMP_NAME \&\& mkdir -p \"\$STAMP_DIR/rg\" \&\&|" \
    -e "s|run: echo \"managed identity|run: echo security >> $RUNS/\$STAMP_NAME \&\& echo \"managed identity|" \
    -e "s|run: echo \"service bus|run: echo integration >> $RUNS/\$STAMP_NAME \&\& echo \"service bus|" \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/crash.yaml"
apply_template "$T/crash.yaml"

delay() { # a kill point: 0 .. 1.4 s, spread over the runs
  local i=$1
  printf '%d.%02d' $(( (i * 37 % 15) / 10 )) $(( (i * 37 % 15) % 10 * 10 ))
}

kills=0
for i in $(seq 1 "$POINTS"); do
  S=$(printf 'synaxis-sea-%03d' "$i")
  # --- deploy ---
  ctl deploy --region southeastasia --stamp-id "$i" --template crash-stamp >/dev/null || fail "deploy $i"
  sleep "$(delay "$i")"
  crash_stampd; kills=$((kills + 1))
  start_stampd
  wait_for "$S" active 60s
  expect_eq "$S deploy: 3 processes" "$(procs "$S/")" 3
  expect_eq "$S deploy: each exec step ran once" "$(sort "$RUNS/$S" | uniq -c | awk '{print $1}' | sort -u | tr -d ' \n')" 1
  expect_eq "$S deploy: 3 exec steps" "$(sort -u "$RUNS/$S" | wc -l)" 3

  # --- drain with a request in flight ---
  EP=$(endpoint "$S")
  curl -s -o /dev/null "http://$EP/work?ms=700" &
  CURL=$!
  ctl drain "$S" >/dev/null || fail "drain $i"   # acknowledged: must not be lost
  sleep "$(delay $((i + 3)))"
  crash_stampd; kills=$((kills + 1))
  start_stampd
  wait_for "$S" ready 60s
  wait $CURL 2>/dev/null
  wait_procs "$S/" 1 15
  expect_eq "$S drain: system pool only" "$(procs "$S/")" 1

  # --- delete (retire) ---
  ctl delete "$S" >/dev/null || fail "delete $i"
  sleep "$(delay $((i + 7)))"
  crash_stampd; kills=$((kills + 1))
  start_stampd
  wait_for "$S" deleted 60s
  expect_eq "$S delete: no process left" "$(procs "$S/")" 0
  expect_ok "$S delete: archive verified" test -s "$DATA/archive/$S/manifest.json"
  expect_ok "$S delete: no partial archive left" sh -c "! ls $DATA/archive | grep -q partial"
  expect_eq "$S delete: exec steps never re-ran" "$(grep -c . "$RUNS/$S")" 3
done

# Nothing of any stamp runs, nothing leaked, every stamp is Deleted.
expect_eq "no stamp processes at all" "$(procs synaxis-)" 0
# The front door survived 3 kills per stamp, adopted each time, never doubled.
expect_eq "one haproxy, adopted across every restart" "$(procs frontdoor/)" 1
expect_eq "front door has no servers left" \
  "$(ctl frontdoor -o json | jq '.servers | length')" 0
expect_eq "everything stampd owns" "$(procs)" 1
expect_eq "all Deleted" "$(ctl list -o json | jq -r '[.items[].status.phase] | unique | join(",")')" Deleted
log "kill points: $kills"
finish
