#!/usr/bin/env bash
# Application updates of an Active stamp under continuous front-door
# traffic: every replica replaced one at a time per pool, 0 failed requests,
# the revision recorded; a broken revision rolled back (still 0 failed
# requests); infrastructure changes and undeclared parameters refused
# (they require a new stamp); kill -9 of stampd in the middle of an update
# resumes it without a duplicate replica.
TEST_NAME=update
. "$(dirname "$0")/lib.sh"

STAMPD_ARGS=(--set update-replica-timeout=6s)
start_stampd
apply_template
S=synaxis-weu-001
FD=127.0.0.1:$FD_PORT
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
wait_for $S active
ctl scale $S --pool general --replicas 2 >/dev/null || fail scale
wait_procs $S/p/app/ 2 20
wait_until "general pool at 2" 20 sh -c "ctl status $S -o json | jq -e '.status.pools.general == 2'"

# The stamp's replica units (name/p/step/idx@spec) of this test's stampd
# (other tests run stamps of the same name and spec), sorted.
units() {
  local owner env
  owner=$(owner_id)
  for d in /proc/[0-9]*; do
    env=$(tr '\0' '\n' 2>/dev/null <"$d/environ") || continue
    grep -qx "STAMPD_OWNER=$owner" <<<"$env" || continue
    sed -n "s|^STAMP_UNIT=\($S/p/.*\)|\1|p" <<<"$env"
  done | sort -u
}
version() { curl -fsS -m 5 -D - -o /dev/null -H "X-Tenant-Id: $1" "http://$FD/work?ms=1" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]pp-[Vv]ersion: //p'; }
load() { # $1: seconds; continuous traffic through the front door, many tenants
  "$STAMP_BIN/stamp-loadgen" --concurrency 4 --duration "$1" --tenants 16 --timeout 10s -o json \
    --path '/work?ms=20' "http://$FD" >"$T/$2.json" 2>&1
}
failed() { jq -r '.errors' "$T/$1.json"; }

expect_eq "serves version 1" "$(version t1)" 1
units >"$T/units.before"
expect_eq "four replicas before" "$(wc -l <"$T/units.before")" 4

# 1. An application update under traffic.
load 14 up1 &
LOAD=$!
sleep 1
expect_ok "update --set app.version=2 --wait" ctl update $S --set app.version=2 --wait
wait $LOAD
expect_eq "0 failed requests during the update" "$(failed up1)" 0
expect_ok "requests were served during it" sh -c "[ \$(jq .ok $T/up1.json) -gt 100 ]"
expect_eq "serves version 2" "$(version t2)" 2
# Old replicas finish their requests after the handover, then exit.
for _ in $(seq 300); do
  units >"$T/units.after"
  [ "$(comm -12 "$T/units.before" "$T/units.after" | wc -l)" = 0 ] && break
  sleep 0.1
done
units >"$T/units.after"
expect_eq "every replica replaced" "$(comm -12 "$T/units.before" "$T/units.after" | wc -l)" 0
expect_eq "as many replicas as before" "$(wc -l <"$T/units.after")" 4
expect_eq "update Complete" "$(jfield $S .status.update.phase)" Complete
expect_eq "4 replicas replaced" "$(jfield $S .status.update.replaced)" 4
expect_eq "applied parameters recorded" "$(jfield $S '.status.applied.parameters["app.version"]')" 2
expect_ok "UpdateComplete event" sh -c "ctl events $S | grep -q UpdateComplete"
expect_eq "unchanged update" "$(ctl update $S --set app.version=2)" "stamp/$S: unchanged (it runs this already)"

# 2. Refused: infrastructure changes need a new stamp.
expect_err "undeclared parameter" "requires new stamp" ctl update $S --set SKU=premium
sed -e 's/assigned"/assigned (v2)"/' "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/infra.yaml"
apply_template "$T/infra.yaml"
expect_err "exec step changed" "step identity" ctl update $S --latest
expect_err "named as infrastructure" "infrastructure changes (requires new stamp)" ctl update $S --latest

# 3. A broken revision: the new app replica exits at once; rolled back.
sed -e 's|"--state-dir", "${STATE_DIR}"\]|"--state-dir", "${STATE_DIR}", "--no-such-flag"]|' \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/broken.yaml"
apply_template "$T/broken.yaml"
units >"$T/units.before2"
load 10 up2 &
LOAD=$!
sleep 1
expect_err "broken update rolls back" "RolledBack" ctl update $S --latest --wait
wait $LOAD
expect_eq "0 failed requests during the rollback" "$(failed up2)" 0
expect_eq "rolled back" "$(jfield $S .status.update.phase)" RolledBack
expect_eq "still serves version 2" "$(version t3)" 2
expect_eq "the old replicas still run" "$(units | diff - "$T/units.before2" && echo same)" same
expect_ok "UpdateFailed event" sh -c "ctl events $S | grep -q UpdateFailed"
expect_eq "applied revision unchanged" "$(jfield $S .status.templateRevision)" "$(jfield $S .status.applied.templateRevision)"

# 4. kill -9 in the middle of an update: it resumes, no replica doubled.
apply_template
ctl update $S --set app.version=3 >/dev/null || fail update3
wait_until "update 3 under way" 20 sh -c "ctl status $S -o json | jq -e '.status.update.replaced >= 1'"
crash_stampd
start_stampd
wait_until "update 3 complete after the restart" 60 sh -c "ctl status $S -o json | jq -e '.status.update.phase == \"Complete\"'"
ok "update resumed and completed"
sleep 2
expect_eq "no replica doubled" "$(procs $S/p/)" 4
expect_eq "serves version 3" "$(version t4)" 3

# 5. An exec step the template classes as application: an update runs its
# new command (once) before replacing replicas.
python3 - "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" "$T/app-exec.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
old = '        - name: service-bus\n          kind: exec\n'
assert old in s
s = s.replace(old, old + '          change: application\n')
open(sys.argv[2], 'w').write(s)
PY
apply_template "$T/app-exec.yaml"
# Relabelling an infrastructure step is itself an infrastructure change
# (else one revision could relabel a step and change its command).
expect_err "relabelling a step application" "step service-bus (exec): declared application, was infrastructure" \
  ctl update $S --latest
S2=synaxis-weu-002
ctl deploy --region westeurope --stamp-id 2 --template synaxis-stamp >/dev/null || fail deploy2
wait_for $S2 active
sed -e 's/topics for $STAMP_NAME configured/topics for $STAMP_NAME configured (v2)/' "$T/app-exec.yaml" >"$T/app-exec2.yaml"
apply_template "$T/app-exec2.yaml"
expect_ok "update with a new exec command" ctl update $S2 --latest --wait
expect_ok "the new command ran" sh -c "ctl logs $S2 --step service-bus | grep -q 'configured (v2)'"
expect_ok "UpdateStepRun event" sh -c "ctl events $S2 | grep -q 'UpdateStepRun.*service-bus'"
REV=$(ctl get templates synaxis-stamp -o json | jq -r .metadata.generation)
expect_eq "the revision it runs is recorded" "$(jfield $S2 .status.templateRevision)" "$REV"
expect_eq "and the one it asks for" "$(jfield $S2 .spec.templateRevision)" "$REV"
finish
