#!/usr/bin/env bash
# exec steps: the operator's command runs with the stamp's parameters in its
# environment, its output is kept as the step's log, a timeout applies,
# failures are retried up to 3 attempts then Failed, and deletion runs the
# delete commands in reverse order.
TEST_NAME=exec
. "$(dirname "$0")/lib.sh"

start_stampd
ORDER=$T/order
cat >"$T/exec.yaml" <<Y
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: exec-stamp}
spec:
  phases:
    - name: network
      steps:
        - name: vnet
          kind: exec
          run: echo "create vnet \$STAMP_NAME \$STAMP_REGION sku=\$SKU" && echo vnet >> $ORDER
          delete: echo "delete vnet" && echo -vnet >> $ORDER
    - name: data
      steps:
        - name: db
          kind: exec
          env: {DB_TIER: gold}
          run: echo "db tier \$DB_TIER" && echo db >> $ORDER
          delete: echo -db >> $ORDER
    - name: compute
      steps:
        - name: app
          kind: process
          pool: general
          command: ["\${STAMP_LIBEXEC}/stamp-workload", "--port", "\${PORT}", "--name", "\${STAMP_NAME}"]
    - name: integration
      steps:
        - name: bus
          kind: exec
          run: echo bus >> $ORDER
          delete: echo -bus >> $ORDER
Y
apply_template "$T/exec.yaml"
ctl deploy --region uksouth --stamp-id 9 --template exec-stamp --param SKU=premium >/dev/null || fail deploy
S=synaxis-uks-009
wait_for $S active
expect_eq "steps ran in order" "$(tr '\n' ' ' <"$ORDER")" "vnet db bus "
log_file=$(jfield $S '.status.steps[0].log')
expect_ok "step log kept with parameters" grep -q "create vnet $S uksouth sku=premium" "$log_file"
expect_ok "step env" grep -q "db tier gold" "$(jfield $S '.status.steps[1].log')"
expect_ok "status lists steps" sh -c "ctl status $S | grep -q 'network.*vnet.*exec.*Done'"
ctl delete $S --force >/dev/null || fail delete
wait_for $S deleted
expect_eq "delete commands ran in reverse" "$(tr '\n' ' ' <"$ORDER")" "vnet db bus -bus -db -vnet "
expect_ok "step logs archived" sh -c "ls $DATA/archive/$S/steps | grep -q 'vnet.delete-1.log'"

# A failing step: 3 attempts, then Failed with the step named.
cat >"$T/fail.yaml" <<Y
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: fail-stamp}
spec:
  phases:
    - name: network
      steps:
        - name: flaky
          kind: exec
          run: echo attempt >> $T/attempts; echo "quota exceeded" >&2; exit 3
Y
apply_template "$T/fail.yaml"
ctl deploy --region uksouth --stamp-id 10 --template fail-stamp >/dev/null || fail deploy-fail
expect_err "failing step ends Failed" "is Failed" ctl wait --for=active synaxis-uks-010 --timeout 30s
expect_eq "three attempts" "$(wc -l <"$T/attempts")" 3
expect_ok "reason names the step" sh -c "ctl status synaxis-uks-010 -o json | jq -e '.status.message | test(\"flaky\")'"
expect_ok "stderr kept in the step log" sh -c "cat $DATA/stamps/synaxis-uks-010/steps/flaky.*.log | grep -q 'quota exceeded'"
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
expect_eq "the API lists the failed step's logs" "$(api GET /v1/stamps/synaxis-uks-010/logs)" 200
expect_ok "three runs of flaky listed" jq -e '[.items[] | select(.step == "flaky" and .command == "create")] | length == 3' "$T/body"
expect_eq "the API serves the failed step's output" "$(api GET '/v1/stamps/synaxis-uks-010/logs?step=flaky')" 200
expect_ok "with its stderr" grep -q 'quota exceeded' "$T/body"
expect_eq "a step without a log is 404" "$(api GET '/v1/stamps/synaxis-uks-010/logs?step=nosuch')" 404
expect_ok "stampctl logs lists the step logs" sh -c "ctl logs synaxis-uks-010 | grep -q '^flaky  *create-3'"
expect_ok "stampctl logs --step shows the failed step's output" sh -c "ctl logs synaxis-uks-010 --step flaky | grep -q 'quota exceeded'"
expect_ok "stampctl logs --step --run names one run" sh -c "ctl logs synaxis-uks-010 --step flaky --run create-1 | grep -q 'quota exceeded'"
expect_err "stampctl logs of a step without a log" "nosuch" ctl logs synaxis-uks-010 --step nosuch
# Deploy again once the cause is gone: the step runs again (create-4, not
# the old create-1's result) and the stamp gets past it.
sed -i 's/exit 3$/exit 0/' "$T/fail.yaml"
apply_template "$T/fail.yaml"
ctl deploy --region uksouth --stamp-id 10 --template fail-stamp >/dev/null || fail redeploy-fail
wait_for synaxis-uks-010 active 30s
expect_eq "the redeploy ran the command again" "$(wc -l <"$T/attempts")" 4
expect_ok "as run create-4" sh -c "ctl logs synaxis-uks-010 | grep -q '^flaky  *create-4'"

# A deployment cancelled while a step's create command runs: the command is
# stopped, the delete commands run only for steps whose create ran, and the
# logs can be read while Creating.
REC=$T/rec
cat >"$T/cancel.yaml" <<Y
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: cancel-stamp}
spec:
  phases:
    - name: network
      steps:
        - name: first
          kind: exec
          run: echo create-first >> $REC
          delete: echo delete-first >> $REC
        - name: slow
          kind: exec
          run: echo create-slow >> $REC; echo "slow is creating"; sleep 30
          delete: echo delete-slow >> $REC
    - name: data
      steps:
        - name: after
          kind: exec
          run: echo create-after >> $REC
          delete: echo delete-after >> $REC
Y
apply_template "$T/cancel.yaml"
ctl deploy --region uksouth --stamp-id 12 --template cancel-stamp >/dev/null || fail deploy-cancel
C=synaxis-uks-012
wait_until "slow's create command runs" 15 grep -q create-slow "$REC"
wait_until "slow's output in its log" 5 sh -c "cat $DATA/stamps/$C/steps/slow.create-1.log | grep -q creating"
expect_eq "still Creating" "$(phase $C)" Creating
expect_eq "step logs are served while Creating" "$(api GET "/v1/stamps/$C/logs?step=slow")" 200
expect_ok "with the running command's output" grep -q 'slow is creating' "$T/body"
ctl delete $C --force >/dev/null || fail "delete $C"
wait_for $C deleted
expect_eq "delete commands only of steps whose create ran" "$(tr '\n' ' ' <"$REC")" "create-first create-slow delete-slow delete-first "
expect_eq "the cancelled create command was stopped" "$(procs $C/)" 0
expect_ok "no step Running in a Deleted stamp" sh -c "ctl status $C -o json | jq -e '[.status.steps[]? | select(.state == \"Running\")] | length == 0'"
expect_ok "no front door state in a Deleted stamp" sh -c "ctl status $C -o json | jq -e '.status.frontdoor == null'"
expect_ok "no waiting in a Deleted stamp" sh -c "ctl status $C -o json | jq -e '.status.waitingFor == null and .status.step == null'"
expect_eq "logs of a Deleted stamp come from its archive" "$(api GET "/v1/stamps/$C/logs?step=slow&run=delete-1")" 200

# A step past its timeout is killed and counts as a failure.
cat >"$T/slow.yaml" <<Y
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: hang-stamp}
spec:
  phases:
    - name: network
      steps:
        - {name: hang, kind: exec, run: "sleep 30", timeout: 500ms}
Y
apply_template "$T/slow.yaml"
ctl deploy --region uksouth --stamp-id 11 --template hang-stamp >/dev/null || fail deploy-hang
expect_err "timed-out step fails the stamp" "is Failed" ctl wait --for=active synaxis-uks-011 --timeout 30s
expect_ok "timeout recorded" sh -c "ctl status synaxis-uks-011 -o json | jq -e '[.status.steps[0].message] | .[0] | test(\"timed out\")'"
expect_eq "no hung command left" "$(procs synaxis-uks-011/)" 0
finish
