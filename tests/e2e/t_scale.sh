#!/usr/bin/env bash
# Pool scaling of an Active stamp: up and down within the template's bounds,
# refused out of bounds, while Draining (it blocks scale operations) and
# while Ready (it blocks infrastructure modifications), remembered across
# standby and activation.
TEST_NAME=scale
. "$(dirname "$0")/lib.sh"

start_stampd
# Bounds for the test's template: general 1-4.
sed -e 's/^    general: {minReplicas: 1, maxReplicas: 20}$/    general: {minReplicas: 1, maxReplicas: 4}/' \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/tpl.yaml"
grep -q 'general: {minReplicas: 1, maxReplicas: 4}' "$T/tpl.yaml" || fail "the test template's bounds"
apply_template "$T/tpl.yaml"
S=synaxis-weu-001
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
wait_for $S active
expect_eq "three replicas at first" "$(procs $S/)" 3

expect_ok "scale general to 3" ctl scale $S --pool general --replicas 3
wait_procs $S/p/app/ 3 20
expect_eq "three app replicas" "$(procs $S/p/app/)" 3
wait_until "status shows general 3" 20 sh -c "ctl status $S -o json | jq -e '.status.pools.general == 3'"
ok "status.pools.general is 3"
# Every new replica answers on its own port.
ports=$(ctl get stamp $S -o json | jq -r '.status.endpoint')
expect_ok "endpoint still serves" curl -fsS "http://$ports/health"
expect_ok "PoolScaled event" sh -c "ctl events $S | grep -q 'PoolScaled.*pool general: 1 -> 3'"

expect_err "above the bound" "outside pool general's bounds 1-4" ctl scale $S --pool general --replicas 5
expect_err "below the bound" "outside pool general's bounds 1-4" ctl scale $S --pool general --replicas 0
expect_err "unknown pool" "--pool" ctl scale $S --pool nodes --replicas 2
expect_err "missing replicas" "--replicas" ctl scale $S --pool general
expect_eq "refusals changed nothing" "$(ctl get stamp $S -o json | jq '.spec.pools.general')" 3

expect_ok "scale general down to 2" ctl scale $S --pool general --replicas 2
wait_procs $S/p/app/ 2 20
expect_eq "two app replicas" "$(procs $S/p/app/)" 2
expect_ok "dry run changes nothing" ctl scale $S --pool general --replicas 4 --dry-run
sleep 1
expect_eq "still two after the dry run" "$(procs $S/p/app/)" 2

# Draining blocks scale operations; Ready blocks infrastructure modifications.
# A long request holds the drain open long enough to be refused while Draining.
curl -fsS "http://$(endpoint $S)/work?ms=4000" >/dev/null 2>&1 &
sleep 0.3
ctl drain $S --grace-period 30s >/dev/null || fail drain
expect_err "scale while Draining" "is Draining: scale is not allowed (Draining blocks new deployments, scale operations and configuration changes" \
  ctl scale $S --pool general --replicas 3
wait_for $S ready
expect_err "scale while Ready" "is Ready: scale is not allowed (Ready blocks infrastructure modifications" \
  ctl scale $S --pool general --replicas 3
wait_procs $S/p/app/ 0 20
# Remembered across standby: activation brings two app replicas back.
ctl activate $S >/dev/null || fail activate
wait_for $S active
wait_procs $S/p/app/ 2 20
expect_eq "two app replicas after activation" "$(procs $S/p/app/)" 2
expect_eq "spec keeps the size" "$(ctl get stamp $S -o json | jq '.spec.pools.general')" 2

# Restart of stampd: the replicas are adopted, none started twice.
stop_stampd
start_stampd
wait_for $S active
sleep 2
expect_eq "adopted after restart" "$(procs $S/p/app/)" 2
finish
