#!/usr/bin/env bash
# Seed 004 against a real Azure Blob API (Azurite on a free loopback port):
# the whole lifecycle with diagnostics read back from Azurite byte for byte;
# Azurite stopped during a reap -> the namespace is kept (logs on disk) and
# retried with backoff, and reaped once Azurite returns; past the upload
# window the seed's rule applies, recorded loudly as diagnostics lost.
TEST_NAME=ns-azurite
. "$(dirname "$0")/lib.sh"

start_azurite
export AZURE_BLOB_CONNECTION_STRING
AZURE_BLOB_CONNECTION_STRING=$(azurite_conn)
export DIAGNOSTIC_CONTAINER_NAME=diag-archive
RETRY=(--set reap-retry-initial=300ms --set reap-retry-max=1s --set reap-interval=1s)
start_stampd "${NS_ARGS[@]}" "${RETRY[@]}" --set reap-upload-window=10m
expect_ok "stampd uses azure" grep -q "blob storage: azure http://127.0.0.1:$AZURITE_PORT/devstoreaccount1" "$T/stampd.log"
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token contoso bob)
blob() { "$STAMP_BIN/stamp-blob" "$@"; }

# ---- the whole lifecycle ----
ctl ns create az-1 >/dev/null || fail create
NS=livecalc-bucket-az-1
ctl ns run-pod $NS w1 -- --steps 20 --interval-ms 5 --violation "heap 2GiB > 1GiB" >/dev/null || fail pod
ctl ns run-pod $NS w2 -- --steps 2000 --interval-ms 0 >/dev/null || fail pod2
wait_until "pods finish" 30 sh -c "[ \"\$(ctl ns pods $NS -o json | jq '[.pods[] | select(.phase == \"Succeeded\")] | length')\" = 2 ]"
ctl ns logs $NS w1 >"$T/w1.log"
ctl ns logs $NS w2 >"$T/w2.log"
expect_ok "finalize" ctl ns finalize $NS
wait_ns $NS reaped 30
ctl ns get $NS -o json >"$T/ns.json"
expect_eq "container from DIAGNOSTIC_CONTAINER_NAME" "$(jq -r .diagnostics.container "$T/ns.json")" diag-archive
expect_eq "three blobs" "$(jq '.diagnostics.files | length' "$T/ns.json")" 3
for i in 0 1 2; do
  p=$(jq -r ".diagnostics.files[$i].path" "$T/ns.json")
  expect_eq "azurite has $p, same sha and size" "$(blob sha diag-archive "$p")" \
    "$(jq -r ".diagnostics.files[$i] | \"\(.sha256) \(.size)\"" "$T/ns.json")"
done
base=$(jq -r '.diagnostics.blob_paths[0]' "$T/ns.json" | sed 's|/logs/.*||; s|/sentinel.*||')
blob get diag-archive "$base/logs/w1.log" >"$T/w1.blob" || fail "get w1"
blob get diag-archive "$base/logs/w2.log" >"$T/w2.blob" || fail "get w2"
expect_ok "w1 log byte for byte from azurite" cmp "$T/w1.log" "$T/w1.blob"
expect_ok "w2 log byte for byte from azurite" cmp "$T/w2.log" "$T/w2.blob"
expect_eq "violations from azurite" "$(blob get diag-archive "$base/sentinel-violations.json" | jq -r '.[0].violations')" "heap 2GiB > 1GiB"
case "$base" in contoso/az-1/*) ok "tenant prefix in azure" ;; *) fail "blob base $base" ;; esac

# ---- Azurite stopped during a reap: kept, retried, reaped on return ----
ctl ns create az-2 >/dev/null || fail create2
NS2=livecalc-bucket-az-2
ctl ns run-pod $NS2 w1 -- --steps 5 --interval-ms 5 --violation "rss high" >/dev/null || fail pod
wait_until "pod done" 20 sh -c "ctl ns pods $NS2 -o json | jq -e '.pods[0].phase == \"Succeeded\"'"
ctl ns logs $NS2 w1 >"$T/az2.log"
stop_azurite
expect_err "manual reap fails while azurite is down" "NOT reaped" ctl ns reap $NS2
expect_eq "kept: reaping" "$(ns_status $NS2)" reaping
[ -f "$DATA/namespaces/$NS2/pods/w1/log" ] || fail "pod log deleted before its upload"
ok "pod log kept on disk"
wait_until "retried with backoff" 30 sh -c "[ \"\$(ctl ns get $NS2 -o json | jq '.reap.attempts')\" -ge 3 ]"
expect_ok "ReapRetry warning events logged" grep -q "Reaping namespace $NS2: reap attempt [0-9]* failed at archive, namespace kept" "$T/stampd.log"
expect_eq "still kept" "$(ns_status $NS2)" reaping
expect_ok "failures in metrics" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q 'namespace_reap_failures_total{step=\"archive\"}'"
start_azurite
wait_ns $NS2 reaped 30
ok "reaped after azurite returned"
p=$(ctl ns get $NS2 -o json | jq -r '.diagnostics.blob_paths[] | select(endswith("w1.log"))')
blob get diag-archive "$p" >"$T/az2.blob" || fail "get az2"
expect_ok "az-2 log byte for byte after the outage" cmp "$T/az2.log" "$T/az2.blob"
expect_eq "nothing lost" "$(ctl ns get $NS2 -o json | jq '.diagnostics.diagnostics_lost // false')" false

# ---- past the upload window: reaped anyway, diagnostics lost, loudly ----
stop_stampd
start_stampd "${NS_ARGS[@]}" "${RETRY[@]}" --set reap-upload-window=5s
ctl ns create az-3 >/dev/null || fail create3
NS3=livecalc-bucket-az-3
ctl ns run-pod $NS3 w1 -- --steps 3 --interval-ms 5 >/dev/null || fail pod3
stop_azurite
ctl ns finalize $NS3 >/dev/null || fail finalize3
sleep 1
expect_eq "inside the window: kept" "$(ns_status $NS3)" reaping
wait_ns $NS3 reaped 30
expect_eq "diagnostics_lost recorded" "$(ctl ns get $NS3 -o json | jq .diagnostics.diagnostics_lost)" true
expect_ok "log says DIAGNOSTICS LOST" grep -q "ERROR - namespace $NS3: DIAGNOSTICS LOST" "$T/stampd.log"
expect_eq "metric" "$(curl -fsS http://127.0.0.1:$API_PORT/metrics | sed -n 's/^namespace_diagnostics_lost_total \([0-9.]*\).*/\1/p' | cut -d. -f1)" 1
expect_eq "audit diagnostics-lost" "$(env -u STAMP_TOKEN ctl audit --limit 100 -o json | jq -r '[.items[] | select(.operation == "diagnostics-lost" and .name == "'$NS3'")] | length')" 1
[ ! -e "$DATA/namespaces/$NS3" ] || fail "namespace left after the window"
finish
