#!/usr/bin/env bash
# Status says what is true now: what belongs to a phase (what it waits for,
# the health gate, the step being run, the front door state) goes when the
# phase ends, and times are RFC 3339 UTC.
TEST_NAME=status
. "$(dirname "$0")/lib.sh"

start_stampd
# A health check the test opens and closes: $T/gate exists.
cat >"$T/hc.yaml" <<Y
apiVersion: stamp/v1
kind: StampHealthCheck
metadata: {name: gated}
spec:
  checks:
    - name: gate
      command: test -e $T/gate
      interval: 100ms
      timeout: 1s
      healthyThreshold: 1
      unhealthyThreshold: 1
Y
ctl apply -f "$T/hc.yaml" >/dev/null || fail "apply health check"
sed -e 's/^spec:/spec:\n  healthCheck: gated/' "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/tpl.yaml"
apply_template "$T/tpl.yaml"
touch "$T/gate"
S=synaxis-weu-001
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
wait_for $S active
ctl standby $S >/dev/null || fail standby
wait_for $S ready
# An activation that waits for its health gate, then passes it.
rm -f "$T/gate"
ctl activate $S >/dev/null || fail activate
wait_until "the activation waits for health" 15 sh -c "ctl status $S -o json | jq -e '.status.waitingFor | test(\"health\")'"
touch "$T/gate"
wait_for $S active
expect_eq "Active: the activation's wait is gone" "$(ctl status $S -o json | jq -c .status.waitingFor)" null
ctl standby $S >/dev/null || fail "standby again"
wait_for $S ready
st() { ctl status $S -o json | jq -c "$1"; }
expect_eq "Ready after an activation: nothing waited for" "$(st .status.waitingFor)" null
expect_eq "Ready: no activation left" "$(st .status.activation)" null
expect_eq "Ready: no health of the Active phase" "$(st .status.health)" null
expect_eq "Ready: no current step" "$(st .status.step)" null
expect_ok "human status has no Waiting for" sh -c "! ctl status $S | grep -q 'Waiting for'"
rfc='^"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z"$'
expect_ok "phaseSinceTime is RFC 3339 UTC" sh -c "ctl status $S -o json | jq -r '.status.phaseSinceTime | tojson' | grep -Eq '$rfc'"
expect_ok "drain times are RFC 3339 UTC" sh -c "ctl status $S -o json | jq -r '.status.drain.startedTime | tojson' | grep -Eq '$rfc'"
expect_ok "history times are RFC 3339 UTC" sh -c "ctl status $S -o json | jq -e '[.status.history[] | .time | test(\"^[0-9-]+T[0-9:.]+Z$\")] | all'"

ctl delete $S --force >/dev/null || fail delete
wait_for $S deleted
expect_eq "Deleted: no front door state" "$(st .status.frontdoor)" null
expect_eq "Deleted: no step Running" "$(st '[.status.steps[]? | select(.state == "Running")] | length')" 0
expect_eq "Deleted: no health" "$(st .status.health)" null
expect_ok "human status has no Front door" sh -c "! ctl status $S | grep -q 'Front door'"
finish
