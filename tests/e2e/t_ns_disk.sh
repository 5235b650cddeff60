#!/usr/bin/env bash
# One pod must not take the disk from everyone else.  As root the data dir is
# a 64 MiB tmpfs (the security issue's setup); otherwise only the namespace
# budget is checked.  A pod flooding its output is cut at pod-log-max (head,
# marker, tail; the dropped count in the pods API and the reap's record); a
# pod filling a volume slowly is stopped at ns-disk-max; a pod filling the
# filesystem at full speed leaves stampd able to commit (the store reserve),
# other tenants able to work, and new pods refused until space is back.
TEST_NAME=ns-disk
. "$(dirname "$0")/lib.sh"

ROOT=0
[ "$(id -u)" -eq 0 ] && ROOT=1
MNT=
if [ $ROOT -eq 1 ]; then
  mkdir -p "$DATA"
  mount -t tmpfs -o size=64m,mode=0700 stamp-e2e-data "$DATA" || fail "mount tmpfs on $DATA"
  MNT=$DATA
  trap 'crash_stampd; kill_owned; stop_azurite; [ -z "$MNT" ] || [ -n "${KEEP_MOUNT:-}" ] || umount -l "$MNT"' EXIT
fi
free_kib() { df -k --output=avail "$DATA" | tail -n 1 | tr -d ' '; }

LOGMAX=1048576
start_stampd --set pod-command=/bin/sh --set pod-log-max=$LOGMAX --set disk-reserve=8388608 \
  --set ns-disk-max=16777216
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token acme alice)
TOKEN=$STAMP_TOKEN
[ $ROOT -eq 0 ] || expect_eq "the reserve is held" "$(stat -c %s "$DATA/reserve")" 8388608

# ---- a flood of output is cut where it is written ----
ctl ns create flood >/dev/null || fail "ns flood"
NS=livecalc-bucket-flood
ctl ns run-pod $NS flood -- -c 'echo HEAD-MARK; yes "stamp flood line" | head -c 50000000; echo TAIL-MARK' >/dev/null || fail "flood pod"
wait_until "flood done" 60 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '.pods[0].phase')\" = Succeeded ]"
LOG=$DATA/namespaces/$NS/pods/flood/log
size=$(stat -c %s "$LOG")
log "flood: 50000020 bytes of output, log file $size bytes, free $(free_kib) KiB"
[ "$size" -le $((LOGMAX + 64)) ] || fail "log of $size bytes passes pod-log-max $LOGMAX"
[ "$size" -ge $((LOGMAX)) ] || fail "log of $size bytes: head and tail should fill pod-log-max"
expect_eq "head kept" "$(head -n 1 "$LOG")" HEAD-MARK
expect_eq "tail kept" "$(tail -c 10 "$LOG")" TAIL-MARK
dropped=$((50000020 - LOGMAX))
expect_ok "marker with the count" grep -qa "^\[stamp: $dropped bytes of output cut here\]$" "$LOG"
expect_eq "logBytesDropped in the pods API" "$(ctl ns pods $NS -o json | jq '.pods[0].logBytesDropped')" "$dropped"
# Byte for byte: the head is the output's first half-cap, the tail its last.
(echo HEAD-MARK; yes "stamp flood line" | head -c 50000000; echo TAIL-MARK) >"$T/flood.expected"
expect_ok "head byte for byte" cmp <(head -c $((LOGMAX / 2)) "$LOG") <(head -c $((LOGMAX / 2)) "$T/flood.expected")
expect_ok "tail byte for byte" cmp <(tail -c $((LOGMAX / 2)) "$LOG") <(tail -c $((LOGMAX / 2)) "$T/flood.expected")
rm -f "$T/flood.expected"
expect_ok "stampctl ns logs shows the tail" sh -c "ctl ns logs $NS flood | tail -c 10 | grep -qx TAIL-MARK"

# A live flood: the log stays bounded while the pod runs.
ctl ns run-pod $NS live -- -c 'echo LIVE-HEAD; exec timeout 4 yes "live line"' >/dev/null || fail "live pod"
sleep 2.5
lsize=$(stat -c %s "$DATA/namespaces/$NS/pods/live/log")
[ "$lsize" -le $((LOGMAX + 64)) ] || fail "live log of $lsize bytes"
ld=$(ctl ns pods $NS -o json | jq '.pods[] | select(.name == "live") | .logBytesDropped')
[ "$ld" -gt 0 ] || fail "a running flood shows no dropped bytes ($ld)"
ok "running flood: log $lsize bytes, $ld dropped so far"
expect_eq "still running" "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "live") | .phase')" Running
expect_ok "live log has its head" sh -c "head -n 1 '$DATA/namespaces/$NS/pods/live/log' | grep -qx LIVE-HEAD"
expect_ok "live log readable while it runs" sh -c "ctl ns logs $NS live | tail -c 100 | grep -q 'live line'"

# ---- a volume filled slowly: stopped at the namespace budget (16 MiB) ----
ctl ns create slow >/dev/null || fail "ns slow"
SNS=livecalc-bucket-slow
ctl ns volume $SNS data >/dev/null || fail volume
ctl ns run-pod $SNS slow --volume data -- -c 'while :; do head -c 1048576 /dev/zero >>"$STAMP_VOLUME_DATA/f" || exit 3; sleep 0.1; done' >/dev/null || fail "slow pod"
wait_until "slow pod stopped" 60 sh -c "[ \"\$(ctl ns pods $SNS -o json | jq -r '.pods[0].phase')\" = Failed ]"
expect_eq "stopped by the budget" "$(ctl ns pods $SNS -o json | jq -r '.pods[0].stoppedBy')" ns-disk-max
vs=$(du -sk "$DATA/volumes/$SNS" | cut -f1)
log "slow fill stopped with the volume at $vs KiB (budget 16384 KiB)"
# The usage walk runs every second: at ~10 MiB/s the overshoot is bounded by that.
[ "$vs" -le $((16384 + 12 * 1024)) ] || fail "volume at $vs KiB, well past the budget"
expect_ok "the log says why" grep -qa "ns-disk-max" "$DATA/namespaces/$SNS/pods/slow/log"
expect_eq "over budget: no new pod" "$(api POST /v1/platform/namespaces/$SNS/pods -H 'Content-Type: application/json' \
  -d '{"name":"more","args":["-c","true"]}')" 429
expect_ok "the refusal names the budget" grep -q "ns-disk-max" "$T/body"
expect_ok "the refusal shows no server path" sh -c "! grep -q '$DATA' '$T/body'"

# ---- empty files cost an inode each: they count against the budget ----
ctl ns create inodes >/dev/null || fail "ns inodes"
INS=livecalc-bucket-inodes
ctl ns run-pod $INS touch -- -c 'i=0; while :; do : >"$HOME/f$i" || exit 3; i=$((i+1)); done' >/dev/null || fail "touch pod"
wait_until "touch pod stopped" 60 sh -c "[ \"\$(ctl ns pods $INS -o json | jq -r '.pods[0].phase')\" = Failed ]"
expect_eq "empty files stopped by the budget" "$(ctl ns pods $INS -o json | jq -r '.pods[0].stoppedBy')" ns-disk-max
log "empty files made before the stop: $(find "$DATA/namespaces/$INS" -type f -name 'f*' | wc -l) (budget 16 MiB / 4 KiB per entry)"

if [ $ROOT -eq 1 ]; then
  # ---- the filesystem filled at full speed ----
  ctl ns create fill >/dev/null || fail "ns fill"
  FNS=livecalc-bucket-fill
  ctl ns volume $FNS big >/dev/null || fail volume
  # The budget is 16 MiB, but at full speed the disk fills before a 1 s
  # usage walk: the 200 ms free-space watch or ENOSPC ends it.
  ctl ns run-pod $FNS fill --volume big -- -c 'cat /dev/zero >"$STAMP_VOLUME_BIG/f"; echo "cat rc=$?"' >/dev/null || fail "fill pod"
  wait_until "fill pod ended" 60 sh -c "ctl ns pods $FNS -o json | jq -e '.pods[0].phase | test(\"Succeeded|Failed\")' >/dev/null"
  log "after the fill: free $(free_kib) KiB, volume $(du -sk "$DATA/volumes/$FNS" | cut -f1) KiB, fill pod: $(ctl ns pods $FNS -o json | jq -c '.pods[0] | {exitCode, stoppedBy}')"
  # Writes by everyone else still work: the reserve gives the store room.
  STAMP_TOKEN=$(tenant_token beta bob)
  expect_ok "another tenant creates a namespace" ctl ns create other-tenant
  expect_ok "and annotates" sh -c "ctl ns activity livecalc-bucket-other-tenant >/dev/null"
  expect_ok "operator applies a stamp" env -u STAMP_TOKEN ctl apply -f "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml"
  expect_ok "audit is listable" sh -c "env -u STAMP_TOKEN ctl audit --limit 5 -o json | jq -e '.items | length > 0' >/dev/null"
  STAMP_TOKEN=$(tenant_token acme alice)
  TOKEN=$STAMP_TOKEN
  expect_eq "no pod starts on a full disk" "$(api POST /v1/platform/namespaces/$NS/pods -H 'Content-Type: application/json' \
    -d '{"name":"late","args":["-c","true"]}')" 429
  expect_ok "the refusal says why" grep -q "nearly full" "$T/body"
  head -c 4096 /dev/urandom >"$T/small.bin"
  expect_eq "no bundle upload into the reserve" "$(api POST /v1/platform/bundles --data-binary @"$T/small.bin" \
    -H 'Content-Type: application/octet-stream')" 503
  expect_ok "the bundle refusal says why" grep -q "nearly full" "$T/body"
  # The disk was full (0 bytes free) before those writes: the store could
  # commit only by releasing its reserve, which stampd logs as an ERROR.
  wait_until "stampd logs the release" 5 grep -q "ERROR.*store's reserve of 8388608 bytes was released" "$T/stampd.log"
  [ ! -e "$DATA/reserve" ] || fail "reserve still held on a full disk"
  log "free after the release: $(free_kib) KiB"
  # Space comes back: the reserve is refilled.
  rm -f "$DATA/volumes/$FNS/big/f"
  wait_until "reserve refilled" 15 sh -c "[ \"\$(stat -c %s '$DATA/reserve' 2>/dev/null)\" = 8388608 ]"
  expect_ok "a pod starts again" ctl ns run-pod $NS late -- -c 'echo late'
fi

# ---- a reap archives the cut log with its dropped count ----
ctl ns pods $NS -o json >/dev/null
ctl ns finalize $NS >/dev/null || fail finalize
wait_ns $NS reaped 60
ctl ns get $NS -o json >"$T/reaped.json"
expect_eq "reap records the dropped bytes" \
  "$(jq -r '.diagnostics.files[] | select(.path | endswith("/logs/flood.log")) | .logBytesDropped' "$T/reaped.json")" "$dropped"
p=$(jq -r '.diagnostics.files[] | select(.path | endswith("/logs/flood.log")) | .path' "$T/reaped.json")
expect_ok "archived log is the cut log" grep -qa "^\[stamp: $dropped bytes of output cut here\]$" "$DATA/blobs/diagnostics/$p"
expect_eq "archived log size" "$(stat -c %s "$DATA/blobs/diagnostics/$p")" "$size"

stop_stampd
kill_owned
if [ -n "$MNT" ]; then
  sleep 0.3
  umount "$MNT" || umount -l "$MNT"
  MNT=
fi
finish
