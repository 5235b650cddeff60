#!/usr/bin/env bash
# StampAutoscaler through the API: apply validates it with the code the
# controller runs (errors name the field, nothing is stored), get and
# describe read it back, and get -o yaml applies again unchanged.
TEST_NAME=as_apply
. "$(dirname "$0")/lib.sh"

AS=$STAMP_SRC/deploy/autoscaler/synaxis-autoscaler.yaml
start_stampd

expect_eq "apply the example" "$(ctl apply -f "$AS" 2>&1)" "stampautoscaler/synaxis-autoscaler created"
expect_eq "apply again: unchanged" "$(ctl apply -f "$AS" 2>&1)" "stampautoscaler/synaxis-autoscaler unchanged"
expect_ok "get autoscalers lists it" sh -c "ctl get autoscalers | grep -E '^synaxis-autoscaler +synaxis-stamp +westeurope,eastus +2 +10 +3 out, 2 in +false'"
expect_ok "kind aliases" sh -c "ctl get sa -o name | grep -qx 'autoscaler/synaxis-autoscaler' && ctl get stampautoscalers synaxis-autoscaler -o name | grep -qx 'autoscaler/synaxis-autoscaler'"
expect_eq "the stored spec is the manifest's" \
  "$(ctl get autoscaler synaxis-autoscaler -o json | jq -cS '.spec.scaleOut.triggers[2]')" \
  '{"duration":"3m","metric":"request_latency_p99","threshold":"500ms"}'
expect_ok "describe shows it" sh -c "ctl describe autoscaler synaxis-autoscaler | grep -q 'min 2, max 10'"
ctl get autoscalers -o yaml >"$T/list.yaml" || fail "get -o yaml"
expect_eq "get -o yaml applies back unchanged" "$(ctl apply -f "$T/list.yaml" 2>&1)" "stampautoscaler/synaxis-autoscaler unchanged"

# The seed's own YAML, as the seed writes it (no decided fields), applies.
cat >"$T/seed.yaml" <<'Y'
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata:
  name: seed-autoscaler
spec:
  scaleOut:
    triggers:
      - metric: cpu_utilization
        threshold: 70
        duration: 5m
      - metric: memory_utilization
        threshold: 80
        duration: 5m
      - metric: request_latency_p99
        threshold: 500ms
        duration: 3m
    cooldown: 10m
    maxStamps: 10
  
  scaleIn:
    triggers:
      - metric: cpu_utilization
        threshold: 30
        duration: 15m
      - metric: active_connections
        threshold: 10
        duration: 10m
    cooldown: 30m
    minStamps: 2
  
  standby:
    maxAge: 72h
    scaleDown:
      generalPool: 0
      gpuPool: 0
Y
expect_eq "seed 000's YAML applies as written" "$(ctl apply -f "$T/seed.yaml" 2>&1)" "stampautoscaler/seed-autoscaler created"
expect_ok "defaults show in the list" sh -c "ctl get autoscalers | grep -E '^seed-autoscaler +\\(the only one\\) +\\(where its stamps are\\)'"

# Refusals name the field and store nothing.
sed 's/threshold: 500ms/threshold: 500/' "$AS" | sed 's/name: synaxis-autoscaler/name: bad-autoscaler/' >"$T/bad1.yaml"
expect_err "a latency threshold without a unit" \
  "spec.scaleOut.triggers[2].threshold: 500 has no unit: request_latency_p99 is a time, write 500ms" ctl apply -f "$T/bad1.yaml"
sed 's/maxStamps: 10/maxStamps: 5000/' "$AS" | sed 's/name: synaxis-autoscaler/name: bad-autoscaler/' >"$T/bad2.yaml"
expect_err "maxStamps out of bounds" "spec.scaleOut.maxStamps: must be an integer from 1 to 1000" ctl apply -f "$T/bad2.yaml"
sed 's/regions: \[westeurope, eastus\]/regions: [westeurope, atlantis]/' "$AS" | sed 's/name: synaxis-autoscaler/name: bad-autoscaler/' >"$T/bad3.yaml"
expect_err "an unknown region" "spec.regions[1]: \"atlantis\" is not a region" ctl apply -f "$T/bad3.yaml"
expect_err "a dry run validates too" "spec.regions[1]" ctl apply --dry-run -f "$T/bad3.yaml"
expect_eq "nothing bad was stored" "$(ctl get autoscalers -o json | jq -r '[.items[].metadata.name] | sort | join(",")')" \
  "seed-autoscaler,synaxis-autoscaler"
expect_err "an unknown kind still lists what apply takes" "StampAutoscaler" sh -c \
  "printf 'kind: Gizmo\nmetadata: {name: x}\nspec: {}\n' | ctl apply -f -"
finish
