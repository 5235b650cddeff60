#!/usr/bin/env bash
# The store on a full disk, end to end.  The data dir is a small tmpfs
# (root only: mount), filled by a file of ours:
#   1. with stampd's disk reserve held, the first API write to meet the full
#      disk frees the reserve and is answered 200 (the store's retry);
#   2. filled again, with no reserve left, API writes are answered 5xx with
#      a message that says the disk is full, again and again, while reads
#      (the resources, the audit, healthz) are answered 200;
#   3. the space back, writes are answered 200 again without a restart, the
#      reserve is refilled, and every write that was answered 200 is there -
#      also after a restart of stampd - and none that was refused.
# test_store_faults covers each write's every I/O call with a VFS shim.
TEST_NAME=fault-store
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  log "skipped: the store on a full disk (needs root to mount a tmpfs as the data dir)"
  finish
fi
mkdir -p "$DATA"
mount -t tmpfs -o size=32m,mode=0700 stamp-e2e-store "$DATA" || fail "mount tmpfs on $DATA"
MNT=$DATA
trap 'crash_stampd; kill_owned; [ -z "$MNT" ] || umount -l "$MNT"' EXIT
free_kib() { df -k --output=avail "$DATA" | tail -n 1 | tr -d ' '; }
RESERVE=4194304

start_stampd --set disk-reserve=$RESERVE
OPTOKEN=$(awk '/^token:/ {print $2}' "$STAMP_CONFIG")
TOKEN=$OPTOKEN
expect_eq "the reserve is held" "$(stat -c %s "$DATA/reserve")" $RESERVE

# apply_hc NAME: prints the HTTP status of applying health check NAME.
apply_hc() {
  api POST /v1/apply -H 'Content-Type: application/json' -d "{\"apiVersion\": \"stamp/v1\",
    \"kind\": \"StampHealthCheck\", \"metadata\": {\"name\": \"$1\"},
    \"spec\": {\"checks\": [{\"name\": \"port\", \"type\": \"tcp\", \"interval\": \"1s\"}]}}"
}
ACKED=()
REFUSED=()
# write NAME WANT: applies NAME, expecting WANT (200, or 5xx for any 5xx).
write() {
  local code
  code=$(apply_hc "$1")
  case "$code" in
    200) ACKED+=("$1") ;;
    5??) REFUSED+=("$1") ;;
  esac
  case "$2:$code" in
    200:200) ok "write $1: 200" ;;
    5xx:5??)
      local msg
      msg=$(jq -r .error.message "$T/body")
      case "$msg" in
        *"disk is full"*) ok "write $1 on a full disk: $code $msg" ;;
        *) fail "write $1 on a full disk: $code, message \"$msg\" does not say the disk is full" ;;
      esac
      ;;
    *) fail "write $1: $code, want $2: $(head -c 300 "$T/body")" ;;
  esac
}
fill() { cat /dev/zero >"$DATA/$1" 2>/dev/null; [ "$(free_kib)" -lt 64 ] || fail "the fill left $(free_kib) KiB"; }

write before 200

# ---- 1. the disk fills; the reserve is there for the first write ----
fill fill-1
log "disk full: $(free_kib) KiB free"
write first-on-full 200
wait_until "stampd logs the release" 5 grep -q "ERROR.*store's reserve of $RESERVE bytes was released" "$T/stampd.log"
[ ! -e "$DATA/reserve" ] || fail "reserve still held after the write that met the full disk"
ok "the reserve was released by that write"

# ---- 2. it stays full: writes refused, reads answered ----
fill fill-2
log "full again, no reserve: $(free_kib) KiB free"
for i in 1 2 3 4 5; do write "on-full-$i" 5xx; done
expect_eq "healthz" "$(api GET /healthz)" 200
expect_eq "a read of a resource" "$(api GET /v1/healthchecks/before)" 200
expect_eq "a list" "$(api GET /v1/healthchecks)" 200
expect_eq "the list holds what was acknowledged" "$(jq -r '[.items[].metadata.name] | sort | join(" ")' "$T/body")" \
  "$(printf '%s\n' "${ACKED[@]}" | sort | paste -sd ' ')"
expect_eq "the audit" "$(api GET '/v1/audit?limit=5')" 200
# The refusals are in the log too, each a store error the handler saw.
kill -0 "$STAMPD_PID" || fail "stampd died on the full disk"
ok "stampd serving after ${#REFUSED[@]} refused writes"

# ---- 3. the space comes back ----
rm -f "$DATA/fill-1" "$DATA/fill-2"
log "space back: $(free_kib) KiB free"
write after-1 200
write after-2 200
wait_until "reserve refilled" 15 sh -c "[ \"\$(stat -c %s '$DATA/reserve' 2>/dev/null)\" = $RESERVE ]"
ok "the reserve is held again"

check_all() {
  api GET /v1/healthchecks >/dev/null
  local have
  have=$(jq -r '[.items[].metadata.name] | sort | join(" ")' "$T/body")
  expect_eq "$1: every acknowledged write, and no refused one" "$have" \
    "$(printf '%s\n' "${ACKED[@]}" | sort | paste -sd ' ')"
}
check_all "live"
stop_stampd
start_stampd --set disk-reserve=$RESERVE
check_all "after a restart"
expect_ok "integrity_check" sh -c "[ \"\$(sqlite3 '$DATA/stamp.db' 'PRAGMA integrity_check')\" = ok ]"

stop_stampd
kill_owned
sleep 0.3
umount "$MNT" || umount -l "$MNT"
MNT=
finish
