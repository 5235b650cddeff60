#!/usr/bin/env bash
# Two stamps in two regions through the whole lifecycle: Creating -> Active
# (with traffic) -> Draining -> Ready (standby: pools scaled down) -> Active
# -> deleted through seed 002's retirement steps, archive kept.
TEST_NAME=lifecycle
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
expect_ok "template listed" sh -c "ctl templates | grep -q synaxis-stamp"

ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy-weu
ctl deploy --region eastus --stamp-id 001 --template synaxis-stamp >/dev/null || fail deploy-eus
expect_eq "name has region code and padded id" "$(ctl list -o json | jq -r '.items[].metadata.name' | sort | tr '\n' ' ')" \
  "synaxis-eus-001 synaxis-weu-001 "
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
expect_eq "weu Active" "$(phase synaxis-weu-001)" Active
expect_eq "eus Active" "$(phase synaxis-eus-001)" Active
# 3 replicas (agent, app, inference) per stamp, nothing else left running.
expect_eq "weu processes" "$(procs synaxis-weu-001/)" 3
expect_eq "eus processes" "$(procs synaxis-eus-001/)" 3

# Real traffic, and every answer names the stamp that served it.
for s in synaxis-weu-001 synaxis-eus-001; do
  ep=$(endpoint $s)
  hdr=$(curl -fsS -D - -o /dev/null "http://$ep/work?ms=10" | tr -d '\r' | sed -n 's/^X-Stamp-Name: //Ip')
  expect_eq "$s serves with X-Stamp-Name" "$hdr" "$s"
done

# Filters and output formats.
expect_eq "list --state active" "$(ctl list --state active -o json | jq '.items | length')" 2
expect_eq "list --region westeurope" "$(ctl list --region westeurope -o json | jq -r '.items[0].metadata.name')" synaxis-weu-001
expect_ok "list table has header" sh -c "ctl list | head -n1 | grep -q '^NAME  *REGION  *PHASE'"
expect_ok "list -o yaml" sh -c "ctl list -o yaml | grep -q 'name: synaxis-eus-001'"
expect_ok "list -o wide" sh -c "ctl list -o wide | head -n1 | grep -q TEMPLATE"

# Drain into warm standby: general and gpu pools go to 0, system stays.
ctl drain synaxis-weu-001 >/dev/null || fail drain
wait_for synaxis-weu-001 ready
wait_until "standby pools 1/0/0" 10 sh -c "ctl status synaxis-weu-001 -o json | jq -e '.status.pools == {system: 1, general: 0, gpu: 0}'"
ok "standby pools system=1 general=0 gpu=0"
wait_procs synaxis-weu-001/ 1 10
expect_eq "standby processes" "$(procs synaxis-weu-001/)" 1

# Back to Active from warm standby.
ctl activate synaxis-weu-001 >/dev/null || fail activate
wait_for synaxis-weu-001 active
wait_procs synaxis-weu-001/ 3 10
expect_eq "reactivated processes" "$(procs synaxis-weu-001/)" 3
curl -fsS "http://$(endpoint synaxis-weu-001)/health" >/dev/null || fail "reactivated stamp serves"
ok "reactivated stamp serves"

# Backup on demand.
ctl backup synaxis-weu-001 >/dev/null || fail backup
wait_until "backup recorded" 10 sh -c "ctl status synaxis-weu-001 -o json | jq -e '.status.backups | length >= 1'"
ok "backup recorded"

# Retire both: a graceful delete drains first, then the retirement steps.
ctl delete synaxis-weu-001 >/dev/null || fail delete-weu
ctl drain synaxis-eus-001 >/dev/null || fail drain-eus
wait_for synaxis-eus-001 ready
ctl delete synaxis-eus-001 >/dev/null || fail delete-eus
wait_for synaxis-weu-001 deleted
wait_for synaxis-eus-001 deleted
expect_eq "no processes left" "$(procs synaxis-)" 0

# Retirement steps ran in seed 002's order, and the archive is kept.
order=$(ctl events synaxis-weu-001 -o json | jq -r '.items[].reason' |
  grep -E '^(BackupCompleted|Quarantined|Decommissioned|Archived|Purged)$' | uniq | tr '\n' ' ')
expect_eq "retirement order" "$order" "BackupCompleted Quarantined Decommissioned Archived Purged "
arch=$DATA/archive/synaxis-weu-001
expect_ok "archive manifest" test -s "$arch/manifest.json"
expect_ok "archive keeps events" sh -c "jq -e 'length > 5' '$arch/events.json'"
expect_ok "archive keeps workload logs" sh -c "ls '$arch/logs' | grep -q app-0.log"
expect_ok "archive retention is 30 days" sh -c \
  "jq -e '(.retainUntilMs - .createdMs) == 30*24*3600*1000' '$arch/manifest.json'"
# Every file in the manifest reads back with its recorded hash.
while read -r f h; do
  [ "$(sha256sum "$arch/$f" | cut -d' ' -f1)" = "$h" ] || fail "archive file $f changed"
done < <(jq -r '.files[] | "\(.path) \(.sha256)"' "$arch/manifest.json")
ok "archive verifies"
expect_ok "local state purged" test ! -e "$DATA/stamps/synaxis-weu-001"
expect_ok "backup kept" sh -c "ls '$DATA/backups/synaxis-weu-001' | grep -q ."
expect_eq "metrics count transitions" \
  "$(curl -fsS "http://127.0.0.1:$API_PORT/metrics" | sed -n 's/^stamp_transitions_total{from="Ready",to="Active"} //p')" 1
expect_ok "metrics gauges" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q '^active_stamps 0'"
expect_ok "audit has the operator's actions" sh -c "ctl audit -o json | jq -e '[.items[].operation] | index(\"drain\")'"
finish
