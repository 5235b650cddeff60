#!/usr/bin/env bash
# A rollout's replacement takes over its predecessor's front-door server
# (the same place on the consistent-hash ring) only while it serves, and
# gives it back: the old stamp serves through its server again when its
# successor stops serving before it is gone (here: the rollout aborted and
# the replacement force-deleted), and a tenant of that server is served
# by the old stamp again.
TEST_NAME=takeover
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
FD=127.0.0.1:$FD_PORT
for r in westeurope eastus; do
  ctl deploy --region $r --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy $r"
done
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
who() { curl -sS -m 5 -o /dev/null -D - -H "X-Tenant-Id: $1" "http://$FD/work?ms=1" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p'; }
# A tenant on synaxis-weu-001's server.
T1=$(for t in $(seq 1 300); do [ "$(who tenant-$t)" = synaxis-weu-001 ] && { echo tenant-$t; break; }; done)
[ -n "$T1" ] || fail "no tenant on synaxis-weu-001"
servers() { ctl frontdoor -o json | jq -r '[.servers[].name] | sort | join(" ")'; }
expect_eq "two servers" "$(servers)" "synaxis-eus-001 synaxis-weu-001"

sed 's/service bus topics for/service bus topics (rev2) for/' "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/rev2.yaml"
apply_template "$T/rev2.yaml"
ctl rollout --template synaxis-stamp --to-revision 2 --name ro >/dev/null || fail rollout
# Pause as soon as weu-001 has a successor; it comes up and takes over.
wait_until "weu-001 has a successor" 30 sh -c "[ -n \"\$(ctl get stamp synaxis-weu-001 -o json | jq -r '.spec.replacedBy // empty')\" ]"
ctl rollout pause ro >/dev/null || fail pause
N=$(ctl get stamp synaxis-weu-001 -o json | jq -r .spec.replacedBy)
wait_for "$N" active
wait_until "the successor serves the tenant" 20 sh -c "[ \"\$(curl -sS -m 5 -o /dev/null -D - -H 'X-Tenant-Id: $T1' http://$FD/work?ms=1 | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p')\" = $N ]"
ok "$T1 moved to $N, through server synaxis-weu-001"
expect_eq "no new server for the successor" "$(servers)" "synaxis-eus-001 synaxis-weu-001"
expect_ok "handover event" sh -c "ctl events synaxis-weu-001 | grep -q FrontDoorHandedOver"

# The successor goes away while the old stamp still serves: it gets its
# server back.
ctl rollout abort ro >/dev/null || fail abort
ctl delete "$N" --force >/dev/null || fail "delete $N"
wait_until "the old stamp serves the tenant again" 30 sh -c "[ \"\$(curl -sS -m 5 -o /dev/null -D - -H 'X-Tenant-Id: $T1' http://$FD/work?ms=1 | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p')\" = synaxis-weu-001 ]"
ok "$T1 back on synaxis-weu-001"
expect_ok "reclaim event" sh -c "ctl events synaxis-weu-001 | grep -q FrontDoorReclaimed"
wait_for "$N" deleted 60s
expect_eq "server kept for the old stamp" "$(servers)" "synaxis-eus-001 synaxis-weu-001"
expect_eq "old stamp still Active" "$(phase synaxis-weu-001)" Active
finish
