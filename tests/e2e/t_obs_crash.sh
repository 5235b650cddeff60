#!/usr/bin/env bash
# ObservabilityPlatform: prerequisites, and kill -9 of stampd.
#   1. prerequisites: Loki enabled (not packaged for Debian: its binary is
#      not there) and a required secret missing: the platform stays Pending
#      saying both, installs nothing and leases no port; once the secret
#      exists and Loki is disabled, it installs, and the secret is copied
#      into each component's config dir, 0600; the exec runtime without
#      helm stays Pending saying so;
#   2. kill -9 of stampd during the install: after a restart every component
#      is Ready and each was started exactly once (its own log says so);
#   3. kill -9 of stampd during the deletion: after a restart the finalizer
#      finishes it: no process, no volume, no port lease, no record.
TEST_NAME=obs_crash
. "$(dirname "$0")/lib.sh"
trap 'crash_stampd; kill_owned' EXIT
mkdir -p "$T/secrets"
STAMPD_ARGS=(--set secrets-dir="$T/secrets" --set observability-pending-requeue=300ms
             --set observability-health-interval=300ms --set observability-install-requeue=1s)
start_stampd
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
pfield() { ctl get platforms "${P:-mon}" -o json | jq -r "$1"; }
evs() { api GET "/v1/events?kind=ObservabilityPlatform&name=${P:-mon}&limit=256" >/dev/null; cat "$T/body"; }
leases() { sqlite3 "$DATA/stamp.db" "select count(*) from ports where owner like 'obs:%'"; }
manifest() { # LOKI_ENABLED RUNTIME
  cat >"$T/p.yaml" <<EOF2
apiVersion: observability.synaxis.io/v1alpha1
kind: ObservabilityPlatform
metadata: {name: ${P:-mon}}
spec:
  runtime: ${2:-local}
  secrets: [webhook-token]
  retry: {maxRetries: 3, initialBackoff: 1s, maxBackoff: 5s, backoffFactor: 2}
  components:
    - {name: prometheus, version: "2.42.0"}
    - {name: loki, enabled: $1}
    - {name: alertmanager, version: "0.25.0"}
    - {name: node-exporter}
    - {name: blackbox-exporter}
EOF2
  ctl apply -f "$T/p.yaml" >/dev/null || fail "apply"
}

# ---- 1. prerequisites ----
manifest true
wait_until "Pending with the reasons" 20 sh -c "ctl get platforms mon -o json | jq -r .status.prerequisites | grep -q loki"
expect_eq "Pending" "$(pfield .status.phase)" Pending
msg=$(pfield .status.prerequisites)
log "prerequisites: $msg"
expect_ok "Loki's binary named as missing" grep -q '/usr/local/bin/loki is not installed' <<<"$msg"
expect_ok "the missing secret named" grep -q 'secret webhook-token' <<<"$msg"
expect_ok "a PrerequisitesMissing event" sh -c "ctl get platforms mon >/dev/null; test \$(curl -fsS -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$API_PORT/v1/events?kind=ObservabilityPlatform&name=mon&limit=256' | jq '[(.items // .)[] | select(.reason == \"PrerequisitesMissing\")] | length') -ge 1"
sleep 1
expect_eq "nothing started" "$(procs obs/)" 0
expect_eq "no port leased" "$(leases)" 0
expect_eq "Progressing False while waiting" "$(pfield '.status.conditions[] | select(.type == "Progressing") | .status')" False
printf 'not-a-real-token\n' >"$T/secrets/webhook-token"
manifest false
wait_until "Ready once the prerequisites are there" 60 sh -c "[ \"\$(ctl get platforms mon -o json | jq -r .status.phase)\" = Ready ]"
ok "Pending -> Installing -> Ready"
S=$DATA/observability/mon/alertmanager/config/secrets/webhook-token
expect_eq "the secret copied, 0600" "$(stat -c %a "$S")" 600
expect_eq "same bytes" "$(cat "$S")" not-a-real-token

# ---- 3. kill -9 during the deletion (this platform), then 2. ----
# Killed as soon as the deletion is acknowledged: the uninstall is under way
# or about to be.
ctl delete platform mon >/dev/null || fail "delete"
crash_stampd
log "stampd killed -9 with $(procs obs/mon/) components left"
start_stampd
wait_until "the record gone" 60 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$API_PORT/v1/platforms/mon)\" = 404 ]"
ok "the deletion finished after the restart"
expect_eq "no process" "$(procs obs/)" 0
expect_ok "no volume" test ! -e "$DATA/observability/mon"
expect_eq "no port lease" "$(leases)" 0

# 2. kill -9 while installing.
P=mon2
manifest false
wait_until "the install began" 30 sh -c "curl -fsS -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$API_PORT/v1/events?kind=ObservabilityPlatform&name=mon2&limit=256' | jq -e '[(.items // .)[] | select(.reason == \"ComponentInstalled\")] | length >= 1'"
crash_stampd
log "stampd killed -9 with $(procs obs/mon2/) components running"
start_stampd
wait_until "Ready after the restart" 60 sh -c "[ \"\$(ctl get platforms mon2 -o json | jq -r .status.phase)\" = Ready ]"
ok "the install finished after the restart"
expect_eq "one process per component" "$(procs obs/mon2/)" 4
L=$DATA/observability/mon2
expect_eq "node-exporter started once" "$(grep -c 'Starting node_exporter' "$L/node-exporter/log/node-exporter.log")" 1
expect_eq "blackbox-exporter started once" "$(grep -c 'Starting blackbox_exporter' "$L/blackbox-exporter/log/blackbox-exporter.log")" 1
expect_eq "prometheus started once" "$(grep -c 'Starting Prometheus' "$L/prometheus/log/prometheus.log")" 1
expect_eq "alertmanager started once" "$(grep -c 'Starting Alertmanager' "$L/alertmanager/log/alertmanager.log")" 1

# The exec runtime runs the catalog's helm commands: without helm, Pending
# says so (helm is not packaged for Debian).
P=mon3
manifest false exec
wait_until "exec: Pending naming helm" 20 sh -c "ctl get platforms mon3 -o json | jq -r .status.prerequisites | grep -q helm"
ok "exec runtime without helm: Pending, $(P=mon3 pfield .status.prerequisites)"
expect_eq "exec: nothing started" "$(procs obs/mon3/)" 0
finish
