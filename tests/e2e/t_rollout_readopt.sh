#!/usr/bin/env bash
# A rollout after an aborted one (issue 13, item 5; the review's findings A
# and D).  The first rollout records a replacement for an old stamp (in the
# old stamp's spec.replacedBy), is aborted once that replacement is
# Active, and the operator force-deletes the replacement.  A second
# rollout of the same template must choose a new replacement (the recorded
# one is gone: not adopted, and replacedBy is overwritten) and complete,
# where it used to fail for ever ("replacement ... was retired or is
# gone").  A Ready (standby) old stamp is replaced by a stamp deployed
# wanting standby: it comes up to Ready, the rollout never sends it to
# standby, and it never serves front-door traffic.
TEST_NAME=rollout_readopt
. "$(dirname "$0")/lib.sh"

start_stampd --set fleet-min-regions=1
apply_template
FD=127.0.0.1:$FD_PORT
for id in 1 2 3; do
  ctl deploy --region westeurope --stamp-id $id --template synaxis-stamp >/dev/null || fail "deploy $id"
done
for s in synaxis-weu-001 synaxis-weu-002 synaxis-weu-003; do wait_for $s active 90s; done
ctl standby synaxis-weu-003 >/dev/null || fail "standby synaxis-weu-003"
wait_for synaxis-weu-003 ready 60s
ok "two stamps Active, one Ready"

# Revision 2: its smoke step waits for a file, so the first replacement
# stays Creating until the test lets it go.
sed "s|service bus topics for|service bus topics (rev2) for|; s|for i in \$(seq 100); do|while [ ! -f $T/smoke-ok ]; do sleep 0.2; done; for i in \$(seq 100); do|" \
  "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/rev2.yaml"
apply_template "$T/rev2.yaml"
ctl rollout --template synaxis-stamp --to-revision 2 --name first --timeout 120s >/dev/null || fail "rollout first"
ro() { ctl rollout status "$1" -o json | jq -r "$2"; }
wait_until "the first replacement recorded" 30 sh -c "[ -n \"\$(ctl rollout status first -o json | jq -r '[.status.items[] | select(.phase == \"WaitingActive\")][0].replacement // empty')\" ]"
ctl rollout pause first >/dev/null || fail "pause"
OLD=$(ro first '[.status.items[] | select(.phase == "WaitingActive")][0].old')
R1=$(ro first '[.status.items[] | select(.phase == "WaitingActive")][0].replacement')
expect_eq "$OLD records its replacement" "$(jfield "$OLD" .spec.replacedBy)" "$R1"
touch "$T/smoke-ok"
wait_for "$R1" active 90s
ctl rollout abort first >/dev/null || fail "abort"
wait_until "first Aborted" 20 sh -c "[ \"\$(ctl rollout status first -o json | jq -r .status.phase)\" = Aborted ]"
ctl delete "$R1" --force >/dev/null || fail "delete --force $R1"
wait_for "$R1" deleted 60s
expect_eq "$OLD still Active, serving" "$(phase "$OLD")" Active
ok "aborted with $R1 Active, then $R1 force-deleted"

# The second rollout, under light traffic (the standby replacement must
# never answer).
rm -f "$T/stop"
( while [ ! -f "$T/stop" ]; do
    for t in 1 2 3 4 5 6 7 8; do
      curl -sS -m 10 -o /dev/null -w '%{http_code} %header{x-stamp-name}\n' -H "X-Tenant-Id: t$t" \
        "http://$FD/work?ms=5" 2>/dev/null >>"$T/traffic" || echo "000 -" >>"$T/traffic"
    done
  done ) &
TRAFFIC=$!
ctl rollout --template synaxis-stamp --to-revision 2 --name second --timeout 120s >/dev/null || fail "rollout second"
wait_until "second Complete (or Failed)" 180 sh -c "ctl rollout status second -o json | jq -e '.status.phase == \"Complete\" or .status.phase == \"Failed\"' >/dev/null"
touch "$T/stop"
wait $TRAFFIC
expect_eq "the second rollout completes (a gone replacement is not adopted)" "$(ro second .status.phase)" Complete
R2=$(ctl rollout status second -o json | jq -r --arg o "$OLD" '.status.items[] | select(.old == $o) | .replacement')
[ -n "$R2" ] && [ "$R2" != "$R1" ] && ok "$OLD got a new replacement $R2 (not $R1)" || fail "replacement of $OLD: '$R2' (the gone one was $R1)"
expect_eq "$OLD's replacedBy overwritten" "$(jfield "$OLD" .spec.replacedBy)" "$R2"
expect_eq "$R2 replaces $OLD" "$(jfield "$R2" .spec.replaces)" "$OLD"
expect_eq "$R2 Active" "$(phase "$R2")" Active
expect_eq "$OLD retired" "$(phase "$OLD")" Deleted

# The Ready stamp's replacement: deployed wanting standby, Ready, never
# sent to standby by the rollout, never serving.
RS=$(ro second '.status.items[] | select(.old == "synaxis-weu-003") | .replacement')
[ -n "$RS" ] || fail "no replacement for synaxis-weu-003"
expect_eq "$RS is Ready" "$(phase "$RS")" Ready
expect_eq "$RS wants standby" "$(jfield "$RS" .spec.desired)" standby
expect_eq "the rollout never asked $RS to go to standby" \
  "$(ctl events "stamp/$RS" -o json | jq '[.items[] | select(.reason == "StandbyRequested")] | length')" 0
expect_eq "synaxis-weu-003 retired" "$(phase synaxis-weu-003)" Deleted
total=$(wc -l <"$T/traffic")
[ "$total" -gt 20 ] || fail "too little traffic: $total"
expect_eq "0 failed requests ($total)" "$(awk '$1 != 200' "$T/traffic" | wc -l)" 0
# The replacement passes through Active for a moment (Creating -> Active
# -> Draining -> Ready): that it takes no request needs the stamp
# controller's front-door change (a successor takes over a shared server
# only while its spec.desired is active, sc_frontdoor_owner); until that is
# merged this check can fail, by design.
expect_eq "the standby replacement $RS served no request" "$(awk -v s="$RS" '$2 == s' "$T/traffic" | wc -l)" 0
expect_eq "seven stamps in all (three old, $R1 force-deleted, three new: no second live replacement)" \
  "$(ctl list -o json | jq '.items | length')" 7
finish
