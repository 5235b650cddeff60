#!/usr/bin/env bash
# Three stampd replicas on one PostgreSQL behind one shared HAProxy, the
# requests spread over them: the lifecycle (deploy in two regions through
# two replicas, read through a third, traffic through the front door, drain
# and activate through followers, delete) and the namespaces' (create,
# activity, finalize, reap, inactivity) work whichever replica takes the
# request; `stampctl status` and GET /v1/cluster show three replicas and
# one leader.
TEST_NAME=pg_replicas
. "$(dirname "$0")/lib.sh"

R_ARGS=("${NS_ARGS[@]}" --set inactivity-threshold=6s --set reap-interval=500ms)
start_replicas 3
wait_leader
L=$LEADER
F=()
for i in 1 2 3; do [ "$i" = "$L" ] || F+=("$i"); done
F1=${F[0]} F2=${F[1]}
log "leader r$L, followers r$F1 r$F2"

# ---- the cluster as the replicas see it ----
ctl_on "$F1" status >"$T/status.txt" || fail "stampctl status on r$F1"
expect_eq "status lists 3 replicas" "$(grep -cE '^r[123] ' "$T/status.txt")" 3
expect_eq "status: one leader" "$(grep -cE ' leader( |$)' "$T/status.txt")" 1
expect_ok "status names the leader r$L" grep -qE "^Leader: +r$L, epoch [0-9]+" "$T/status.txt"
expect_ok "status marks this replica" grep -qE "^r$F1 .*follower \(this\)" "$T/status.txt"
TOKEN=$(r_token "$F1")
API_PORT=${R_PORTS[$F1]}
expect_eq "GET /v1/cluster on a follower" "$(api GET /v1/cluster)" 200
expect_ok "GET /v1/cluster shape" jq -e --arg self "r$F1" --arg l "r$L" '
  .backend == "postgres" and .self == $self and .leader.holder == $l and .leader.valid == true
  and (.leader.epoch | type == "number" and . >= 1)
  and ([.leader.since, .leader.renewedAt, .leader.expiresAt] | all(test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")))
  and (.replicas | length == 3)
  and ([.replicas[] | select(.leader)] | map(.id) == [$l])
  and ([.replicas[] | select(.self)] | map(.id) == [$self])
  and ([.replicas[] | (.id | type == "string") and (.address | test("^127.0.0.1:[0-9]+$"))
        and (.startedAt | type == "string") and (.seenAt | type == "string")
        and (.version | length > 0) and (.seenMsAgo | type == "number")] | all)' "$T/body"
expect_eq "GET /v1/cluster without a token" "$(TOKEN= api GET /v1/cluster)" 401
expect_eq "stamp_leader 1 on the leader" "$(metric_on "$L" stamp_leader)" 1
expect_eq "stamp_leader 0 on r$F1" "$(metric_on "$F1" stamp_leader)" 0
expect_eq "stamp_leader 0 on r$F2" "$(metric_on "$F2" stamp_leader)" 0

# ---- the lifecycle, spread over the replicas ----
ctl_on "$F1" apply -f "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >/dev/null || fail "apply on r$F1"
expect_ok "template listed on r$F2" sh -c "STAMP_CONFIG=$T/client-r$F2.conf ctl templates | grep -q synaxis-stamp"
ctl_on 1 deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy weu on r1"
ctl_on 2 deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy eus on r2"
use_replica 3
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
expect_eq "weu Active, read on r3" "$(phase synaxis-weu-001)" Active
expect_eq "eus Active, read on r1" "$(ctl_on 1 status synaxis-eus-001 -o json | jq -r .status.phase)" Active
expect_eq "weu processes" "$(procs synaxis-weu-001/)" 3
expect_eq "eus processes" "$(procs synaxis-eus-001/)" 3

# Real traffic through the shared front door, which only the leader drives.
FD=127.0.0.1:$FD_PORT
serving_is() { [ "$(hap_serving | tr '\n' ' ')" = "$1" ]; }
wait_until "both stamps serve in the shared HAProxy" 10 serving_is "synaxis-eus-001 synaxis-weu-001 "
expect_eq "HAProxy serves the Active stamps" "$(hap_serving | tr '\n' ' ')" "synaxis-eus-001 synaxis-weu-001 "
who() { curl -sS -m 10 -o /dev/null -D - -H "X-Tenant-Id: $1" "http://$FD/work?ms=1" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p'; }
for t in $(seq 1 40); do echo "t$t $(who "t$t")"; done >"$T/map"
expect_eq "every tenant answered by a stamp" "$(awk '$2 ~ /^synaxis-(weu|eus)-001$/' "$T/map" | wc -l)" 40
expect_eq "both stamps take tenants" "$(awk '{print $2}' "$T/map" | sort -u | wc -l)" 2
expect_eq "a request through the front door is 200" \
  "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -H 'X-Tenant-Id: t1' "http://$FD/work?ms=1")" 200

# Drain through a follower into warm standby, activate through the other.
ctl_on "$F1" drain synaxis-weu-001 >/dev/null || fail "drain on r$F1"
use_replica "$F2"
wait_for synaxis-weu-001 ready
wait_procs synaxis-weu-001/ 1 10
expect_eq "standby: system pool only" "$(procs synaxis-weu-001/)" 1
wait_until "the drained stamp leaves the rotation" 10 serving_is "synaxis-eus-001 "
expect_eq "HAProxy serves only eus" "$(hap_serving | tr '\n' ' ')" "synaxis-eus-001 "
expect_eq "every tenant goes to eus now" "$(for t in 1 2 3 4 5 6 7 8; do who "t$t"; done | sort -u | tr '\n' ' ')" "synaxis-eus-001 "
ctl_on "$F2" activate synaxis-weu-001 >/dev/null || fail "activate on r$F2"
use_replica "$F1"
wait_for synaxis-weu-001 active
wait_procs synaxis-weu-001/ 3 10
expect_eq "reactivated processes" "$(procs synaxis-weu-001/)" 3
wait_until "weu back in rotation" 10 serving_is "synaxis-eus-001 synaxis-weu-001 "
expect_eq "HAProxy serves both again" "$(hap_serving | tr '\n' ' ')" "synaxis-eus-001 synaxis-weu-001 "

# Delete (graceful: drains first, then retirement) through a follower.
ctl_on "$F2" delete synaxis-eus-001 >/dev/null || fail "delete on r$F2"
use_replica "$L"
wait_for synaxis-eus-001 deleted
expect_eq "deleted: no process left" "$(procs synaxis-eus-001/)" 0
expect_ok "archive written in the shared state dir" test -s "$STATE/archive/synaxis-eus-001/manifest.json"
order=$(ctl_on "$F1" events synaxis-eus-001 -o json | jq -r '.items[].reason' |
  grep -E '^(BackupCompleted|Quarantined|Decommissioned|Archived|Purged)$' | uniq | tr '\n' ' ')
expect_eq "retirement order" "$order" "BackupCompleted Quarantined Decommissioned Archived Purged "
all_is() { [ "$(hap_all | tr '\n' ' ')" = "$1" ]; }
wait_until "deleted stamp out of HAProxy" 10 all_is "synaxis-weu-001 "
expect_eq "HAProxy has weu only" "$(hap_all | tr '\n' ' ')" "synaxis-weu-001 "
expect_eq "transitions counted on the leader only" \
  "$(metric_on "$L" 'stamp_transitions_total{from="Ready",to="Active"}')" 1

# ---- namespaces, through the followers ----
export STAMP_TOKEN
STAMP_TOKEN=$(ctl_on "$F1" token create --tenant acme --user alice) || fail "tenant token"
NS=livecalc-bucket-batch-7
expect_eq "create on r$F1" "$(ctl_on "$F1" ns create batch-7)" "namespace/$NS created"
expect_err "same bucket twice, on r$F2" "exists" ctl_on "$F2" ns create batch-7
ctl_on "$F2" ns run-pod $NS w1 -- --steps 3 --interval-ms 10 --violation "rss 900MiB > 512MiB limit" >/dev/null || fail "pod w1 on r$F2"
ctl_on "$F1" ns run-pod $NS w2 -- --forever --interval-ms 50 >/dev/null || fail "pod w2 on r$F1"
wait_until "w1 finishes" 20 sh -c "[ \"\$(STAMP_CONFIG=$T/client-r$F2.conf ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"w1\") | .phase')\" = Succeeded ]"
wait_until "w2 runs" 20 sh -c "[ \"\$(STAMP_CONFIG=$T/client-r$F1.conf ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"w2\") | .phase')\" = Running ]"
expect_eq "one w2 process" "$(procs "ns/$NS/")" 1
before=$(ctl_on "$F2" ns get $NS -o json | jq -r .reap_eligible_at)
sleep 1.1
ctl_on "$F1" ns activity $NS >/dev/null || fail "activity on r$F1"
expect_ok "activity on r$F1 moved the eligibility (read on r$F2)" \
  test "$(date -d "$(ctl_on "$F2" ns get $NS -o json | jq -r .reap_eligible_at)" +%s)" -gt "$(date -d "$before" +%s)"
expect_ok "finalize on r$F2" ctl_on "$F2" ns finalize $NS
use_replica "$F1"
wait_ns $NS reaped 30
expect_eq "logs archived" "$(nsfield $NS .diagnostics.logs_archived)" true
expect_eq "violations indexed" "$(nsfield $NS .diagnostics.sentinel_violations_indexed)" true
ctl_on "$L" ns get $NS -o json >"$T/reaped.json"
n=$(jq '.diagnostics.files | length' "$T/reaped.json")
expect_eq "three files archived" "$n" 3
for k in $(seq 0 $((n - 1))); do
  p=$(jq -r ".diagnostics.files[$k].path" "$T/reaped.json")
  expect_eq "blob $p" "$(sha256sum <"$STATE/blobs/diagnostics/$p" | cut -d' ' -f1)" "$(jq -r ".diagnostics.files[$k].sha256" "$T/reaped.json")"
done
expect_eq "no pod process left" "$(procs "ns/$NS/")" 0
expect_ok "the leader logged the reap" grep -q "Successfully reaped namespace $NS" "$T/r$L.log"
for f in "$F1" "$F2"; do
  expect_ok "r$f did not reap" sh -c "! grep -q 'Reaping namespace' $T/r$f.log"
done
expect_err "activity in a reaped namespace, on r$F2" "reaped" ctl_on "$F2" ns activity $NS
# Inactivity: a namespace created on a follower is reaped by the leader.
ctl_on "$F2" ns create idle-a >/dev/null || fail "idle-a on r$F2"
wait_ns livecalc-bucket-idle-a reaped 30
(unset STAMP_TOKEN; ctl_on "$F1" audit --limit 200 -o json) >"$T/audit.json" || fail audit
for op in create finalize reap; do
  expect_eq "audit $op" "$(jq -r --arg op $op '[.items[] | select(.operation == $op and .name == "'$NS'")] | length > 0' "$T/audit.json")" true
done
expect_ok "audit has the operator's drain" jq -e '[.items[].operation] | index("drain")' "$T/audit.json"

# Still three replicas and one leader after all that.
wait_leader
expect_eq "the same leader throughout" "$LEADER" "$L"
expect_eq "stamp_leader_changes_total on the leader" "$(metric_on "$L" 'stamp_leader_changes_total{change="elected"}')" 1
# A platform's Prometheus scrapes every replica of stampd: the leader keeps
# the file_sd file of them (stampd.json) in the shared state dir.
wait_until "stampd.json lists the three replicas" 20 sh -c "jq -e '.[0].targets | length == 3' '$STATE/prometheus-sd/stampd.json'"
ok "stampd.json: $(jq -c '.[0].targets' "$STATE/prometheus-sd/stampd.json")"
finish
