#!/usr/bin/env bash
# Restore from backup (issue 13 item 4): a retired stamp's verified backup
# deploys a new stamp whose local state is back before its workloads start
# (the workload's counters continue from the old value); a tampered or
# incomplete backup is refused naming the file and creates nothing; only a
# Deleted stamp can be restored, under a new name in its region; kill -9 of
# stampd during a restore, then a restart, converges.
TEST_NAME=restore
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
SRC=synaxis-weu-003
ctl deploy --region westeurope --stamp-id 003 --template synaxis-stamp >/dev/null || fail "deploy"
wait_for $SRC active
EP=$(endpoint $SRC)

expect_err "restore of an Active stamp refused by the phase table" "is Active: restore is not allowed" \
  ctl restore $SRC --as synaxis-weu-004

# Local state worth restoring: many requests (the workload's counters) and
# a large file, so that a restore takes long enough to be interrupted.
curl -fsS "http://$EP/work?ms=0&i=[1-1500]" >/dev/null || fail "traffic"
VOL=$DATA/stamps/$SRC/volumes/app-0
wait_until "counters saved" 15 sh -c "[ \"\$(jq .requestsTotal $VOL/counters.json)\" -ge 1500 ]"
head -c $((48 << 20)) /dev/urandom >"$VOL/blob.bin"

ctl delete $SRC >/dev/null || fail "delete"
wait_for $SRC deleted 120s
ID=$(jfield $SRC '.status.backups[-1].id')
BK=$DATA/backups/$SRC/$ID
[ -f "$BK/manifest.json" ] || fail "no backup at $BK"
expect_eq "purge removed the stamp's directory" "$(test -e $DATA/stamps/$SRC && echo yes || echo no)" no
R=$(jq .requestsTotal "$BK/volumes/app-0/counters.json")
[ "$R" -ge 1500 ] || fail "backed-up requestsTotal $R < 1500"
ok "backup $ID holds requestsTotal $R"
expect_ok "the large file is in the backup's manifest" jq -e '.files[] | select(.path == "volumes/app-0/blob.bin" and .size == 50331648)' "$BK/manifest.json"

gone() { ! ctl get stamps "$1" >/dev/null 2>&1 && [ ! -e "$DATA/stamps/$1" ]; }

expect_err "restore under the same name refused, a free name suggested" "like synaxis-weu-004" ctl restore $SRC
expect_err "restore into another region refused" "must be synaxis-weu-<id>" ctl restore $SRC --as synaxis-eus-004
expect_err "strict flags" "unknown flag" ctl restore $SRC --as synaxis-weu-004 --ass x

# Tampered: one byte of a backed-up file changed.
cp "$BK/volumes/app-0/counters.json" "$T/counters.orig"
sed -i 's/"requestsTotal":\([0-9]\)/"requestsTotal":9/' "$BK/volumes/app-0/counters.json"
cmp -s "$T/counters.orig" "$BK/volumes/app-0/counters.json" && sed -i 's/"jobsTotal":/"jobsTotal":1/' "$BK/volumes/app-0/counters.json"
expect_err "tampered backup refused, naming the file" "file volumes/app-0/counters.json fails its hash check" \
  ctl restore $SRC --as synaxis-weu-004
expect_ok "nothing created for a tampered backup" gone synaxis-weu-004
cp "$T/counters.orig" "$BK/volumes/app-0/counters.json"
# Incomplete: a file missing.
mv "$BK/volumes/agent-0/counters.json" "$T/agent.orig"
expect_err "backup with a missing file refused" "file volumes/agent-0/counters.json is missing" \
  ctl restore $SRC --as synaxis-weu-004
expect_ok "nothing created for an incomplete backup" gone synaxis-weu-004
mv "$T/agent.orig" "$BK/volumes/agent-0/counters.json"
expect_ok "refusals are audited" sh -c "ctl audit $SRC -o json | grep -q 'fails its hash check'"

# Dry run: the stamp as it would be stored, nothing created.
expect_eq "dry run answers" "$(ctl restore $SRC --as synaxis-weu-004 --dry-run -o json | jq -r '[.dryRun, .spec.restoreFrom.backup] | join(" ")')" "true $ID"
expect_ok "nothing created by a dry run" gone synaxis-weu-004

# The restore.
expect_ok "restore accepted" ctl restore $SRC --as synaxis-weu-004
wait_for synaxis-weu-004 active 120s
expect_eq "status.restore" "$(jfield synaxis-weu-004 '.status.restore | "\(.phase) \(.backup) \(.verified == .files)"')" "Done $ID true"
expect_eq "same region, template spec and parameters" \
  "$(ctl get stamps synaxis-weu-004 -o json | jq -c '[.spec.region, .spec.templateSpec == $s, .spec.parameters]' --argjson s "$(jq -c .spec.templateSpec $DATA/archive/$SRC/stamp.json)")" \
  '["westeurope",true,{}]'
EP4=$(endpoint synaxis-weu-004)
N=$(curl -fsS "http://$EP4/metrics" | awk '/^stamp_workload_requests_total /{print $2}')
[ -n "$N" ] && [ "$N" -ge "$R" ] && ok "the workload's counters continue from the backup ($N >= $R)" ||
  fail "requests_total $N after restore, backup had $R"
expect_eq "the large file is back, byte for byte" "$(sha256sum <$DATA/stamps/synaxis-weu-004/volumes/app-0/blob.bin)" \
  "$(sha256sum <$BK/volumes/app-0/blob.bin)"
curl -fsS "http://$EP4/work?ms=1" >/dev/null && ok "restored stamp serves" || fail "restored stamp does not serve"
expect_ok "event on the Deleted stamp" sh -c "ctl events $SRC | grep RestoreRequested | grep -q synaxis-weu-004"
expect_ok "events on the restored stamp" sh -c "ctl events synaxis-weu-004 | grep -q 'Restored.*each verified'"
# Put back before the workloads started: Restored comes before the first
# process step's StepDone.
ctl events synaxis-weu-004 >"$T/ev4"
rl=$(grep -n 'Restored' "$T/ev4" | head -n1 | cut -d: -f1)
sl=$(grep -n 'replica(s) of pool' "$T/ev4" | head -n1 | cut -d: -f1)
[ -n "$rl" ] && [ -n "$sl" ] && [ "$rl" -lt "$sl" ] && ok "volumes restored before the workloads started" ||
  fail "event order: Restored at line $rl, first replicas at $sl: $(cat "$T/ev4")"
expect_ok "audit entry" sh -c "ctl audit $SRC -o json | jq -e '[.items[]? // .[] | select(.operation == \"restore\" and .result == \"ok\")] | length == 1'"
expect_err "the restored name is taken now" "already exists" ctl restore $SRC --as synaxis-weu-004

# kill -9 of stampd during a restore; the restart finishes it.
ctl restore $SRC --as synaxis-weu-005 >/dev/null || fail "restore 005"
wait_until "restore 005 started" 30 sh -c "[ \"\$(ctl status synaxis-weu-005 -o json | jq -r '.status.restore.phase // \"\"')\" != '' ]"
crash_stampd
S5=$DATA/stamps/synaxis-weu-005
if [ ! -f "$S5/restore.json" ]; then
  # Cut mid-copy: leave a partial copy with a wrong file behind too.
  mkdir -p "$S5/volumes.restore/app-0" && echo garbage >"$S5/volumes.restore/app-0/counters.json"
  log "stampd killed before the restore finished"
fi
start_stampd
wait_for synaxis-weu-005 active 120s
expect_eq "restart converged: restore Done" "$(jfield synaxis-weu-005 .status.restore.phase)" Done
expect_eq "no partial copy left" "$(test -e $S5/volumes.restore && echo yes || echo no)" no
expect_ok "the large file is there after kill -9" test -s "$S5/volumes/app-0/blob.bin"
expect_eq "large file intact after kill -9" "$(sha256sum <$S5/volumes/app-0/blob.bin)" "$(sha256sum <$BK/volumes/app-0/blob.bin)"
N=$(curl -fsS "http://$(endpoint synaxis-weu-005)/metrics" | awk '/^stamp_workload_requests_total /{print $2}')
[ -n "$N" ] && [ "$N" -ge "$R" ] && ok "counters continue after a restart ($N >= $R)" || fail "requests_total $N, want >= $R"


# The controller never overwrites state that is not the backup's: a stray
# file where the volumes go fails the restore (an event, Failed with the
# reason); a redeploy once it is gone restores.
S6=$DATA/stamps/synaxis-weu-006
mkdir -p "$S6/volumes/app-0" && echo stray >"$S6/volumes/app-0/stray.txt"
ctl restore $SRC --as synaxis-weu-006 >/dev/null || fail "restore 006"
wait_for synaxis-weu-006 failed 60s
expect_ok "Failed with the reason" sh -c "ctl status synaxis-weu-006 -o json | jq -r .status.lastError | grep -q 'stray.txt, which is not the backup'"
expect_ok "RestoreFailed event" sh -c "ctl events synaxis-weu-006 | grep -q RestoreFailed"
expect_eq "stray file left alone" "$(cat $S6/volumes/app-0/stray.txt)" stray
rm -rf "$S6/volumes"
ctl deploy --region westeurope --stamp-id 006 --template synaxis-stamp >/dev/null || fail "redeploy 006"
wait_for synaxis-weu-006 active 120s
expect_eq "a redeploy restores" "$(jfield synaxis-weu-006 .status.restore.phase)" Done
expect_eq "large file restored on the redeploy" "$(sha256sum <$S6/volumes/app-0/blob.bin)" "$(sha256sum <$BK/volumes/app-0/blob.bin)"
finish
