#!/usr/bin/env bash
# Per-phase timeouts: Creating past its limit -> Failed (and redeploy from
# Failed); Ready past standby-max-age -> retired through Deleting to Deleted;
# optional auto-delete of a Failed stamp.
TEST_NAME=timeouts
. "$(dirname "$0")/lib.sh"

STAMPD_ARGS=(--set creating-timeout=3s --set standby-max-age=3s --set failed-auto-delete=0)
start_stampd
apply_template
# The app of this template reports unhealthy while a flag file exists.
sed -e 's/name: synaxis-stamp/name: sick-stamp/' \
    -e "s|\"--state-dir\", \"\${STATE_DIR}\"\]|\"--state-dir\", \"\${STATE_DIR}\", \"--unhealthy-file\", \"$T/sick\"]|" \
    -e '/- name: validation/,$d' \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/sick.yaml"
apply_template "$T/sick.yaml"
touch "$T/sick"

# Creating timeout -> Failed, with the reason.
ctl deploy --region northeurope --stamp-id 5 --template sick-stamp >/dev/null || fail deploy
S=synaxis-neu-005
expect_err "wait reports the failure" "is Failed" ctl wait --for=active $S --timeout 20s
expect_eq "Creating timed out to Failed" "$(phase $S)" Failed
expect_ok "reason in status" sh -c "ctl status $S -o json | jq -e '.status.message | test(\"not Active after 3s\")'"
expect_ok "StampCreationFailed event" sh -c "ctl events $S | grep -q StampCreationFailed"
expect_ok "failed counted" sh -c "curl -fsS http://127.0.0.1:$API_PORT/metrics | grep -q '^failed_stamps 1'"

# Redeploy from Failed once the cause is fixed.
rm -f "$T/sick"
ctl deploy --region northeurope --stamp-id 5 --template sick-stamp >/dev/null || fail redeploy
wait_for $S active 20s
ok "redeployed Failed stamp became Active"
expect_eq "no duplicate processes after redeploy" "$(procs $S/)" 3

# Standby max age -> retired automatically.
ctl drain $S >/dev/null || fail drain
wait_for $S ready
wait_for $S deleted 30s
expect_ok "retired for standby age" sh -c "ctl events $S | grep -q StandbyMaxAge"
expect_ok "archive kept" test -s "$DATA/archive/$S/manifest.json"
expect_eq "nothing left running" "$(procs $S/)" 0
finish
