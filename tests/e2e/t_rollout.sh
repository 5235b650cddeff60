#!/usr/bin/env bash
# Blue-green rotation (issue 13, item 5): three stamps in two regions under
# continuous front-door traffic are rolled to a second template revision.
# 0 failed requests; every old stamp replaced by exactly one stamp of the
# new revision in its region (kill -9 of stampd at several points of the
# rollout resumes it without a second replacement); the fleet rule and the
# number of serving stamps held throughout; each tenant moved at most once
# (needs the stamp controller's front-door takeover, spec.frontdoorServer:
# until that is merged this last check fails, by design); pause and resume;
# the autoscaler holds while the rollout runs; a second rollout of the
# template is refused; a replacement that fails stops the rollout with the
# old stamp serving, and resume retries it in place.
TEST_NAME=rollout
. "$(dirname "$0")/lib.sh"

start_stampd --set fleet-min-regions=2
apply_template
FD=127.0.0.1:$FD_PORT
for s in "westeurope 1" "westeurope 2" "eastus 1"; do
  set -- $s
  ctl deploy --region "$1" --stamp-id "$2" --template synaxis-stamp >/dev/null || fail "deploy $s"
done
OLD="synaxis-weu-001 synaxis-weu-002 synaxis-eus-001"
for s in $OLD; do wait_for $s active 90s; done
ok "three stamps Active in two regions"

# A paused autoscaler of the template: it must hold (and say so) while the
# rollout runs, and not otherwise.
cat >"$T/as.yaml" <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: fleet}
spec:
  template: synaxis-stamp
  paused: true
  interval: 1s
  scaleOut:
    triggers: [{metric: cpu_utilization, threshold: 90, duration: 3s}]
    maxStamps: 8
  scaleIn:
    triggers: [{metric: cpu_utilization, threshold: 1, duration: 3s}]
    minStamps: 2
Y
ctl apply -f "$T/as.yaml" >/dev/null || fail "apply autoscaler"

# Continuous traffic: three loops over 24 tenants; each line is
# "ms tenant status stamp" (the workload names itself in X-Stamp-Name).
traffic() {
  local i=0 t out
  while [ ! -f "$T/stop" ]; do
    t=t$(( (i * 3 + $1) % 24 ))
    out=$(curl -sS -m 20 -o /dev/null -w '%{http_code} %header{x-stamp-name}' -H "X-Tenant-Id: $t" \
      "http://$FD/work?ms=10" 2>/dev/null) || out="000 -"
    echo "$(date +%s%3N) $t $out" >>"$T/traffic.$1"
    i=$((i + 1))
  done
}
# Serving stamps (Active, meant to stay) and their regions, every 200 ms.
sampler() {
  while [ ! -f "$T/stop" ]; do
    ctl list -o json 2>/dev/null | jq -r '[.items[] | select(.status.phase == "Active" and (.spec.desired // "active") == "active")]
      | "\(length) \([.[].spec.region] | unique | length)"' >>"$T/fleet.samples" 2>/dev/null
    sleep 0.2
  done
}
rm -f "$T/stop"
BG=()
# The loops end with the test whatever way it ends (a loop left running
# keeps ctest's output pipe open, and ctest waits for it).
trap 'touch "$T/stop" 2>/dev/null; [ ${#BG[@]} -gt 0 ] && kill "${BG[@]}" 2>/dev/null; crash_stampd; kill_owned; stop_azurite' EXIT
for w in 0 1 2; do traffic $w & BG+=($!); done
sampler & BG+=($!)
sleep 2

# Revision 2: the same template with a changed step.
sed 's/service bus topics for/service bus topics (rev2) for/' "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/rev2.yaml"
apply_template "$T/rev2.yaml"
REV=$(ctl get templates synaxis-stamp -o json | jq -r .metadata.generation)
expect_eq "applying a changed template makes revision 2" "$REV" 2

expect_err "strict flags: --max-surge is a number" "max-surge" ctl rollout --template synaxis-stamp --to-revision 2 --max-surge x
expect_err "a revision that does not exist is refused" "no revision 7" ctl rollout --template synaxis-stamp --to-revision 7
ctl rollout --template synaxis-stamp --to-revision 2 --timeout 90s >"$T/started" || fail "rollout: $(cat "$T/started")"
RO=synaxis-stamp-rev2
expect_ok "rollout started" grep -q "rollout/$RO started" "$T/started"
expect_err "one running rollout per template" "is still running" ctl rollout --template synaxis-stamp --to-revision 2 --name other

ro() { ctl rollout status $RO -o json | jq -r "$1"; }
wait_until "the autoscaler holds for the rollout" 20 sh -c "ctl events autoscaler/fleet -o json | jq -e '.items[] | select(.reason == \"HeldByRollout\")' >/dev/null"

# kill -9 as soon as the first replacement is recorded (before or just
# after its deploy): the restart adopts it.
wait_until "first replacement recorded" 30 sh -c "[ -n \"\$(ctl rollout status $RO -o json | jq -r '[.status.items[] | select(.replacement)][0].replacement // empty')\" ]"
crash_stampd
start_stampd --set fleet-min-regions=2
ok "stampd killed (-9) with the first replacement recorded, and restarted"

# kill -9 while an old stamp drains or retires.
wait_until "an old stamp draining or retiring" 120 sh -c "ctl rollout status $RO -o json | jq -e '.status.items[] | select(.phase == \"Draining\" or .phase == \"Retiring\")' >/dev/null"
crash_stampd
start_stampd --set fleet-min-regions=2
ok "stampd killed (-9) during a drain or retirement, and restarted"

# Pause once one is done: nothing new starts.
wait_until "one stamp replaced" 120 sh -c "ctl rollout status $RO -o json | jq -e '.status.progress.done >= 1' >/dev/null"
ctl rollout pause $RO >/dev/null || fail "pause"
wait_until "phase Paused" 20 sh -c "[ \"\$(ctl rollout status $RO -o json | jq -r .status.phase)\" = Paused ]"
# What had started finishes its step; then nothing new for a while.
sleep 2
before=$(ro '[.status.items[] | select(.replacement)] | length')
sleep 3
expect_eq "paused: no new replacement" "$(ro '[.status.items[] | select(.replacement)] | length')" "$before"
ctl rollout status $RO >"$T/status.txt" || fail "rollout status"
expect_ok "status shows the progress table" grep -q "REPLACEMENT" "$T/status.txt"
ctl rollout resume $RO >/dev/null || fail "resume"

# kill -9 while a later replacement comes up (or, when the step that ran
# on during the pause already brought the last one up, at the end).
wait_until "another replacement waiting to be Active, or none left" 120 sh -c "ctl rollout status $RO -o json | jq -e '([.status.items[] | select(.phase == \"Deploying\" or .phase == \"WaitingActive\")] | length > 0) or .status.phase == \"Complete\"' >/dev/null"
crash_stampd
start_stampd --set fleet-min-regions=2
ok "stampd killed (-9) while a replacement comes up, and restarted"

wait_until "rollout Complete" 300 sh -c "[ \"\$(ctl rollout status $RO -o json | jq -r .status.phase)\" = Complete ]"
ok "rollout Complete"
sleep 1
touch "$T/stop"
wait "${BG[@]}"

# Every old stamp retired, replaced by exactly one stamp of revision 2 in its region.
ctl list -o json >"$T/stamps.json"
for s in $OLD; do
  expect_eq "$s retired" "$(jq -r --arg s $s '.items[] | select(.metadata.name == $s) | .status.phase' "$T/stamps.json")" Deleted
  n=$(jq --arg s $s '[.items[] | select(.spec.replaces == $s)] | length' "$T/stamps.json")
  expect_eq "$s has exactly one replacement (no double after kill -9)" "$n" 1
  new=$(jq -r --arg s $s '.items[] | select(.spec.replaces == $s) | .metadata.name' "$T/stamps.json")
  expect_eq "$new is Active" "$(jq -r --arg s "$new" '.items[] | select(.metadata.name == $s) | .status.phase' "$T/stamps.json")" Active
  expect_eq "$new is in $s's region" "$(jq -r --arg s "$new" '.items[] | select(.metadata.name == $s) | .spec.region' "$T/stamps.json")" \
    "$(jq -r --arg s $s '.items[] | select(.metadata.name == $s) | .spec.region' "$T/stamps.json")"
  expect_eq "$new runs revision 2" "$(jq -r --arg s "$new" '.items[] | select(.metadata.name == $s) | .spec.templateSpec | tostring | contains("(rev2)")' "$T/stamps.json")" true
  expect_eq "$s recorded its successor" "$(jq -r --arg s $s '.items[] | select(.metadata.name == $s) | .spec.replacedBy' "$T/stamps.json")" "$new"
done
expect_eq "six stamps in all (three old, three new)" "$(jq '.items | length' "$T/stamps.json")" 6
expect_eq "each rollout item Done" "$(ro '[.status.items[] | select(.phase == "Done")] | length')" 3

# Traffic: nothing failed.
cat "$T"/traffic.* >"$T/traffic"
total=$(wc -l <"$T/traffic")
bad=$(awk '$3 != 200' "$T/traffic" | wc -l)
log "requests: $total, failed: $bad"
[ "$total" -gt 100 ] || fail "too little traffic: $total"
expect_eq "0 failed requests through the front door" "$bad" 0
# The fleet: never fewer than 3 serving stamps, never under 2 regions.
n=$(wc -l <"$T/fleet.samples")
[ "$n" -gt 20 ] || fail "too few fleet samples: $n"
expect_eq "fleet rule held in every sample ($n)" "$(awk '$2 < 2' "$T/fleet.samples" | wc -l)" 0
expect_eq "never fewer serving stamps than before ($n samples)" "$(awk '$1 < 3' "$T/fleet.samples" | wc -l)" 0
expect_ok "every stamp served traffic at some point" sh -c "awk '{print \$4}' '$T/traffic' | sort -u | grep -c synaxis | grep -qx 6"

# The autoscaler holds no more.
wait_until "the autoscaler no longer held" 20 sh -c "ctl get autoscaler fleet -o json | jq -e '.status.heldByRollout == null' >/dev/null"
ok "the autoscaler let go after the rollout"

# A replacement that fails (here: not Active within the rollout's timeout,
# its smoke test waiting for a file): the rollout stops with the old stamp
# serving; resume retries the same replacement in place.  (A replacement
# that went Failed is redeployed in place by resume too; that path is not
# exercised here: a redeploy of a Failed stamp reads its failed exec step's
# old result again, see the report.)
sed "s|service bus topics for|service bus topics (rev3) for|; s|for i in \$(seq 100); do|while [ ! -f $T/smoke-ok ]; do sleep 0.2; done; for i in \$(seq 100); do|" \
  "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/rev3.yaml"
apply_template "$T/rev3.yaml"
ctl rollout --template synaxis-stamp --to-revision 3 --timeout 5s >/dev/null || fail "rollout to 3"
RO=synaxis-stamp-rev3
wait_until "rollout to 3 Failed" 60 sh -c "[ \"\$(ctl rollout status $RO -o json | jq -r .status.phase)\" = Failed ]"
ok "a replacement not Active in time stops the rollout: $(ro .status.message)"
ctl list -o json >"$T/stamps3.json"
expect_eq "the revision-2 stamps keep serving" \
  "$(jq '[.items[] | select(.status.phase == "Active" and (.spec.desired // "active") == "active" and (.spec.templateSpec | tostring | contains("(rev2)")))] | length' "$T/stamps3.json")" 3
failed_repl=$(ro '[.status.items[] | select(.phase == "Failed")][0].replacement')
expect_eq "only one replacement was started" "$(ro '[.status.items[] | select(.replacement)] | length')" 1
expect_err "a Failed rollout still holds its template" "is still running" ctl rollout --template synaxis-stamp --to-revision 3 --name again
touch "$T/smoke-ok"
ctl rollout resume $RO >/dev/null || fail "resume the failed rollout"
wait_until "rollout to 3 Complete after resume" 300 sh -c "[ \"\$(ctl rollout status $RO -o json | jq -r .status.phase)\" = Complete ]"
ctl list -o json >"$T/stamps3.json"
expect_eq "resume retried the failed replacement in place (same stamp, now Active)" \
  "$(jq -r --arg s "$failed_repl" '.items[] | select(.metadata.name == $s) | .status.phase' "$T/stamps3.json")" Active
expect_eq "three stamps of revision 3 Active" \
  "$(jq '[.items[] | select(.status.phase == "Active" and (.spec.templateSpec | tostring | contains("(rev3)")))] | length' "$T/stamps3.json")" 3
expect_eq "nine stamps in all (no second replacement)" "$(jq '.items | length' "$T/stamps3.json")" 9
OPTOKEN=$(awk '/^token:/ {print $2}' "$STAMP_CONFIG")
expect_eq "a finished rollout's record is removed" "$(TOKEN=$OPTOKEN api DELETE /v1/rollouts/$RO)" 200
expect_err "and is gone" "not found" ctl rollout status $RO

# Tenants moved at most once in the first rollout (old stamp -> its
# successor).  Needs the front-door takeover (spec.frontdoorServer) of the
# stamp controller; without it a tenant may move twice.
moves=$(sort -n "$T/traffic" | awk '$3 == 200 { if (last[$2] != "" && last[$2] != $4) m[$2]++; last[$2] = $4 } END { x = 0; for (t in m) if (m[t] > x) x = m[t]; print x }')
log "most moves of one tenant: $moves"
[ "$moves" -le 1 ] && ok "each tenant moved at most once" || fail "a tenant moved $moves times (front-door takeover missing?)"
finish
