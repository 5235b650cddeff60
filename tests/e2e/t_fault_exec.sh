#!/usr/bin/env bash
# An exec step hanging past its timeout (issue 16, fault injection), the
# ways t_exec's `sleep 30` does not: a command that ignores SIGTERM, one
# whose children keep running (in its process group, ignoring SIGTERM
# too, and one that left the group with setsid), while stampd's API keeps
# answering.  Each run is stopped (TERM, then KILL), counts as a failure
# with the timeout named, is retried up to its attempts, and leaves no
# process behind.
TEST_NAME=fault_exec
. "$(dirname "$0")/lib.sh"

start_stampd
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
# Each command's processes carry a marker of their own in their command
# line (sleep's argument), so the test finds them wherever they went.
left() { pgrep -f "sleep 31[0-9][0-9]" | tr '\n' ' '; }
api_alive() {
  expect_eq "GET /healthz answers $1" "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/healthz")" 200
  expect_eq "GET /v1/stamps answers $1" "$(api GET /v1/stamps -m 10)" 200
}

# name: id, the step's command
declare -A CMD=(
  [ignore]="trap '' TERM; echo started; sleep 3101; echo 'never here'"
  [children]="sleep 3102 & (trap '' TERM; sleep 3103) & sh -c 'sleep 3104' & wait"
  [setsid]="setsid sleep 3105 & sleep 3106"
)
id=20
for k in ignore children setsid; do
  id=$((id + 1))
  S=synaxis-uks-0$id
  cat >"$T/$k.yaml" <<Y
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: hang-$k}
spec:
  phases:
    - name: network
      steps:
        - name: hang
          kind: exec
          timeout: 700ms
          run: "${CMD[$k]//\"/\\\"}"
Y
  apply_template "$T/$k.yaml"
  ctl deploy --region uksouth --stamp-id $id --template hang-$k >/dev/null || fail "deploy $k"
  wait_until "$k: the command runs" 20 sh -c "ls $DATA/stamps/$S/steps/hang.create-1.log"
  api_alive "while the $k step hangs"
  expect_err "$k: the timed-out step fails the stamp" "is Failed" ctl wait --for=active $S --timeout 90s
  expect_eq "$k: three attempts" "$(ls "$DATA/stamps/$S/steps/" | grep -c '^hang\.create-[0-9]*\.rc$')" 3
  expect_ok "$k: each attempt timed out" sh -c "cat $DATA/stamps/$S/steps/hang.create-*.rc | jq -se 'length == 3 and all(.timedOut)'"
  expect_ok "$k: each ended by a signal, none by its own exit" sh -c "cat $DATA/stamps/$S/steps/hang.create-*.rc | jq -se 'all(.exit != 0 and .signal != 0)'"
  expect_ok "$k: the step names the timeout" sh -c "ctl status $S -o json | jq -e '.status.steps[0].message | test(\"timed out\")'"
  expect_ok "$k: the log says it was stopped" grep -q "timed out after 700ms" "$DATA/stamps/$S/steps/hang.create-1.log"
  wait_until "$k: no process of the stamp left" 10 sh -c "[ \"\$(pgrep -f 'sleep 31[0-9][0-9]' | wc -l)\" = 0 ]"
  expect_eq "$k: no process of the stamp left (units)" "$(procs $S/)" 0
  [ "$k" = ignore ] && expect_ok "ignore: the command was killed before its end" sh -c "! grep -q 'never here' $DATA/stamps/$S/steps/hang.create-*.log"
  ctl delete $S --force >/dev/null || fail "delete $S"
  # Not `ctl wait --for=deleted`: it stops at Failed, which it may still read.
  wait_until "$S deleted" 60 sh -c "[ \"\$(ctl status $S -o json | jq -r .status.phase)\" = Deleted ]"
done
api_alive "at the end"
finish
