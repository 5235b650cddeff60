#!/usr/bin/env bash
# Every byte a pod reports is archived faithfully or refused loudly, and no
# odd byte can make a shared record unreadable.  Pods here run /bin/sh with
# the tenant's script, so they write any bytes they like: binary logs, and
# memory-sentinel violations that are not UTF-8 or hold a NUL.  The archive
# is read back from Azurite with Microsoft's own SDK (@azure/storage-blob),
# not with stampd's code, and compared with the bytes the pods wrote.
# Also: stampctl refuses an argument it cannot send; an annotations request
# is all or nothing; 600 concurrent writes of one annotation all succeed; a
# refused bucket id of two-byte characters leaves a readable audit log.
TEST_NAME=ns-bytes
. "$(dirname "$0")/lib.sh"

SDK=$STAMP_SRC/.deps/azure-sdk
[ -d "$SDK/node_modules/@azure/storage-blob" ] || fail "$SDK missing (scripts/install-deps.sh test installs it)"
sdk_read() { AZSDK_DIR=$SDK node "$STAMP_SRC/tests/tools/azblob-read.mjs" "$(azurite_conn)" "$@"; }

start_azurite
export AZURE_BLOB_CONNECTION_STRING
AZURE_BLOB_CONNECTION_STRING=$(azurite_conn)
start_stampd --set pod-command=/bin/sh --set reap-interval=500ms
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token bytes-co carol)
TOKEN=$STAMP_TOKEN

ctl ns create raw-1 >/dev/null || fail create
NS=livecalc-bucket-raw-1
# Every byte value once, then a line: the log as the pod writes it.
ALLBYTES='i=0; while [ $i -lt 256 ]; do printf "\\$(printf %o $i)"; i=$((i+1)); done; printf "\nend\n"'
ctl ns run-pod $NS p1 -- -c "printf 'bad\\377byte' > \"\$STAMP_ANNOTATIONS_DIR/memory-sentinel-violations\"; $ALLBYTES" >/dev/null || fail p1
ctl ns run-pod $NS p2 -- -c "printf 'before\\000after' > \"\$STAMP_ANNOTATIONS_DIR/memory-sentinel-violations\"; echo p2 done" >/dev/null || fail p2
ctl ns run-pod $NS p3 -- -c "printf 'plain text \\303\\251' > \"\$STAMP_ANNOTATIONS_DIR/memory-sentinel-violations\"; echo p3 done" >/dev/null || fail p3
wait_until "pods finish" 30 sh -c "[ \"\$(ctl ns pods $NS -o json | jq '[.pods[] | select(.phase == \"Succeeded\")] | length')\" = 3 ]"

bash -c "$ALLBYTES" >"$T/p1.expected"
ctl ns logs $NS p1 >"$T/p1.log" || fail "logs p1"
expect_ok "binary log read back whole through the API" cmp "$T/p1.log" "$T/p1.expected"

ctl ns pods $NS -o json >"$T/pods.json" || fail "stampctl ns pods -o json on odd bytes"
expect_ok "stampctl ns pods (table) on odd bytes" ctl ns pods $NS
pod() { jq -r --arg p "$1" '.pods[] | select(.name == $p) | '"$2" "$T/pods.json"; }
expect_eq "non-UTF-8 violation shown escaped" "$(pod p1 '.annotations."memory-sentinel-violations"')" 'bad\xffbyte'
expect_eq "non-UTF-8 violation's exact bytes" "$(pod p1 '.annotationsBase64."memory-sentinel-violations"' | base64 -d | od -An -tx1 | tr -d ' \n')" \
  "$(printf 'bad\377byte' | od -An -tx1 | tr -d ' \n')"
expect_eq "NUL violation shown escaped, not cut" "$(pod p2 '.annotations."memory-sentinel-violations"')" 'before\x00after'
expect_eq "NUL violation's exact bytes" "$(pod p2 '.annotationsBase64."memory-sentinel-violations"' | base64 -d | od -An -tx1 | tr -d ' \n')" \
  "$(printf 'before\000after' | od -An -tx1 | tr -d ' \n')"
expect_eq "UTF-8 violation as text, no base64" "$(pod p3 '[.annotations."memory-sentinel-violations", (.annotationsBase64 // {} | length)] | join("|")')" "plain text é|0"

# ---- stampctl refuses what it cannot send faithfully ----
expect_err "non-UTF-8 argument refused" "not valid UTF-8" ctl ns run-pod $NS p4 -- -c $'echo bad\xffbyte'
expect_eq "exit status 2" "$(ctl ns run-pod $NS p4 -- -c $'echo \xff' >/dev/null 2>&1; echo $?)" 2
expect_eq "no pod p4" "$(ctl ns pods $NS -o json | jq '[.pods[] | select(.name == "p4")] | length')" 0

# ---- annotations: all or nothing; concurrent writes of one key ----
code=$(api POST /v1/platform/namespaces/$NS/pods/p3/annotations -H 'Content-Type: application/json' \
  -d '{"good": "1", "Bad Key": "x"}')
expect_eq "mixed annotations request refused" "$code" 400
expect_eq "the valid member was not written" "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "p3") | .annotations.good // "absent"')" absent
: >"$T/codes"
writers=()
for w in $(seq 8); do
  (for i in $(seq 75); do
     curl -sS -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $TOKEN" \
       -H 'Content-Type: application/json' -d "{\"owner\": \"w$w-$i\"}" \
       "http://127.0.0.1:$API_PORT/v1/platform/namespaces/$NS/pods/p3/annotations"
   done >>"$T/codes.$w") &
  writers+=($!)
done
wait "${writers[@]}"
cat "$T"/codes.* >"$T/codes"
expect_eq "600 concurrent annotation writes answered" "$(wc -l <"$T/codes")" 600
expect_eq "600 concurrent annotation writes, all 200" "$(grep -cv '^200$' "$T/codes")" 0
case "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "p3") | .annotations.owner')" in
  w*-*) ok "one whole value won" ;;
  *) fail "annotation after concurrent writes" ;;
esac
[ -z "$(find "$DATA/namespaces/$NS" -name '*.tmp*')" ] || fail "temporary files left behind"
ok "no temporary files left"

# ---- a refused bucket id of two-byte characters: readable error, audit ----
E40=$(printf 'é%.0s' $(seq 40))
code=$(api POST /v1/platform/namespaces -H 'Content-Type: application/json' -d "{\"bucket_id\": \"$E40\"}")
expect_eq "two-byte bucket id refused" "$code" 400
expect_ok "its error is one JSON error" jq -e '.error.message | test("bucket_id")' "$T/body"
expect_ok "audit still lists" sh -c "env -u STAMP_TOKEN ctl audit --limit 500 -o json | jq -e '.items | length > 0'"

# ---- finalize -> reaped; the archive read with Microsoft's SDK ----
expect_ok finalize ctl ns finalize $NS
wait_ns $NS reaped 30
ctl ns get $NS -o json >"$T/ns.json"
base=$(jq -r '.diagnostics.blob_paths[] | select(endswith("sentinel-violations.json"))' "$T/ns.json" | sed 's|/sentinel-violations.json$||')
[ -n "$base" ] || fail "no sentinel-violations.json in $(cat "$T/ns.json")"
sdk_read diagnostics "$base/" >"$T/sdk.json" || fail "sdk read"
expect_eq "the SDK sees every archived file" "$(jq length "$T/sdk.json")" "$(jq '.diagnostics.files | length' "$T/ns.json")"
for i in $(seq 0 $(( $(jq '.diagnostics.files | length' "$T/ns.json") - 1 ))); do
  p=$(jq -r ".diagnostics.files[$i].path" "$T/ns.json")
  expect_eq "SDK: $p has the recorded size and sha256" \
    "$(jq -r --arg n "$p" '.[] | select(.name == $n) | "\(.sha256) \(.size)"' "$T/sdk.json")" \
    "$(jq -r ".diagnostics.files[$i] | \"\(.sha256) \(.size)\"" "$T/ns.json")"
done
expect_eq "SDK: p1's binary log is the bytes the pod wrote" \
  "$(jq -r --arg n "$base/logs/p1.log" '.[] | select(.name == $n) | .sha256' "$T/sdk.json")" \
  "$(sha256sum "$T/p1.expected" | cut -d' ' -f1)"
jq -r --arg n "$base/sentinel-violations.json" '.[] | select(.name == $n) | .base64' "$T/sdk.json" | base64 -d >"$T/violations.json"
viol() { jq -r --arg p "$1" '.[] | select(.pod == $p) | '"$2" "$T/violations.json"; }
expect_eq "SDK: three violations archived" "$(jq length "$T/violations.json")" 3
expect_eq "SDK: non-UTF-8 violation's exact bytes" "$(viol p1 .violations_base64 | base64 -d | od -An -tx1 | tr -d ' \n')" \
  "$(printf 'bad\377byte' | od -An -tx1 | tr -d ' \n')"
expect_eq "SDK: NUL violation's exact bytes, not cut" "$(viol p2 .violations_base64 | base64 -d | od -An -tx1 | tr -d ' \n')" \
  "$(printf 'before\000after' | od -An -tx1 | tr -d ' \n')"
expect_eq "SDK: text violation as text" "$(viol p3 .violations)" "plain text é"
expect_ok "reap logged the count it archived" grep -q "Indexed 3 sentinel violations" "$T/stampd.log"
finish
