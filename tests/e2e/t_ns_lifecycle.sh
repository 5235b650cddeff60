#!/usr/bin/env bash
# Seed 004 on the directory blob backend: a bucket's namespace with pods (one
# reporting a memory-sentinel violation) and a volume; dry runs that change
# nothing; finalize -> reaped with every pod log and sentinel-violations.json
# in the blob store, compared byte for byte; eligibility by inactivity at its
# boundary, activity moving it; refusals that name the phase; bad bucket ids
# that create nothing.
TEST_NAME=ns-lifecycle
. "$(dirname "$0")/lib.sh"

start_stampd "${NS_ARGS[@]}" --set inactivity-threshold=8s --set reap-interval=500ms
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token acme alice)
BLOBS=$DATA/blobs/diagnostics

# ---- a namespace with pods and a volume ----
expect_eq "create" "$(ctl ns create batch-7)" "namespace/livecalc-bucket-batch-7 created"
NS=livecalc-bucket-batch-7
expect_eq "seed labels" "$(nsfield $NS '.labels | [.app, ."bucket-id", .lifecycle, ."managed-by"] | join(",")')" \
  "livecalc,batch-7,transient,livecalc-platform"
expect_eq "status annotation" "$(nsfield $NS '.annotations.status')" active
expect_eq "tenant" "$(nsfield $NS .tenant_id)" acme
expect_err "same bucket twice" "exists" ctl ns create batch-7

ctl ns volume $NS results >/dev/null || fail volume
ctl ns run-pod $NS w1 -- --steps 5 --interval-ms 10 --violation "rss 900MiB > 512MiB limit" >/dev/null || fail pod-w1
ctl ns run-pod $NS w2 --volume results -- --steps 3 --interval-ms 10 --write-volume results >/dev/null || fail pod-w2
ctl ns run-pod $NS w3 -- --forever --interval-ms 50 >/dev/null || fail pod-w3
wait_until "w1 and w2 finish" 20 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '[.pods[] | select(.phase == \"Succeeded\")] | length')\" = 2 ]"
expect_eq "w3 running" "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "w3") | .phase')" Running
expect_eq "w1 violation annotation" \
  "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "w1") | .annotations."memory-sentinel-violations"')" \
  "rss 900MiB > 512MiB limit"
expect_ok "pods table" sh -c "ctl ns pods $NS | head -n1 | grep -q '^NAME  *STATUS  *EXIT  *VIOLATIONS'"
expect_eq "pod count" "$(nsfield $NS .pod_count)" 3
expect_eq "pvc count" "$(nsfield $NS .pvc_count)" 1
ctl ns annotate $NS w2 owner=alice >/dev/null || fail annotate
expect_eq "annotation set" "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "w2") | .annotations.owner')" alice
expect_ok "w1 log" sh -c "ctl ns logs $NS w1 | grep -q 'memory sentinel violation'"
expect_err "pod name with a slash" "not valid" ctl ns run-pod $NS ../x
# A finished pod's log with binary output (NUL bytes) comes back whole.
printf 'binary tail: \000\001\002 end\n' >>"$DATA/namespaces/$NS/pods/w1/log"
ctl ns logs $NS w1 >"$T/w1.log"
ctl ns logs $NS w2 >"$T/w2.log"
expect_ok "log with NUL bytes read whole" cmp "$T/w1.log" "$DATA/namespaces/$NS/pods/w1/log"

# ---- dry runs change nothing ----
ctl ns reap $NS --dry-run -o json >"$T/plan.json" || fail dry-run
expect_eq "dry run lists the logs and violations" "$(jq -r '.would_archive[]' "$T/plan.json" | sed 's|.*/||' | sort | tr '\n' ' ')" \
  "sentinel-violations.json w1.log w2.log w3.log "
expect_eq "dry run counts" "$(jq -r '"\(.would_delete.pods) \(.would_delete.volumes) \(.sentinel_violations)"' "$T/plan.json")" "3 1 1"
expect_eq "still active after dry run" "$(ns_status $NS)" active
expect_eq "w3 still running after dry run" "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "w3") | .phase')" Running
[ ! -d "$BLOBS" ] || fail "dry run wrote blobs"
expect_eq "reaper dry run: nothing eligible yet" "$(ctl ns reap --dry-run -o json | jq .count)" 0

# ---- finalize: reaped at once, diagnostics first ----
expect_ok finalize ctl ns finalize $NS
wait_ns $NS reaped 30
expect_eq "logs archived" "$(nsfield $NS .diagnostics.logs_archived)" true
expect_eq "violations indexed" "$(nsfield $NS .diagnostics.sentinel_violations_indexed)" true
ctl ns get $NS -o json >"$T/reaped.json"
n=$(jq '.diagnostics.files | length' "$T/reaped.json")
expect_eq "four files archived" "$n" 4
for i in $(seq 0 $((n - 1))); do
  p=$(jq -r ".diagnostics.files[$i].path" "$T/reaped.json")
  case "$p" in acme/batch-7/[0-9]*-[0-9]*/*) ;; *) fail "blob path $p is not {tenant}/{bucket}/{timestamp}/..." ;; esac
  [ -f "$BLOBS/$p" ] || fail "blob $p missing"
  expect_eq "sha256 of $p" "$(sha256sum <"$BLOBS/$p" | cut -d' ' -f1)" "$(jq -r ".diagnostics.files[$i].sha256" "$T/reaped.json")"
  expect_eq "size of $p" "$(stat -c %s "$BLOBS/$p")" "$(jq -r ".diagnostics.files[$i].size" "$T/reaped.json")"
done
base=$(jq -r '.diagnostics.files[0].path' "$T/reaped.json" | sed 's|/logs/.*||; s|/sentinel.*||')
expect_ok "w1 log byte for byte" cmp "$T/w1.log" "$BLOBS/$base/logs/w1.log"
expect_ok "w2 log byte for byte" cmp "$T/w2.log" "$BLOBS/$base/logs/w2.log"
expect_ok "w3 log (stopped by the reap) has its lines" grep -q "worker w3" "$BLOBS/$base/logs/w3.log"
expect_eq "sentinel-violations.json" "$(jq -c '[.[] | {pod, violations}]' "$BLOBS/$base/sentinel-violations.json")" \
  '[{"pod":"w1","violations":"rss 900MiB > 512MiB limit"}]'
expect_ok "violation has a timestamp" jq -e '.[0].timestamp | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")' "$BLOBS/$base/sentinel-violations.json"
[ ! -e "$DATA/namespaces/$NS" ] || fail "namespace directory left behind"
[ ! -e "$DATA/volumes/$NS" ] || fail "volume left behind"
expect_eq "no pod processes" "$(procs "ns/$NS/")" 0
expect_eq "reaped status annotation" "$(nsfield $NS '.annotations.status')" reaped
for line in "Reaping namespace $NS" "Archived logs for pod w1" "Indexed 1 sentinel violations" \
  "Deleted namespace $NS" "Successfully reaped namespace $NS"; do
  expect_ok "log line: $line" grep -q "$line" "$T/stampd.log"
done
env -u STAMP_TOKEN ctl audit --limit 200 -o json >"$T/audit.json"
for op in create finalize archive-diagnostics reap; do
  expect_eq "audit $op" "$(jq -r --arg op $op '[.items[] | select(.operation == $op and .name == "'$NS'" and .tenant == "acme")] | length > 0' "$T/audit.json")" true
done
expect_eq "audit names the user" "$(jq -r '[.items[] | select(.operation == "finalize")][0].user' "$T/audit.json")" alice

# ---- a reaped namespace refuses work, naming its phase ----
expect_err "pod in reaped namespace" "reaped" ctl ns run-pod $NS w9
expect_err "activity in reaped namespace" "reaped" ctl ns activity $NS
# Finalize is idempotent: the reaped namespace stays reaped, and says so.
expect_ok "finalize twice: succeeds, still reaped" sh -c "ctl ns finalize $NS | grep -q 'status reaped'"
# The bucket can have a namespace again.
expect_ok "recreate after reap" ctl ns create batch-7
expect_eq "new one active" "$(ns_status $NS)" active

# ---- eligibility by inactivity (threshold 8s) at its boundary ----
ctl ns create idle-a >/dev/null || fail idle-a
ctl ns create idle-b >/dev/null || fail idle-b
A=livecalc-bucket-idle-a
B=livecalc-bucket-idle-b
d=$(( $(date -d "$(nsfield $A .reap_eligible_at)" +%s) - $(date -d "$(nsfield $A .last_activity)" +%s) ))
expect_eq "eligible exactly threshold after last activity" "$d" 8
expect_eq "not eligible before the threshold" "$(ctl ns reap --dry-run -o json | jq '[.eligible[] | select(.namespace == "'$A'")] | length')" 0
sleep 4
ctl ns activity $B >/dev/null || fail activity
d=$(( $(date -d "$(nsfield $B .reap_eligible_at)" +%s) - $(date -d "$(nsfield $A .reap_eligible_at)" +%s) ))
[ "$d" -ge 2 ] || fail "activity did not move B's eligibility ($d s)"
ok "activity moves eligibility by $d s"
wait_ns $A reaped 30
expect_eq "B still active when A is reaped" "$(ns_status $B)" active
expect_ok "reaper log line" grep -q "Found [0-9]* namespaces eligible for cleanup" "$T/stampd.log"
expect_ok "cleanup worker line" grep -q "Cleanup worker finished: [0-9]* successful, 0 failed" "$T/stampd.log"
wait_ns $B reaped 30
expect_ok "metrics: reaped counted" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q '^namespace_reaper_sweeps_total'"

# ---- bad bucket ids: 400 and nothing created ----
TOKEN=$STAMP_TOKEN
before=$(ls "$DATA/namespaces" 2>/dev/null | wc -l)
count=$(ctl ns list -o json | jq .count)
for b in "a%2Fb" "..%2Fx" ".." "Upper" "a_b" "$(printf 'x%.0s' $(seq 41))" "-a" "" "a%20b"; do
  expect_eq "bucket_id '$b' refused" "$(api POST "/v1/platform/namespaces?bucket_id=$b")" 400
done
expect_eq "bucket in body with a slash" "$(api POST /v1/platform/namespaces -H 'Content-Type: application/json' -d '{"bucket_id":"a/b"}')" 400
expect_eq "unknown body field" "$(api POST /v1/platform/namespaces -H 'Content-Type: application/json' -d '{"bucket_id":"ok1","x":1}')" 400
expect_eq "malformed JSON" "$(api POST /v1/platform/namespaces -H 'Content-Type: application/json' -d '{"bucket_id":')" 400
head -c 2000000 /dev/zero | tr '\0' 'a' >"$T/big.json"
expect_eq "oversized body" "$(api POST /v1/platform/namespaces -H 'Content-Type: application/json' --data-binary @"$T/big.json")" 413
expect_eq "nothing created" "$(ctl ns list -o json | jq .count)" "$count"
expect_eq "no directory created" "$(ls "$DATA/namespaces" 2>/dev/null | wc -l)" "$before"
expect_eq "'..' as a namespace" "$(api GET /v1/platform/namespaces/..)" 400
expect_eq "traversal in a pod log path" "$(api GET /v1/platform/namespaces/$NS/pods/../log)" 400
expect_eq "escaped traversal in a pod log path" "$(api GET /v1/platform/namespaces/$NS/pods/..%2F..%2Fetc/log)" 404

# ---- output formats ----
expect_ok "list table" sh -c "ctl ns list | head -n1 | grep -q '^NAMESPACE  *BUCKET  *TENANT  *STATUS'"
expect_ok "list -o yaml" sh -c "ctl ns list -o yaml | grep -q 'namespace: livecalc-bucket-batch-7'"
expect_ok "get describes" sh -c "ctl ns get $A | grep -q '^Diagnostics:'"
finish
