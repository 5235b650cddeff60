#!/usr/bin/env bash
# Blob store faults at each request of a reap (issue 16, item 3).  stampd's
# Azure connection string points at stamp-faultproxy, in front of a real
# Azurite: one reap runs clean and its requests are recorded (M of them);
# then, for every request k of that sequence and every fault (HTTP 500, 503
# with Retry-After, a hang past stampd's blob timeout, the connection cut in
# the middle of the answer), a namespace with known pod output is finalized
# with that fault on its request k, held until the test lifts it.  While it
# holds: the namespace is kept (reaping, its pods' logs on disk), the error
# names the operation, the blob and the fault, the reap is retried, and the
# API answers even while a request hangs.  Once lifted: reaped, and what
# Azurite holds (read with Microsoft's SDK, past the proxy) is the pods'
# output byte for byte, under one archive directory, nothing twice.
# Request 1 (the container) is made once per stampd process: its faults
# each get a fresh stampd.  Other answers (403, 404, 409, 412) and a slow
# but steady answer are checked on chosen requests.
TEST_NAME=fault-blob
. "$(dirname "$0")/lib.sh"

SDK=$STAMP_SRC/.deps/azure-sdk/node_modules
[ -d "$SDK/@azure/storage-blob" ] || fail "$SDK missing (scripts/install-deps.sh test installs it)"

PROXY_PID=
PLAN=$T/plan
PLOG=$T/proxy.log
start_proxy() {
  : >"$PLAN"
  rm -f "$T/proxy.port"
  "$STAMP_BIN/stamp-faultproxy" --upstream "127.0.0.1:$AZURITE_PORT" --plan "$PLAN" --log "$PLOG" \
    --port-file "$T/proxy.port" >>"$T/proxy.err" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 100); do
    [ -s "$T/proxy.port" ] && { PROXY_PORT=$(cat "$T/proxy.port"); return 0; }
    kill -0 "$PROXY_PID" 2>/dev/null || fail "faultproxy exited: $(cat "$T/proxy.err")"
    sleep 0.05
  done
  fail "faultproxy did not start"
}
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  kill -TERM "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=
}
trap 'stop_proxy; crash_replicas; crash_stampd; kill_owned; stop_azurite; stop_pg' EXIT

start_azurite
start_proxy
export AZURE_BLOB_CONNECTION_STRING
AZURE_BLOB_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$PROXY_PORT/devstoreaccount1;"
export DIAGNOSTIC_CONTAINER_NAME=diag-archive
# Short retries; many reaps at once (each hung request holds a job thread
# for the blob timeout, 5 x probe-timeout = 5 s here).
ARGS=("${NS_ARGS[@]}" --set reap-retry-initial=200ms --set reap-retry-max=1s --set reap-interval=1s
  --set reap-upload-window=10m --set job-threads=24)
start_stampd "${ARGS[@]}"
expect_ok "stampd uses the proxy" grep -q "blob storage: azure http://127.0.0.1:$PROXY_PORT/devstoreaccount1" "$T/stampd.log"
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token contoso bob)
TOKEN=$STAMP_TOKEN
mkdir -p "$T/logs"

# A namespace for bucket $1 with two finished pods (w1 reports a sentinel
# violation); their logs as stampctl shows them are kept in $T/logs.
make_ns() {
  local b=$1 ns=livecalc-bucket-$1
  ctl ns create "$b" >/dev/null || fail "create $b"
  ctl ns run-pod "$ns" w1 -- --steps 4 --interval-ms 1 --violation "heap of $b over 1GiB" >/dev/null || fail "pod w1 of $b"
  ctl ns run-pod "$ns" w2 -- --steps "${2:-12}" --interval-ms 0 >/dev/null || fail "pod w2 of $b"
}
pods_done() {
  [ "$(ctl ns pods "livecalc-bucket-$1" -o json | jq '[.pods[] | select(.phase == "Succeeded")] | length')" = 2 ]
}
save_logs() {
  local b=$1 ns=livecalc-bucket-$1
  wait_until "pods of $b finish" 30 pods_done "$b"
  ctl ns logs "$ns" w1 >"$T/logs/$b-w1.log" || fail "logs w1 of $b"
  ctl ns logs "$ns" w2 >"$T/logs/$b-w2.log" || fail "logs w2 of $b"
}

# Every blob under contoso/ in Azurite, read with the Azure SDK straight
# from Azurite (not through the proxy, not with stampd's code).
sdk_dump() {
  AZSDK_DIR=$SDK node "$STAMP_SRC/tests/tools/azblob-read.mjs" "$(azurite_conn)" diag-archive contoso/ >"$T/sdk.json" ||
    fail "reading the archive with the SDK"
}

# The namespace of bucket $1 is reaped and its archive is whole: three
# blobs under the one timestamp its reap fixed, each the pod output byte for
# byte and the size and sha256 status.diagnostics records; nothing else
# under the bucket (no second copy elsewhere).  Needs sdk_dump first.
check_archive() {
  local b=$1 ns=livecalc-bucket-$1 j got want base f
  j=$(ctl ns get "$ns" -o json) || fail "get $ns"
  # One pass: status | lost | the blobs under the bucket | what Azurite
  # holds (name sha256 size) | what status.diagnostics recorded.
  got=$(jq -r --arg b "$b" --slurpfile sdk "$T/sdk.json" '
    [$sdk[0][] | select(.name | startswith("contoso/\($b)/"))] as $blobs |
    [.status, (.diagnostics.diagnostics_lost // false | tostring), .reap.timestamp,
     ($blobs | map(.name) | sort | join(" ")),
     ([$blobs[] | select(.name | endswith(".log")) | "\(.name) \(.sha256) \(.size)"] | sort | join(",")),
     ([.diagnostics.files[] | select(.path | endswith(".log")) | "\(.path) \(.sha256) \(.size)"] | sort | join(","))] | join("|")' <<<"$j") ||
    fail "$ns: reading its status"
  IFS='|' read -r -a got <<<"$got"
  [ "${got[0]}" = reaped ] || fail "$ns: ${got[0]}, not reaped"
  [ "${got[1]}" = false ] || fail "$ns: diagnostics lost"
  base=contoso/$b/${got[2]}
  [ "${got[3]}" = "$base/logs/w1.log $base/logs/w2.log $base/sentinel-violations.json" ] ||
    fail "$ns: archive holds \"${got[3]}\", want 3 blobs under $base"
  # The pods' output as stampctl showed it before the reap, by sha256 and size.
  want=
  for f in w1 w2; do
    want+="${want:+,}$base/logs/$f.log $(sha256sum <"$T/logs/$b-$f.log" | cut -d' ' -f1) $(wc -c <"$T/logs/$b-$f.log")"
  done
  [ "${got[4]}" = "$want" ] || fail "$ns: Azurite holds ${got[4]}, the pods wrote $want"
  [ "${got[5]}" = "$want" ] || fail "$ns: status.diagnostics records ${got[5]}, the pods wrote $want"
  [ "$(jq -r --arg n "$base/sentinel-violations.json" '.[] | select(.name == $n) | .base64' "$T/sdk.json" | base64 -d |
    jq -r '.[] | select(.pod == "w1") | .violations')" = "heap of $b over 1GiB" ] || fail "$ns: violations index"
  [ ! -e "$DATA/namespaces/$ns" ] || fail "$ns: directory left after the reap"
}

# ---- one clean reap: the sequence of requests ----
make_ns clean
save_logs clean
ctl ns finalize livecalc-bucket-clean >/dev/null || fail "finalize clean"
wait_ns livecalc-bucket-clean reaped 30
awk '$2 == "req" {print $5, $6}' "$PLOG" >"$T/seq"
mapfile -t SEQ <"$T/seq"
M=${#SEQ[@]}
log "a reap's requests (M=$M):"
for k in $(seq 1 "$M"); do log "  $k: ${SEQ[$((k - 1))]}"; done
ts=$(nsfield livecalc-bucket-clean .reap.timestamp)
p=/devstoreaccount1/diag-archive/contoso/clean/$ts
expect_eq "the sequence: container, then put and read back each file" "$(cut -d' ' -f1-2 "$T/seq" | tr '\n' ' ')" \
  "PUT /devstoreaccount1/diag-archive?restype=container PUT $p/logs/w1.log GET $p/logs/w1.log PUT $p/logs/w2.log GET $p/logs/w2.log PUT $p/sentinel-violations.json GET $p/sentinel-violations.json "
sdk_dump
check_archive clean
ok "clean reap archived and verified"

# rule K KIND BUCKET: the plan line putting fault KIND on request K of the
# reap of BUCKET (request 1, the container, is no one bucket's).
fault_of() {
  case $1 in
    500) echo "status=500" ;;
    503) echo "status=503 retry-after=1" ;;
    hang) echo "hang=60" ;;
    cut) echo "cut" ;;
    *) echo "$1" ;;
  esac
}
rule() {
  local k=$1 kind=$2 b=$3 m t
  read -r m t <<<"${SEQ[$((k - 1))]}"
  if [ "$k" = 1 ]; then
    echo "method=$m path=restype=container $(fault_of "$kind")"
  else
    echo "method=$m path=/contoso/$b/ path=/${t##*/} $(fault_of "$kind")"
  fi
}
# What the error of request K with fault KIND must say.
want_op() {
  local m t
  read -r m t <<<"${SEQ[$(($1 - 1))]}"
  case "$m $t" in
    *restype=container*) echo "create container diag-archive" ;;
    PUT*) echo "put blob diag-archive/contoso/$2/" ;;
    GET*) echo "get blob diag-archive/contoso/$2/" ;;
  esac
}
want_fault() {
  case $1 in
    500) echo "HTTP 500 InternalError" ;;
    503) echo "HTTP 503 ServerBusy" ;;
    hang) echo "timed out" ;;
    cut) echo "connection" ;;
    403) echo "HTTP 403 AuthenticationFailed" ;;
    404) echo "HTTP 404 BlobNotFound" ;;
    409) echo "HTTP 409 BlobAlreadyExists" ;;
    412) echo "HTTP 412 ConditionNotMet" ;;
  esac
}

# check_held NS K KIND: while the fault holds, the namespace is kept with
# its pods' logs, the error is clear, and the faulted request was tried
# again (the retry reached it a second time).
check_held() {
  local ns=$1 k=$2 kind=$3 b=${1#livecalc-bucket-} j err m t n
  j=$(ctl ns get "$ns" -o json) || fail "get $ns"
  [ "$(jq -r .status <<<"$j")" = reaping ] || fail "$ns ($kind at request $k): $(jq -r .status <<<"$j"), want reaping"
  [ -f "$DATA/namespaces/$ns/pods/w1/log" ] && [ -f "$DATA/namespaces/$ns/pods/w2/log" ] ||
    fail "$ns ($kind at request $k): pod logs deleted before the archive verified"
  err=$(jq -r '.reap.lastError // ""' <<<"$j")
  case "$err" in *"$(want_op "$k" "$b")"*"$(want_fault "$kind")"*) ;; *)
    fail "$ns ($kind at request $k): lastError \"$err\" lacks \"$(want_op "$k" "$b")\" ... \"$(want_fault "$kind")\"" ;;
  esac
  read -r m t <<<"${SEQ[$((k - 1))]}"
  t=/${t##*/}
  [ "$k" = 1 ] && t="?restype=container"
  n=$(awk -v m="$m" -v b="/contoso/$b/" -v t="$t" -v k="$k" \
    '$2 == "req" && $5 == m && index($6, t) && (k == 1 || index($6, b)) && $8 != "pass"' "$PLOG" | wc -l)
  [ "$n" -ge 2 ] || fail "$ns ($kind at request $k): the faulted request was tried $n time(s), want a retry"
}

# ---- requests 2..M, each fault, one namespace each, reaped in parallel ----
KINDS=(500 503 hang cut)
NSS=()
for k in $(seq 2 "$M"); do
  for kind in "${KINDS[@]}"; do
    make_ns "f$k-$kind"
    NSS+=("$k $kind")
  done
done
# Other answers on chosen requests: a key Azure refuses, a read-back that
# finds nothing, a conflict, a failed precondition.
EXTRA=("2 403" "5 404" "4 409" "6 412")
for x in "${EXTRA[@]}"; do
  read -r k kind <<<"$x"
  make_ns "x$k-$kind"
done
# A slow answer that keeps coming is no hang: w2's log (about 0.9 MB) is
# read back at 100 kB/s, well past the 5 s blob timeout.
make_ns slow 9000
for x in "${NSS[@]}"; do read -r k kind <<<"$x"; save_logs "f$k-$kind"; done
for x in "${EXTRA[@]}"; do read -r k kind <<<"$x"; save_logs "x$k-$kind"; done
save_logs slow
log "w2 of slow: $(wc -c <"$T/logs/slow-w2.log") bytes"
{
  for x in "${NSS[@]}"; do read -r k kind <<<"$x"; rule "$k" "$kind" "f$k-$kind"; done
  for x in "${EXTRA[@]}"; do read -r k kind <<<"$x"; rule "$k" "status=$kind" "x$k-$kind"; done
  echo "method=GET path=/contoso/slow/ path=/w2.log slow=100000"
} >"$PLAN.new"
mv "$PLAN.new" "$PLAN"
for x in "${NSS[@]}"; do read -r k kind <<<"$x"; ctl ns finalize "livecalc-bucket-f$k-$kind" >/dev/null || fail "finalize f$k-$kind"; done
for x in "${EXTRA[@]}"; do read -r k kind <<<"$x"; ctl ns finalize "livecalc-bucket-x$k-$kind" >/dev/null || fail "finalize x$k-$kind"; done
ctl ns finalize livecalc-bucket-slow >/dev/null || fail "finalize slow"

# A GET while a request hangs: a hung request (in the proxy's log, not yet
# ended) before the GET, and still not ended once the GET was answered.
hung_now() {
  awk '$2 == "req" && $8 ~ /^hang/ {h[$3] = 1} $2 == "end" {delete h[$3]} END {for (n in h) print n}' "$PLOG" | head -n 1
}
wait_until "a request hangs" 30 sh -c "[ -n \"\$(awk '\$2 == \"req\" && \$8 ~ /^hang/' '$PLOG')\" ]"
answered=
for _ in $(seq 20); do
  h=$(hung_now)
  if [ -n "$h" ]; then
    ctl ns get livecalc-bucket-clean -o json >"$T/during.json" && curl -fsS -m 20 "http://127.0.0.1:$API_PORT/healthz" >/dev/null &&
      [ "$(api GET /v1/platform/namespaces?all_tenants=false)" = 200 ] || fail "API did not answer during a hang"
    if ! awk -v n="$h" '$2 == "end" && $3 == n {f = 1} END {exit !f}' "$PLOG"; then
      answered=$h
      break
    fi
  fi
  sleep 0.2
done
[ -n "$answered" ] || fail "no GET answered while a request hung"
ok "the API answered while request $answered hung"

# Until each faulted request was tried twice (once for the first attempt,
# once for a retry).
tried_twice() {
  local x k kind m t b n
  for x in "${NSS[@]}" "${EXTRA[@]}"; do
    read -r k kind <<<"$x"
    case $kind in 40*|41*) b=x$k-$kind ;; *) b=f$k-$kind ;; esac
    read -r m t <<<"${SEQ[$((k - 1))]}"
    n=$(awk -v m="$m" -v b="/contoso/$b/" -v t="/${t##*/}" '$2 == "req" && $5 == m && index($6, b) && index($6, t) && $8 != "pass"' "$PLOG" | wc -l)
    [ "$n" -ge 2 ] || return 1
  done
}
wait_until "every faulted request tried twice" 90 tried_twice
for x in "${NSS[@]}"; do read -r k kind <<<"$x"; check_held "livecalc-bucket-f$k-$kind" "$k" "$kind"; done
ok "$(( ${#NSS[@]} )) faults (requests 2-$M x ${KINDS[*]}) held: kept, logs on disk, clear errors, retried"
for x in "${EXTRA[@]}"; do read -r k kind <<<"$x"; check_held "livecalc-bucket-x$k-$kind" "$k" "$kind"; done
ok "403, 404, 409, 412 held: kept, clear errors, retried"
# stampd gave up on every hung request itself (its blob timeout), long
# before the proxy's 60 s.
expect_eq "hung requests ended by stampd's timeout" \
  "$(awk '$2 == "end" && /hang: closed after/' "$PLOG" | wc -l)" 0
expect_ok "hung requests: stampd gave up" grep -q "hang: the client gave up after" "$PLOG"
# Each failed attempt is counted in status.reap (the second may still run).
for x in "${NSS[@]}"; do
  read -r k kind <<<"$x"
  a=$(nsfield "livecalc-bucket-f$k-$kind" .reap.attempts)
  [ "$a" -ge 1 ] || fail "f$k-$kind: $a failed attempts recorded"
done
ok "attempts recorded in status.reap"
n=$(api GET "/v1/events?since=0&kind=Namespace&name=livecalc-bucket-f3-500" >/dev/null; jq '[.items[] | select(.reason == "ReapRetry")] | length' "$T/body")
[ "$n" -ge 2 ] || fail "ReapRetry events of f3-500: $n"
ok "ReapRetry warning events"

# ---- the faults lifted: every namespace reaped, archives whole ----
: >"$PLAN"
log "faults lifted"
for x in "${NSS[@]}"; do read -r k kind <<<"$x"; wait_ns "livecalc-bucket-f$k-$kind" reaped 60; done
for x in "${EXTRA[@]}"; do read -r k kind <<<"$x"; wait_ns "livecalc-bucket-x$k-$kind" reaped 60; done
wait_ns livecalc-bucket-slow reaped 60
log "all reaped once the faults were lifted"
sdk_dump
for x in "${NSS[@]}"; do read -r k kind <<<"$x"; check_archive "f$k-$kind"; done
ok "requests 2-$M x ${KINDS[*]}: reaped once lifted, archives byte for byte, nothing twice"
for x in "${EXTRA[@]}"; do read -r k kind <<<"$x"; check_archive "x$k-$kind"; done
ok "403, 404, 409, 412: reaped once lifted, archives byte for byte"
check_archive slow
expect_eq "a slow steady read-back is not a failure" "$(nsfield livecalc-bucket-slow .reap.attempts)" 0
expect_ok "the slow read-back went through whole" grep -q "(slow)" "$PLOG"

# ---- request 1, the container: a fresh stampd for each fault ----
cp "$PLOG" "$T/proxy-main.log"
for kind in "${KINDS[@]}" 409; do
  stop_stampd
  : >"$PLAN"
  start_stampd "${ARGS[@]}"
  b=c1-$kind
  make_ns "$b"
  save_logs "$b"
  if [ "$kind" = 409 ]; then
    echo "method=PUT path=restype=container status=409" >"$PLAN"
  else
    rule 1 "$kind" "$b" >"$PLAN"
  fi
  : >"$PLOG" # this round's requests only (the proxy appends)
  ctl ns finalize "livecalc-bucket-$b" >/dev/null || fail "finalize $b"
  if [ "$kind" = 409 ]; then
    # "already exists" is how a made container answers: no error.
    wait_ns "livecalc-bucket-$b" reaped 30
    expect_eq "409 on the container is taken as made" "$(nsfield "livecalc-bucket-$b" .reap.attempts)" 0
  else
    wait_until "$b: the container request tried twice" 60 sh -c \
      "[ \$(awk '\$2 == \"req\" && /restype=container/ && \$8 != \"pass\"' '$PLOG' | wc -l) -ge 2 ]"
    check_held "livecalc-bucket-$b" 1 "$kind"
    : >"$PLAN"
    wait_ns "livecalc-bucket-$b" reaped 60
  fi
  sdk_dump
  check_archive "$b"
  if [ "$kind" = 409 ]; then ok "container request with 409: reaped, archive whole"
  else ok "container request with $kind: kept, clear error, retried, reaped, archive whole"; fi
done

expect_ok "stampd still serving" curl -fsS "http://127.0.0.1:$API_PORT/healthz"
finish
