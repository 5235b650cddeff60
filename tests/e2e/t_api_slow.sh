#!/usr/bin/env bash
# Slow work holds no API thread.  Four MTTC verifications wait in their
# pipelines (each waits at a gate the test opens) and a large namespace is
# reaped by hand, while another client lists stamps in a loop: the four
# verifications must all be waiting at once, the listings must go on being
# answered meanwhile, and every listing is a 200.  (When each held one of
# the four API threads, the requests that came to a thread already held
# were never read: two verifications, the reap and two listings were cut
# after api-header-timeout.)  The figures (listings, the slowest one) are
# printed; nothing here asserts a duration.  Then the limits: past
# api-max-waiting a request is answered 503 with Retry-After, a waiting
# request outlives the idle and header timeouts, and a client that goes
# away while its request waits is noticed, its connection closed and its
# work finished.
TEST_NAME=api-slow
. "$(dirname "$0")/lib.sh"

# The pipeline of a verification waits at WORKDIR/gate (up to 3 min, so
# that a stalled stampd still ends this test); the recorded runs do not.
cat >"$T/gated-pipeline" <<EOF
#!/bin/sh
case "\$2" in
  */work/verify)
    i=0
    while [ "\$1" = init ] && [ ! -e "\$2/gate" ] && [ \$i -lt 1800 ]; do sleep 0.1; i=\$((i + 1)); done ;;
esac
exec "$STAMP_BIN/stamp-pipeline" "\$@"
EOF
chmod 755 "$T/gated-pipeline"
ARGS=(--set "pod-command=$STAMP_BIN/stamp-nsworker" --set "pipeline-command=$T/gated-pipeline")
start_stampd "${ARGS[@]}" --set job-threads=6
OPTOKEN=$(awk '/^token:/ {print $2}' "$STAMP_CONFIG")
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token acme vera)
TOKEN=$STAMP_TOKEN

# gates_waiting: verification pipelines waiting at their gate now.
gates_waiting() {
  local n=0 d
  for d in "$DATA"/namespaces/livecalc-mttc-*/pods/verify-init; do
    [ -d "$d" ] && [ ! -e "${d%/pods/verify-init}/work/verify/gate" ] && n=$((n + 1))
  done
  echo "$n"
}
# until_at_least DESC N TIMEOUT_S FUNCTION: until FUNCTION prints N or more.
until_at_least() {
  local end=$(( $(date +%s) + $3 ))
  while [ "$($4)" -lt "$2" ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out: $1 ($($4) of $2)"
    sleep 0.1
  done
}
open_gates() {
  local d
  for d in "$DATA"/namespaces/livecalc-mttc-*/work/verify; do [ -d "$d" ] && touch "$d/gate"; done
}
# verify_bg BUCKET OUT: POST mttc/verify in the background; "STATUS" in OUT.code.
verify_bg() {
  curl -sS -o "$2" -D "$2.headers" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"bucket_id\":\"$1\",\"model_bundle_hash\":\"$H\"}" \
    "http://127.0.0.1:$API_PORT/v1/platform/mttc/verify" >"$2.code" 2>/dev/null
}

# ---- a bundle and a recorded run in five buckets ----
head -c 4096 /dev/urandom >"$T/model.bin"
H=$(ctl bundle push "$T/model.bin" -o json | jq -r .hash)
for b in 1 2 3 4 5; do
  ctl ns create slow-$b >/dev/null || fail "create slow-$b"
  ctl ns run livecalc-bucket-slow-$b --bundle "$H" -o json >"$T/run-$b.json" || fail "run $b: $(cat "$T/run-$b.json")"
done
# ---- a large namespace: sixteen pods, about 4 MB of log each ----
BIG=livecalc-bucket-big
ctl ns create big >/dev/null || fail "create big"
for p in $(seq 1 16); do
  ctl ns run-pod $BIG p$p -- --steps 50000 --interval-ms 0 >/dev/null || fail "pod p$p"
done
wait_until "big pods done" 120 sh -c "[ \"\$(ctl ns pods $BIG -o json | jq '[.pods[] | select(.phase == \"Succeeded\")] | length')\" = 16 ]"

# ---- the listings, all along ----
getter() {
  while [ ! -e "$T/stop-gets" ]; do
    curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $OPTOKEN" \
      "http://127.0.0.1:$API_PORT/v1/stamps" >>"$T/gets" 2>/dev/null || echo "000 0" >>"$T/gets"
  done
}
# gate_opener: opens every gate, again and again, until $T/stop-gates.
gate_opener() {
  while [ ! -e "$T/stop-gates" ]; do
    open_gates
    sleep 0.2
  done
}
# The helpers die with the test, however it ends.
HELPERS=()
trap 'kill "${HELPERS[@]}" 2>/dev/null; crash_stampd; kill_owned; stop_azurite' EXIT
: >"$T/gets"
getter &
HELPERS+=($!)
gets() { wc -l <"$T/gets"; }

# ---- a reap of the large namespace and four verifications ----
(api POST "/v1/platform/namespaces/$BIG/reap" >"$T/reap.code"; cp "$T/body" "$T/reap.json") &
REAPER=$!
VPIDS=()
for b in 1 2 3 4; do
  verify_bg slow-$b "$T/v$b.json" &
  VPIDS+=($!)
done
# Bounded waits that do not fail: a stalled stampd (the code before jobs)
# still gets to the figures.
end=$(( $(date +%s) + 60 ))
while [ "$(gates_waiting)" -lt 4 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
g0=$(gets)
end=$(( $(date +%s) + 60 ))
while [ $(( $(gets) - g0 )) -lt 200 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
during=$(( $(gets) - g0 ))
waiting=$(gates_waiting)
gate_opener &
HELPERS+=($!)
wait "${VPIDS[@]}" "$REAPER"
touch "$T/stop-gets" "$T/stop-gates"
wait "${HELPERS[@]}"
HELPERS=()
n=$(gets)
not200=$(awk '$1 != 200' "$T/gets" | wc -l)
slowest=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$T/gets")
log "listings answered while $waiting verifications waited at their gates: $during"
log "listings: $n in all, $not200 not 200, the slowest took ${slowest}s"
expect_eq "every listing answered 200" "$not200" 0
expect_eq "the four verifications waited at once" "$waiting" 4
[ "$during" -ge 200 ] || fail "the listings stalled while the verifications waited ($during answered)"
ok "listings answered while four verifications waited"
for b in 1 2 3 4; do
  expect_eq "verification $b: 200, passed" "$(cat "$T/v$b.json.code"):$(jq -r '"\(.success) \(.cleanup)"' "$T/v$b.json")" "200:true reaped"
done
expect_eq "the reap: 200" "$(cat "$T/reap.code")" 200
expect_eq "the reap archived sixteen logs and the index" "$(jq '.diagnostics.blob_paths | length' "$T/reap.json")" 17
expect_eq "big reaped" "$(ns_status $BIG)" reaped

# ---- the limits ----
# Short connection timeouts: a request waiting for its job must outlive
# them (the watchdog and MHD leave a suspended connection alone).
stop_stampd
start_stampd "${ARGS[@]}" --set api-max-waiting=2 --set api-idle-timeout=2s --set api-header-timeout=1s
VPIDS=()
for b in 1 2 3; do
  verify_bg slow-$b "$T/w$b.json" &
  VPIDS+=($!)
done
answered() {
  local n=0 f
  for f in "$T"/w[123].json.code; do [ -s "$f" ] && n=$((n + 1)); done
  echo "$n"
}
until_at_least "one of three answered at once" 1 60 answered
until_at_least "two verifications at their gates" 2 60 gates_waiting
refused=""
for b in 1 2 3; do [ -s "$T/w$b.json.code" ] && refused=$b; done
[ -n "$refused" ] || fail "no verification refused past api-max-waiting=2"
expect_eq "the third: 503" "$(cat "$T/w$refused.json.code")" 503
expect_ok "with Retry-After" grep -qi "^Retry-After: " "$T/w$refused.json.headers"
expect_ok "naming the limit" grep -q "api-max-waiting" "$T/w$refused.json"
sleep 3 # longer than both timeouts
open_gates
wait "${VPIDS[@]}"
for b in 1 2 3; do
  [ "$b" = "$refused" ] && continue
  expect_eq "verification $b, waiting past the connection timeouts: 200" "$(cat "$T/w$b.json.code")" 200
done
# A client that goes away while its request waits.
curl -sS -o /dev/null --max-time 2 -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"bucket_id\":\"slow-5\",\"model_bundle_hash\":\"$H\"}" "http://127.0.0.1:$API_PORT/v1/platform/mttc/verify" 2>/dev/null &&
  fail "the abandoned verification answered within 2 s"
wait_until "the gone client noticed" 20 grep -q "client(s) went away while their request waited" "$T/stampd.log"
ok "the gone client noticed"
# Its slot is free again: two more wait.
verify_bg slow-1 "$T/x1.json" &
X1=$!
verify_bg slow-2 "$T/x2.json" &
X2=$!
until_at_least "three at their gates (the abandoned one's included)" 3 60 gates_waiting
open_gates
wait "$X1" "$X2"
expect_eq "after the gone client, two more: 200 200" "$(cat "$T/x1.json.code") $(cat "$T/x2.json.code")" "200 200"
# The abandoned one's work went on to its end: audited, its namespace reaped.
abandoned() {
  env -u STAMP_TOKEN ctl audit --limit 500 -o json |
    jq -r '[.items[] | select(.operation == "mttc-verify" and .detail.bucket_id == "slow-5")][0].detail.namespace // empty'
}
ANS=
for _ in $(seq 300); do
  ANS=$(abandoned)
  [ -n "$ANS" ] && break
  sleep 0.2
done
[ -n "$ANS" ] || fail "the abandoned verification was never audited"
expect_eq "the abandoned verification ran to its end: its namespace reaped" "$(ns_status "$ANS")" reaped
kill -0 "$STAMPD_PID" || fail "stampd died"
finish
