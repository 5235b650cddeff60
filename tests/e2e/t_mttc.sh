#!/usr/bin/env bash
# MTTC (seed 004): bundles stored by content hash, a run that records bucket,
# bundle, config and result hash, and mttc/verify's eight steps in a fresh
# namespace that is cleaned up after.  A match passes; a pipeline that no
# longer reproduces, a corrupted bundle, a missing bundle and an unknown run
# are clear failures (non-zero exit, a message), and stampd carries on.
TEST_NAME=mttc
. "$(dirname "$0")/lib.sh"

start_stampd "${NS_ARGS[@]}" --set bundle-max-size=65536
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token actuarial dana)

head -c 20000 /dev/urandom >"$T/model-v1.bin"
want=$(sha256sum <"$T/model-v1.bin" | cut -d' ' -f1)
H=$(ctl bundle push "$T/model-v1.bin" -o json | jq -r .hash)
expect_eq "bundle named by its sha256" "$H" "$want"
expect_ok "stored under the tenant" cmp "$T/model-v1.bin" "$DATA/blobs/bundles/actuarial/$H"
expect_eq "pushed again: unchanged" "$(ctl bundle push "$T/model-v1.bin")" "bundle/$H unchanged (20000 bytes)"
expect_eq "listed" "$(ctl bundle list -o json | jq -r '.bundles[0].hash')" "$H"
head -c 70000 /dev/zero >"$T/big.bin"
expect_err "over bundle-max-size" "large" ctl bundle push "$T/big.bin"

ctl ns create q3-close >/dev/null || fail create
NS=livecalc-bucket-q3-close
ctl ns run $NS --bundle "$H" --set scenarios=300 --set months=36 -o json >"$T/run.json" || fail "run: $(cat "$T/run.json")"
expect_eq "run succeeded" "$(jq -r .status "$T/run.json")" Succeeded
expect_eq "run records config" "$(jq -c .config "$T/run.json")" '{"scenarios":300,"months":36}'
R=$(jq -r .result_hash "$T/run.json")
[ ${#R} = 64 ] || fail "result hash $R"
expect_eq "runs list" "$(ctl runs --bucket q3-close -o json | jq -r '.runs[0].result_hash')" "$R"
expect_err "run with an unknown bundle" "bundle" ctl ns run $NS --bundle "$(printf '0%.0s' $(seq 64))"
expect_err "run with a malformed hash" "hash" ctl ns run $NS --bundle ../../etc/passwd

# ---- verify: the seed's shape, a match, cleaned up ----
ctl mttc verify --bucket q3-close --bundle "$H" -o json >"$T/v.json" || fail "verify failed: $(cat "$T/v.json")"
expect_eq "success" "$(jq .success "$T/v.json")" true
expect_eq "match" "$(jq .match "$T/v.json")" true
expect_eq "hashes" "$(jq -r '"\(.original_result_hash) \(.resumed_result_hash)"' "$T/v.json")" "$R $R"
expect_ok "message" jq -e '.message | startswith("MTTC verification passed: ")' "$T/v.json"
expect_ok "duration a number" jq -e '.duration_seconds > 0' "$T/v.json"
expect_eq "steps measured" "$(jq -r '.steps | keys | join(",")' "$T/v.json")" \
  "bundle_fetch_seconds,bundle_verify_seconds,cleanup_seconds,execute_seconds,namespace_create_seconds,pipeline_init_seconds"
expect_eq "within the 120 s target" "$(jq -r '"\(.target_seconds) \(.within_target)"' "$T/v.json")" "120 true"
VNS=$(jq -r .verification_namespace "$T/v.json")
expect_eq "cleaned up within the call" "$(jq -r .cleanup "$T/v.json")" reaped
expect_eq "verification namespace reaped" "$(ns_status "$VNS")" reaped
expect_eq "its pipeline logs archived" "$(nsfield "$VNS" '[.diagnostics.blob_paths[] | select(test("logs/verify-(init|run).log$"))] | length')" 2
expect_ok "human output" sh -c "ctl mttc verify --bucket q3-close --bundle $H | grep -q '^MTTC verification passed'"
expect_eq "metric" "$(curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -c '^mttc_verifications_total{result="passed"}')" 1

# ---- failures are clear, never crashes ----
expect_err "no recorded run" "no successful run" ctl mttc verify --bucket other-bucket --bundle "$H"
expect_err "bad bucket id" "bucket_id" ctl mttc verify --bucket ../q3 --bundle "$H"
# The bundle's bytes changed under the store: step 3 catches it.
cp "$DATA/blobs/bundles/actuarial/$H" "$T/keep.bin"
printf 'tampered' >>"$DATA/blobs/bundles/actuarial/$H"
out=$(ctl mttc verify --bucket q3-close --bundle "$H" 2>&1) && fail "corrupt bundle verified: $out"
case "$out" in *"MTTC verification failed"*hash*) ok "corrupt bundle: $(echo "$out" | head -n1)" ;; *) fail "corrupt bundle: $out" ;; esac
# The bundle gone from the store.
rm "$DATA/blobs/bundles/actuarial/$H"
out=$(ctl mttc verify --bucket q3-close --bundle "$H" 2>&1) && fail "missing bundle verified: $out"
case "$out" in *"MTTC verification failed"*) ok "missing bundle: $(echo "$out" | head -n1)" ;; *) fail "missing bundle: $out" ;; esac
cp "$T/keep.bin" "$DATA/blobs/bundles/actuarial/$H"
# A pipeline that no longer reproduces the run: result hashes differ.
cat >"$T/drifting-pipeline" <<EOF
#!/bin/sh
"$STAMP_BIN/stamp-pipeline" "\$@" || exit \$?
[ "\$1" = run ] && printf 'drift\n' >>"\$4"
exit 0
EOF
chmod +x "$T/drifting-pipeline"
stop_stampd
start_stampd --set "pod-command=$STAMP_BIN/stamp-nsworker" --set "pipeline-command=$T/drifting-pipeline"
ctl mttc verify --bucket q3-close --bundle "$H" -o json >"$T/m.json" && fail "a mismatch passed"
expect_eq "mismatch: success false" "$(jq -r '"\(.success) \(.match)"' "$T/m.json")" "false false"
expect_eq "mismatch: message" "$(jq -r .message "$T/m.json")" "MTTC verification failed: result hashes differ"
expect_eq "mismatch: original kept" "$(jq -r .original_result_hash "$T/m.json")" "$R"
expect_eq "mismatch namespace cleaned up too" "$(ns_status "$(jq -r .verification_namespace "$T/m.json")")" reaped
expect_eq "audit mttc-verify" "$(env -u STAMP_TOKEN ctl audit --limit 200 -o json | jq '[.items[] | select(.operation == "mttc-verify")] | length')" 7

# ---- kill -9 of stampd while a verification runs ----
# The verification's namespace would otherwise stay active (nothing but the
# cut call would ever reap it): the restarted stampd finalizes it, and the
# reaper archives its diagnostics and reaps it.
cat >"$T/gated-pipeline" <<EOF
#!/bin/sh
case "\$2" in
  */work/verify)
    i=0
    while [ "\$1" = init ] && [ ! -e "\$2/gate" ] && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i + 1)); done ;;
esac
exec "$STAMP_BIN/stamp-pipeline" "\$@"
EOF
chmod 755 "$T/gated-pipeline"
# waiting_verification: the namespace of a verification waiting at its gate.
waiting_verification() {
  local d v
  for d in "$DATA"/namespaces/livecalc-mttc-*/pods/verify-init; do
    v=${d%/pods/verify-init}
    [ -d "$d" ] && [ ! -e "$v/work/verify/gate" ] && basename "$v"
  done | head -n1
}
stop_stampd
start_stampd --set "pod-command=$STAMP_BIN/stamp-nsworker" --set "pipeline-command=$T/gated-pipeline" \
  --set reap-interval=1s
ctl mttc verify --bucket q3-close --bundle "$H" >"$T/cut.out" 2>&1 &
VPID=$!
end=$(( $(date +%s) + 30 ))
while [ -z "$(waiting_verification)" ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "no verification reached its gate"
  sleep 0.1
done
CUT=$(waiting_verification)
log "cut short: $CUT"
expect_eq "its namespace is active" "$(ns_status "$CUT")" active
crash_stampd
wait "$VPID" && fail "the cut verification was acknowledged: $(cat "$T/cut.out")"
start_stampd --set "pod-command=$STAMP_BIN/stamp-nsworker" --set "pipeline-command=$STAMP_BIN/stamp-pipeline" \
  --set reap-interval=1s
wait_ns "$CUT" reaped 60
expect_ok "event VerificationInterrupted" sh -c "ctl events namespace/$CUT -o json | jq -e '.items[] | select(.reason == \"VerificationInterrupted\")' >/dev/null"
expect_eq "its diagnostics archived" "$(nsfield "$CUT" .diagnostics.logs_archived)" true
expect_eq "no pod left" "$(procs | grep -c "^ns/$CUT/")" 0
expect_ok "a verification after the restart passes" ctl mttc verify --bucket q3-close --bundle "$H"
kill -0 "$STAMPD_PID" || fail "stampd died"
finish
