#!/usr/bin/env bash
# kubectl habits that need a live stampd: get -w and events -w follow a
# drain's phase changes in order from stampd's watch stream (not polling);
# health checks read back with get/describe and round-trip through apply;
# a stamp's step logs through stampctl logs.
TEST_NAME=cli-watch
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
ctl apply -f "$STAMP_SRC/deploy/healthchecks/synaxis-health.yaml" >/dev/null || fail "apply healthcheck"
ctl deploy --region westeurope --stamp-id 4 --template synaxis-stamp >/dev/null || fail deploy
S=synaxis-weu-004
wait_for $S active

# ---- get -w / events -w see a drain, in order ----
ctl get stamps -w >"$T/get-w.out" 2>"$T/get-w.err" &
GW=$!
ctl get stamp $S -w -o json >"$T/get-w.json" 2>/dev/null &
GJ=$!
ctl events -w >"$T/events-w.out" 2>/dev/null &
EW=$!
wait_until "watchers connected" 10 sh -c "grep -q $S '$T/get-w.out'"
sleep 0.5
ctl drain $S --force >/dev/null || fail drain
wait_for $S ready 20s
ctl activate $S >/dev/null || fail activate
wait_for $S active 20s
wait_until "the watch saw Ready -> Active" 10 grep -q "Ready -> Active" "$T/get-w.out"
kill $GW $GJ $EW 2>/dev/null
wait $GW $GJ $EW 2>/dev/null
expect_ok "get -w printed the list first" sh -c "head -n 2 '$T/get-w.out' | grep -q '^NAME'"
# The PHASE column (the messages may say the same words).
phases() { grep -v '^NAME' "$1" | cut -c77-98 | grep -o "[A-Za-z]* -> [A-Za-z]*" | tr '\n' ','; }
order=$(phases "$T/get-w.out")
expect_eq "get -w: the drain's phases in order" "$order" "Active -> Draining,Draining -> Ready,Ready -> Active,"
expect_eq "get NAME -w -o json: the same, as JSON lines" \
  "$(jq -r 'select(.event.to != null) | "\(.event.from)>\(.event.to)"' "$T/get-w.json" | tr '\n' ',')" \
  "Active>Draining,Draining>Ready,Ready>Active,"
expect_eq "events -w: the same phases" "$(phases "$T/events-w.out")" \
  "Active -> Draining,Draining -> Ready,Ready -> Active,"
expect_err "-w of a kind without a watch" "no watch" ctl get bundles -w

# ---- health checks: get, describe, round trip through apply ----
expect_ok "get hc lists the applied check" sh -c "ctl get hc | grep -q '^synaxis-health '"
expect_eq "get hc -o name" "$(ctl get hc -o name)" "healthcheck/synaxis-health"
expect_ok "describe hc" sh -c "ctl describe hc synaxis-health | grep -q checks"
expect_ok "get hc NAME -o yaml | apply -f -" sh -c "ctl get hc synaxis-health -o yaml | ctl apply -f - | grep -q unchanged"
expect_ok "get hc -o yaml (a List) | apply -f -" sh -c "ctl get hc -o yaml | ctl apply -f - | grep -q unchanged"
expect_ok "get templates -o yaml (a List) | apply -f -" sh -c "ctl get templates -o yaml | ctl apply -f - | grep -q unchanged"

# ---- a stamp's step logs ----
expect_ok "logs STAMP lists its step logs" sh -c "ctl logs $S | grep -q '^STEP'"
finish
