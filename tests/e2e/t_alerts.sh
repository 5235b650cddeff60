#!/usr/bin/env bash
# The alert rules end to end: a real Prometheus (Debian's `prometheus`)
# scrapes stampd and, through stampd's HTTP service discovery
# (GET /v1/prometheus/targets), the stamps' workloads; it evaluates
# deploy/prometheus/stamp-alerts.yaml and sends to a real Alertmanager
# (Debian's `prometheus-alertmanager`) running deploy/alertmanager/alertmanager.yml.
#
# The rules are the real file with every `for:` cut to 2s (sed), so the
# expressions and labels under test are the shipped ones; the Alertmanager
# configuration is the real file with its webhooks pointed at a port where
# nothing listens (routing is read back from Alertmanager's API).
#
#   1. two Active stamps in two regions: no InsufficientActiveStamps;
#   2. a stamp's health check fails: StampUnhealthy reaches Alertmanager
#      (critical, receiver page) and resolves when it passes again;
#   3. a drain with --skip-fleet-check leaves one Active stamp:
#      InsufficientActiveStamps reaches Alertmanager (page); activating the
#      stamp again resolves it.  The drain is cancelled rather than waited
#      for: Prometheus's scrapes keep a connection open to each replica, and
#      the workload counts it as a client the drain waits for.
# Also promtool check metrics on stampd's real /metrics answers.
TEST_NAME=alerts
. "$(dirname "$0")/lib.sh"

for tool in prometheus prometheus-alertmanager promtool; do
  command -v $tool >/dev/null || fail "$tool missing (scripts/install-deps.sh test installs it)"
done

PROM_PID= AM_PID= PROM_PORT= AM_PORT=
stop_monitoring() {
  local p
  for p in "$PROM_PID" "$AM_PID"; do
    [ -n "$p" ] || continue
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PROM_PID= AM_PID=
}
trap 'stop_monitoring; crash_stampd; kill_owned; stop_azurite' EXIT

t_start=$(date +%s%3N)
mark() { log "timeline +$(( $(date +%s%3N) - t_start )) ms: $*"; }

# The fleet rule on: the drain below needs --skip-fleet-check.
STAMPD_ARGS=(--set fleet-min-regions=2)
start_stampd
# The template with a health check whose recovery only alerts, so that a
# failing check stays failing until the test lets it pass.
cat >"$T/hc.yaml" <<'EOF'
apiVersion: stamp/v1
kind: StampHealthCheck
metadata:
  name: alert-only
spec:
  checks:
    - name: application
      endpoint: /health
      interval: 200ms
      timeout: 500ms
      healthyThreshold: 1
      unhealthyThreshold: 2
  recovery:
    enabled: true
    action: alert
EOF
ctl apply -f "$T/hc.yaml" >/dev/null || fail "apply health check"
sed 's|^  metricsPath: /metrics$|&\n  healthCheck: alert-only|' "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/tpl.yaml"
grep -q 'healthCheck: alert-only' "$T/tpl.yaml" || fail "template edit"
apply_template "$T/tpl.yaml"
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy weu"
ctl deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy eus"
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
mark "two stamps Active"

# ---- stampd's series ----
M=http://127.0.0.1:$API_PORT/metrics
check_metrics() {
  local out
  curl -fsS "$M" >"$T/metrics.$1.txt" || fail "GET /metrics"
  if out=$(promtool check metrics <"$T/metrics.$1.txt" 2>&1); then ok "promtool check metrics ($1)"
  else fail "promtool check metrics ($1): $out"; fi
}
check_metrics active
series() { curl -fsS "$M" | grep -E "^$1" ; }
expect_eq "active_stamps" "$(series 'active_stamps ' | awk '{print $2}')" 2
expect_ok "a phase age per stamp" sh -c "curl -fsS $M | grep -q '^stamp_phase_seconds{stamp=\"synaxis-eus-001\",region=\"eastus\",template=\"synaxis-stamp\",phase=\"Active\"} '"
expect_eq "health series: passing" "$(series 'stamp_health_check_failing\{stamp="synaxis-weu-001"' | awk '{print $2}')" 0
expect_ok "timeouts as configured (creating-timeout=60s)" sh -c "curl -fsS $M | grep -qx 'stamp_phase_timeout_seconds{phase=\"Creating\"} 60'"

# ---- service discovery ----
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
[ -n "$TOKEN" ] || fail "operator token in $STAMP_CONFIG"
expect_eq "targets need a token" "$(TOKEN= api GET /v1/prometheus/targets)" 401
expect_eq "targets with the operator token" "$(api GET /v1/prometheus/targets)" 200
cp "$T/body" "$T/targets.json"
expect_eq "a group per stamp and metrics step (app, inference)" \
  "$(jq -r '[.[] | .labels | "\(.stamp)/\(.step)/\(.pool)/\(.region)"] | sort | join(" ")' "$T/targets.json")" \
  "synaxis-eus-001/app/general/eastus synaxis-eus-001/inference/gpu/eastus synaxis-weu-001/app/general/westeurope synaxis-weu-001/inference/gpu/westeurope"
ep=$(endpoint synaxis-weu-001)
expect_ok "the endpoint replica is a target" jq -e --arg t "$ep" '[.[] | select(.labels.stamp == "synaxis-weu-001" and .labels.step == "app") | .targets[]] == [$t]' "$T/targets.json"
expect_ok "targets answer /metrics" sh -c "for t in \$(jq -r '.[].targets[]' $T/targets.json); do curl -fsS http://\$t/metrics | grep -q '^stamp_workload_' || exit 1; done"

# ---- Alertmanager and Prometheus ----
mkdir -p "$T/am/data" "$T/prom/data"
printf '%s' "$TOKEN" >"$T/prom/token"
chmod 600 "$T/prom/token"
hook=$(free_port)
sed "s|http://127.0.0.1:9095/|http://127.0.0.1:$hook/|" "$STAMP_SRC/deploy/alertmanager/alertmanager.yml" >"$T/am/alertmanager.yml"
sed -E 's/^( +for: ).*/\12s/' "$STAMP_SRC/deploy/prometheus/stamp-alerts.yaml" >"$T/prom/stamp-alerts.yaml"
expect_eq "every for: shortened, nothing else changed" \
  "$(diff "$STAMP_SRC/deploy/prometheus/stamp-alerts.yaml" "$T/prom/stamp-alerts.yaml" | grep -c '^>')" \
  "$(grep -cE '^ +for: ' "$STAMP_SRC/deploy/prometheus/stamp-alerts.yaml")"

# wait_http URL PID LOG: until URL answers, failing if the process exits.
wait_http() {
  for _ in $(seq 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
start_am() {
  for attempt in 1 2 3; do
    AM_PORT=$(free_port)
    # No cluster port (it would listen on 0.0.0.0:9094).
    prometheus-alertmanager --config.file="$T/am/alertmanager.yml" --storage.path="$T/am/data" \
      --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
      --log.level=info >>"$T/am.log" 2>&1 &
    AM_PID=$!
    wait_http "http://127.0.0.1:$AM_PORT/-/ready" "$AM_PID" && return 0
    kill "$AM_PID" 2>/dev/null; wait "$AM_PID" 2>/dev/null; AM_PID=
    log "alertmanager did not start on $AM_PORT (attempt $attempt): $(tail -n 3 "$T/am.log")"
  done
  fail "alertmanager did not start"
}
start_prom() {
  for attempt in 1 2 3; do
    PROM_PORT=$(free_port)
    cat >"$T/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [$T/prom/stamp-alerts.yaml]
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:$AM_PORT"]}]
scrape_configs:
  - job_name: stampd
    static_configs: [{targets: ["127.0.0.1:$API_PORT"]}]
  - job_name: stamps
    http_sd_configs:
      - url: http://127.0.0.1:$API_PORT/v1/prometheus/targets
        refresh_interval: 1s
        # type given: Debian's Prometheus 2.42 sends the bare token
        # (no "Bearer") from http_sd when it is left out.
        authorization: {type: Bearer, credentials_file: $T/prom/token}
EOF
    prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
      --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=info >>"$T/prom.log" 2>&1 &
    PROM_PID=$!
    wait_http "http://127.0.0.1:$PROM_PORT/-/ready" "$PROM_PID" && return 0
    kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null; PROM_PID=
    log "prometheus did not start on $PROM_PORT (attempt $attempt): $(tail -n 3 "$T/prom.log")"
  done
  fail "prometheus did not start"
}
start_am
start_prom
mark "prometheus and alertmanager up"

# promql QUERY: the result vector (JSON).
promql() { curl -fsS -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" | jq -c '.data.result'; }
# The alerts Prometheus holds now, as "name:state" lines.
prom_alerts() { curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/alerts" | jq -r '.data.alerts[] | "\(.labels.alertname):\(.state)"'; }
# Alertmanager's active alerts named $1 (JSON array).
am_alerts() { curl -fsS "http://127.0.0.1:$AM_PORT/api/v2/alerts?active=true&silenced=false&inhibited=false" | jq -c --arg a "$1" '[.[] | select(.labels.alertname == $a)]'; }
am_has() { [ "$(am_alerts "$1" | jq length)" -gt 0 ]; }
am_lacks() { [ "$(am_alerts "$1" | jq length)" = 0 ]; }

wait_until "Prometheus scrapes stampd" 30 sh -c "[ \"\$(curl -fsS -G http://127.0.0.1:$PROM_PORT/api/v1/query --data-urlencode 'query=up{job=\"stampd\"}' | jq -r '.data.result[0].value[1]')\" = 1 ]"
wait_until "Prometheus scrapes the 4 workload targets it discovered" 30 sh -c "[ \"\$(curl -fsS -G http://127.0.0.1:$PROM_PORT/api/v1/query --data-urlencode 'query=count(up{job=\"stamps\"} == 1)' | jq -r '.data.result[0].value[1]')\" = 4 ]"
ok "Prometheus scrapes stampd and the discovered targets"
expect_eq "the workloads' series carry the stamp's labels" \
  "$(promql 'count by (stamp, region, pool) (stamp_workload_uptime_seconds)' | jq -r '[.[].metric | "\(.stamp)/\(.region)/\(.pool)"] | sort | join(" ")')" \
  "synaxis-eus-001/eastus/general synaxis-eus-001/eastus/gpu synaxis-weu-001/westeurope/general synaxis-weu-001/westeurope/gpu"
mark "targets discovered and scraped"

# 1. Two Active stamps: after several evaluations with active_stamps == 2
#    (each longer than the 2s `for:`), nothing is pending or firing.
wait_until "five samples of active_stamps == 2" 30 sh -c "[ \"\$(curl -fsS -G http://127.0.0.1:$PROM_PORT/api/v1/query --data-urlencode 'query=count_over_time((active_stamps == 2)[1m:1s]) >= 5' | jq '.data.result | length')\" = 1 ]"
expect_eq "no alert with two healthy Active stamps" "$(prom_alerts | sort | tr '\n' ' ')" ""
expect_ok "nothing in Alertmanager" am_lacks InsufficientActiveStamps

# 2. StampUnhealthy: stop the endpoint replica of synaxis-weu-001; its
#    check fails (the recovery only alerts), and passes when it goes on.
pid=$(pgrep -f "stamp-workload --port ${ep#*:} " | head -n1)
[ -n "$pid" ] || fail "workload pid"
kill -STOP "$pid"
mark "SIGSTOP to synaxis-weu-001's app replica"
wait_until "the check is failing in stampd's series" 30 sh -c "curl -fsS $M | grep -qx 'stamp_health_check_failing{stamp=\"synaxis-weu-001\",region=\"westeurope\",template=\"synaxis-stamp\",check=\"application\"} 1'"
mark "stamp_health_check_failing = 1 on /metrics"
check_metrics unhealthy
wait_until "StampUnhealthy in Alertmanager" 60 am_has StampUnhealthy
mark "StampUnhealthy in Alertmanager"
a=$(am_alerts StampUnhealthy)
expect_eq "StampUnhealthy: the stamp, critical, routed to page" \
  "$(jq -r '.[0] | "\(.labels.stamp) \(.labels.region) \(.labels.severity) \([.receivers[].name] | join(","))"' <<<"$a")" \
  "synaxis-weu-001 westeurope critical page"
expect_ok "StampUnhealthy names the failing check" jq -e '.[0].annotations.description | test("failing: application")' <<<"$a"
expect_eq "only the stopped stamp is unhealthy" "$(jq length <<<"$a")" 1
kill -CONT "$pid"
mark "SIGCONT"
wait_until "StampUnhealthy resolved in Alertmanager" 60 am_lacks StampUnhealthy
mark "StampUnhealthy resolved in Alertmanager"

# 3. InsufficientActiveStamps: the fleet rule refuses the drain, the
#    override takes it; from Draining on only one stamp is Active, the alert
#    fires and reaches Alertmanager; activating the stamp again (which
#    cancels the drain) resolves it.
expect_err "the fleet rule refuses the drain" "fleet rule" ctl drain synaxis-eus-001
ctl drain synaxis-eus-001 --skip-fleet-check >/dev/null || fail "drain --skip-fleet-check"
mark "drain synaxis-eus-001 --skip-fleet-check"
# Nothing holds the drain open (Prometheus's kept-alive scrapes are not
# client connections), so it may be Ready already.
expect_ok "synaxis-eus-001 left Active" sh -c "ctl status synaxis-eus-001 -o json | jq -r .status.phase | grep -Eqx 'Draining|Ready'"
check_metrics draining
expect_ok "its phase age is exported as Draining or Ready" sh -c "curl -fsS $M | grep -Eq '^stamp_phase_seconds[{]stamp=\"synaxis-eus-001\",region=\"eastus\",template=\"synaxis-stamp\",phase=\"(Draining|Ready)\"[}] '"
wait_until "InsufficientActiveStamps firing in Prometheus" 60 sh -c "curl -fsS http://127.0.0.1:$PROM_PORT/api/v1/alerts | jq -e '.data.alerts[] | select(.labels.alertname == \"InsufficientActiveStamps\" and .state == \"firing\")'"
mark "InsufficientActiveStamps firing in Prometheus"
wait_until "InsufficientActiveStamps in Alertmanager" 60 am_has InsufficientActiveStamps
mark "InsufficientActiveStamps in Alertmanager"
a=$(am_alerts InsufficientActiveStamps)
expect_eq "InsufficientActiveStamps: page, routed to page" \
  "$(jq -r '.[0] | "\(.labels.severity) \([.receivers[].name] | join(",")) \(.status.state)"' <<<"$a")" "page page active"
expect_eq "its summary counts the Active stamps" "$(jq -r '.[0].annotations.summary' <<<"$a")" "Only 1 Active stamp(s)"

ctl activate synaxis-eus-001 >/dev/null || fail "activate"
mark "activate synaxis-eus-001"
wait_for synaxis-eus-001 active
mark "synaxis-eus-001 Active"
wait_until "InsufficientActiveStamps resolved in Alertmanager" 60 am_lacks InsufficientActiveStamps
mark "InsufficientActiveStamps resolved in Alertmanager"
expect_ok "Prometheus holds no alert any more" sh -c "[ -z \"\$(curl -fsS http://127.0.0.1:$PROM_PORT/api/v1/alerts | jq -r '.data.alerts[].labels.alertname')\" ]"
expect_ok "rules evaluated without errors" sh -c "curl -fsS http://127.0.0.1:$PROM_PORT/api/v1/rules | jq -e '[.data.groups[].rules[] | select(.health != \"ok\")] | length == 0'"

# 4. The autoscaler's prometheus trigger against this Prometheus: a PromQL
#    query's value is the trigger's (fleet-wide); with Prometheus gone the
#    value is missing, says why, and scale-in is blocked.
stop_stampd
STAMPD_ARGS=(--set fleet-min-regions=2 --set prometheus-url=http://127.0.0.1:$PROM_PORT)
start_stampd
cat >"$T/as.yaml" <<Y
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: promq}
spec:
  template: synaxis-stamp
  paused: true
  interval: 1s
  scaleOut:
    triggers: [{metric: prometheus, query: 'sum(active_stamps)', threshold: 10, duration: 2s}]
    maxStamps: 4
  scaleIn:
    triggers: [{metric: prometheus, query: 'sum(active_stamps)', threshold: 100, duration: 2s}]
    minStamps: 2
Y
ctl apply -f "$T/as.yaml" >/dev/null || fail "apply the autoscaler"
wait_until "the query's value is the trigger's" 30 sh -c "ctl get autoscaler promq -o json | jq -e '.status.lastDecision.triggers[0] | .fleetWide and .value == 2' >/dev/null"
mark "prometheus trigger: sum(active_stamps) = 2"
kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null; PROM_PID=
wait_until "Prometheus gone: the value is missing and says why" 30 sh -c "ctl get autoscaler promq -o json | jq -e '.status.lastDecision.triggers[1] | .value == null and (.missing | test(\"prometheus\"))' >/dev/null"
expect_ok "and scale-in does not hold" sh -c "ctl get autoscaler promq -o json | jq -e '.status.lastDecision.triggers[1].met == false' >/dev/null"
mark "prometheus down: trigger missing"

stop_monitoring
finish
