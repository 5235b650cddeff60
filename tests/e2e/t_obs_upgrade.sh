#!/usr/bin/env bash
# ObservabilityPlatform upgrades with real binaries: Debian bookworm's
# Prometheus 2.42.0 and Alertmanager 0.25.0, and trixie's 2.53.3 and 0.28.1
# (unpacked under .deps/observability by scripts/install-deps.sh test).
#   1. an upgrade that cannot work: Prometheus 2.42.0 -> 2.53.3 (fine) with
#      Alertmanager 0.25.0 -> "0.28.1-site", a site-local catalog entry (a
#      second catalog file) whose flags name a web config file that does not
#      exist, so the real 0.28.1 exits at start.  The backup is taken first;
#      Prometheus is upgraded, Alertmanager fails, and both are rolled back
#      in reverse order: the old versions serve again with their data
#      (samples from before the upgrade answered), Failed says so, and a
#      failed upgrade is not retried on its own;
#   2. the working upgrade (0.28.1), with stampd killed -9 just after it
#      began: after a restart it goes on from its recorded step, and every
#      component's new version started exactly once (its own log says so);
#      Prometheus 2.53.3 answers with the data of 2.42.0.
TEST_NAME=obs_upgrade
. "$(dirname "$0")/lib.sh"
trap 'crash_stampd; kill_owned' EXIT
ROOT=$STAMP_SRC/.deps/observability
for b in "$ROOT/prometheus/2.53.3/usr/bin/prometheus" "$ROOT/alertmanager/0.28.1/usr/bin/prometheus-alertmanager"; do
  [ -x "$b" ] || fail "$b missing (scripts/install-deps.sh test unpacks it)"
done
cat >"$T/site.yaml" <<'EOF2'
apiVersion: observability.synaxis.io/v1alpha1
kind: ComponentCatalog
versions:
  # A site build whose flags want a TLS/web config file nobody wrote.
  - component: alertmanager
    version: 0.28.1-site
    binary: "{root}/alertmanager/0.28.1/usr/bin/prometheus-alertmanager"
    args:
      - "--config.file={config}"
      - "--storage.path={data}"
      - "--data.retention={retention}"
      - "--web.listen-address=127.0.0.1:{port}"
      - --cluster.listen-address=
      - "--web.config.file={configdir}/web.yml"
EOF2
STAMPD_ARGS=(--set observability-root="$ROOT"
             --set observability-catalog="$STAMP_SRC/deploy/observability/catalog.yaml,$T/site.yaml"
             --set observability-health-interval=300ms --set observability-install-requeue=1s)
start_stampd
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
pfield() { ctl get platforms mon -o json | jq -r "$1"; }
pphase() { pfield .status.phase; }
cport() { pfield ".status.components[] | select(.name == \"$1\") | .port"; }
evs() { api GET "/v1/events?kind=ObservabilityPlatform&name=mon&limit=256" >/dev/null; cat "$T/body"; }
count_ev() { evs | jq --arg r "$1" '[(.items // .)[] | select(.reason == $r)] | length'; }
manifest() { # PROMETHEUS_VERSION ALERTMANAGER_VERSION
  cat >"$T/p.yaml" <<EOF2
apiVersion: observability.synaxis.io/v1alpha1
kind: ObservabilityPlatform
metadata: {name: mon}
spec:
  retry: {maxRetries: 3, initialBackoff: 1s, maxBackoff: 5s, backoffFactor: 2}
  components:
    - name: prometheus
      version: "$1"
      config: {global: {scrape_interval: 1s}}
    - name: alertmanager
      version: "$2"
EOF2
  ctl apply -f "$T/p.yaml" >/dev/null || fail "apply $1 $2"
}
ready() { wait_until "platform Ready" "${1:-60}" sh -c "[ \"\$(ctl get platforms mon -o json | jq -r .status.phase)\" = Ready ]"; }

manifest 2.42.0 0.25.0
ready
ok "installed: Prometheus 2.42.0, Alertmanager 0.25.0"
PROM=http://127.0.0.1:$(cport prometheus)
AM=http://127.0.0.1:$(cport alertmanager)
pver() { curl -fsS "$PROM/api/v1/status/buildinfo" | jq -r .data.version | cut -d+ -f1; }
amver() { curl -fsS "$AM/api/v2/status" | jq -r .versionInfo.version | cut -d+ -f1; }
expect_eq "Prometheus version" "$(pver)" 2.42.0
wait_until "samples in the TSDB" 30 sh -c "curl -fsS '$PROM/api/v1/query?query=up' | jq -e '.data.result | length > 0'"
sleep 2
T0=$(date +%s)
has_old_samples() { curl -fsS "$PROM/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D&time=$T0" | jq -e '.data.result | length == 1'; }
expect_ok "a sample at T0" has_old_samples
# A silence: Alertmanager's own state, which the backup keeps.
sil=$(curl -fsS -X POST -H 'Content-Type: application/json' "$AM/api/v2/silences" -d \
  "{\"matchers\":[{\"name\":\"alertname\",\"value\":\"Test\",\"isRegex\":false}],\"startsAt\":\"$(date -u +%FT%TZ)\",\"endsAt\":\"$(date -u -d '+1 day' +%FT%TZ)\",\"createdBy\":\"t\",\"comment\":\"kept\"}" | jq -r .silenceID)
[ -n "$sil" ] && [ "$sil" != null ] || fail "silence"

# ---- 1. the upgrade that fails, rolled back ----
manifest 2.53.3 0.28.1-site
wait_until "Failed after the rollback" 120 sh -c "[ \"\$(ctl get platforms mon -o json | jq -r .status.phase)\" = Failed ]"
ok "the failed upgrade ends Failed"
expect_eq "upgrade result" "$(pfield .status.upgrade.result)" RolledBack
expect_ok "the failure names Alertmanager and its error" sh -c "ctl get platforms mon -o json | jq -r .status.upgrade.failed.error | grep -q 'web.yml'"
expect_eq "backup taken before" "$(count_ev BackupTaken)" 1
expect_eq "Prometheus was upgraded first" "$(count_ev ComponentUpgraded)" 1
expect_eq "both rolled back" "$(evs | jq -r '[(.items // .)[] | select(.reason == "ComponentRolledBack") | .message | split(" ")[0]] | join(",")')" \
  "alertmanager,prometheus"
expect_eq "a RolledBack event" "$(count_ev RolledBack)" 1
expect_eq "Prometheus serves 2.42.0 again" "$(pver)" 2.42.0
expect_eq "Alertmanager serves 0.25.0 again" "$(amver)" 0.25.0
expect_ok "with the data from before the upgrade" has_old_samples
expect_ok "and Alertmanager's silence" sh -c "curl -fsS '$AM/api/v2/silence/$sil' | jq -e '.comment == \"kept\"'"
expect_eq "status shows the old versions" "$(pfield '[.status.components[] | "\(.name)=\(.version)"] | join(",")')" \
  "prometheus=2.42.0,alertmanager=0.25.0"
expect_eq "Degraded: rolled back" "$(pfield '.status.conditions[] | select(.type == "Degraded") | .reason')" RolledBack
expect_eq "Available" "$(pfield '.status.conditions[] | select(.type == "Available") | .status')" True
expect_eq "one process each" "$(procs obs/mon/)" 2
sleep 3
expect_eq "not retried on its own" "$(pphase)" Failed
expect_eq "still one UpgradeStarted" "$(count_ev UpgradeStarted)" 1
BACKUP=$(pfield .status.upgrade.backup)
expect_ok "the backup is complete (no .partial)" sh -c "test -f '$BACKUP/backup.json' && test ! -e '$BACKUP.partial'"

# ---- 2. the upgrade that works, stampd killed -9 as it begins ----
PLOG=$DATA/observability/mon/prometheus/log/prometheus.log
ALOG=$DATA/observability/mon/alertmanager/log/alertmanager.log
pl0=$(wc -l <"$PLOG") al0=$(wc -l <"$ALOG")
manifest 2.53.3 0.28.1
wait_until "the upgrade starts" 60 sh -c "[ \"\$(curl -fsS -H 'Authorization: Bearer $TOKEN' 'http://127.0.0.1:$API_PORT/v1/events?kind=ObservabilityPlatform&name=mon&limit=256' | jq '[(.items // .)[] | select(.reason == \"UpgradeStarted\")] | length')\" = 2 ]"
crash_stampd
log "stampd killed -9 at step $(sqlite3 "$DATA/stamp.db" "select json_extract(status, '$.upgrade.step') from resources where kind='ObservabilityPlatform'" 2>/dev/null)"
start_stampd
ready 120
ok "after kill -9 and restart, the upgrade completes"
expect_eq "Prometheus 2.53.3" "$(pver)" 2.53.3
expect_eq "Alertmanager 0.28.1" "$(amver)" 0.28.1
expect_ok "2.53.3 reads 2.42.0's data" has_old_samples
expect_ok "0.28.1 kept the silence" sh -c "curl -fsS '$AM/api/v2/silence/$sil' | jq -e '.comment == \"kept\"'"
expect_eq "one process each" "$(procs obs/mon/)" 2
expect_eq "Prometheus 2.53.3 started once since" "$(tail -n +$((pl0 + 1)) "$PLOG" | grep -c 'Starting Prometheus.*(version=2.53.3')" 1
expect_eq "Alertmanager 0.28.1 started once since" "$(tail -n +$((al0 + 1)) "$ALOG" | grep -c 'Starting Alertmanager.*(version=0.28.1')" 1
expect_eq "upgrade result" "$(pfield .status.upgrade.result)" Succeeded
expect_eq "last good" "$(pfield '.status.lastGood.versions | "\(.prometheus) \(.alertmanager)"')" "2.53.3 0.28.1"
finish
