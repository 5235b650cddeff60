#!/usr/bin/env bash
# make demo: stampd on the embedded defaults (SQLite, local runtime), the
# example template, two stamps in two regions, real traffic, a drain with a
# slow request in flight, reactivation, an application update under
# traffic, and the retirement of one stamp; then
# autoscaling on real load (a warm stamp activated, then drained back); then
# a batch bucket's transient namespace with pods, MTTC verification, and its
# reap with the diagnostics archived first.  Once the first two stamps are
# up, the ObservabilityPlatform of deploy/observability/platform.yaml is
# installed and its Prometheus shown watching stampd and the stamps; it is
# left running, and `stop` uninstalls it.
#   scripts/demo.sh BUILD_DIR        run the demo (stampd is left running)
#   scripts/demo.sh BUILD_DIR stop   uninstall the platform, retire what is
#                                    left and stop stampd, its workloads and
#                                    its HAProxy
# The API and the front door listen on STAMP_LISTEN (127.0.0.1:7480) and
# STAMP_FRONTDOOR (127.0.0.1:7481); set them when those ports are taken:
#   STAMP_LISTEN=127.0.0.1:8480 STAMP_FRONTDOOR=127.0.0.1:8481 make demo
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
D=$PWD/.demo
CTL=$B/stampctl
LISTEN=${STAMP_LISTEN:-127.0.0.1:7480}
FRONTDOOR=${STAMP_FRONTDOOR:-127.0.0.1:7481}
export STAMP_CONFIG=$D/client.conf
T0=$(date +%s%N)
# Where stampd keeps its state.  As root, pods run as the pod user
# (stamp-pod), which must reach the data dir and the programs pods run; a
# checkout under a private directory (root's home, say) is closed to it, so
# the demo then keeps its state, and a copy of those two programs, in
# /var/lib/stamp-demo instead.
DATA=$D/data
POD_ARGS=()
if [ "$(id -u)" -eq 0 ] && getent passwd stamp-pod >/dev/null &&
   ! runuser -u stamp-pod -- sh -c "test -x '$D/..' && test -x '$B/stamp-nsworker'" 2>/dev/null; then
  DATA=/var/lib/stamp-demo/data
  POD_ARGS=(--set pod-command=/var/lib/stamp-demo/libexec/stamp-nsworker
            --set pipeline-command=/var/lib/stamp-demo/libexec/stamp-pipeline)
fi

say() { printf '\n\033[1m[%6.2fs] %s\033[0m\n' "$(echo "($(date +%s%N) - $T0)/1000000000" | bc -l)" "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ "${2:-}" = stop ]; then
  # Where the running demo keeps its state (the check above may answer
  # differently now: the tests open directories to the pod user).
  [ -s "$D/data-dir" ] && DATA=$(cat "$D/data-dir")
  if [ -f "$D/stampd.pid" ] && kill -0 "$(cat "$D/stampd.pid")" 2>/dev/null; then
    # The monitoring first (its finalizer stops the components in reverse
    # install order), so it does not watch the fleet being taken down.
    if "$CTL" get platforms fleet-monitoring >/dev/null 2>&1; then
      "$CTL" delete platform fleet-monitoring --wait --timeout 60s >/dev/null
      echo "platform fleet-monitoring uninstalled"
    fi
    # The autoscaler next: it would deploy stamps again to keep its floor.
    "$CTL" delete autoscaler demo >/dev/null 2>&1 || true
    for s in $("$CTL" list -o json | jq -r '.items[] | select(.status.phase != "Deleted") | .metadata.name'); do
      "$CTL" delete "$s" --force >/dev/null && "$CTL" wait --for=deleted "$s" --timeout 60s
    done
    # The front door and workloads outlive a plain stop of stampd by design;
    # --shutdown-all stops stampd and everything it started.
    "$B/stampd" --shutdown-all --data-dir "$DATA" && rm -f "$D/stampd.pid"
    echo "stampd, its workloads and its HAProxy stopped; state kept in $DATA"
  else
    echo "no demo stampd running"
  fi
  exit 0
fi

command -v jq >/dev/null && command -v bc >/dev/null || {
  echo "demo: installing jq and bc"; apt-get install -y -qq jq bc >/dev/null; }
if [ -f "$D/stampd.pid" ] && kill -0 "$(cat "$D/stampd.pid")" 2>/dev/null; then
  echo "demo: a demo stampd is already running; 'scripts/demo.sh $1 stop' ends it"; exit 1
fi
# What an earlier demo left running (its stampd gone, its HAProxy and
# workloads not) would hold the ports: stop it before starting afresh.
if [ -d "$DATA" ]; then "$B/stampd" --shutdown-all --data-dir "$DATA" >/dev/null 2>&1 || true; fi
rm -rf "$D" && mkdir -p "$D"
if [ "$DATA" != "$D/data" ]; then
  rm -rf /var/lib/stamp-demo
  install -d -m 0711 /var/lib/stamp-demo /var/lib/stamp-demo/libexec
  install -m 0755 "$B/stamp-nsworker" "$B/stamp-pipeline" /var/lib/stamp-demo/libexec/
  echo "demo: $D is closed to the pod user stamp-pod; state and pod programs in /var/lib/stamp-demo"
fi

say "Starting stampd (SQLite store in $DATA, API on $LISTEN, HAProxy front door on $FRONTDOOR)"
"$B/stampd" --data-dir "$DATA" --listen "$LISTEN" --frontdoor-listen "$FRONTDOOR" "${POD_ARGS[@]}" >"$D/stampd.log" 2>&1 &
echo $! >"$D/stampd.pid"
echo "$DATA" >"$D/data-dir"
up=
for _ in $(seq 100); do
  curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && [ -s "$STAMP_CONFIG" ] && { up=1; break; }
  kill -0 "$(cat "$D/stampd.pid")" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  # stampd names what it could not get (a port in use, most often).
  echo "demo: stampd did not start: $(grep '^stampd: ' "$D/stampd.log" | tail -n 1 | sed 's/^stampd: //')" >&2
  echo "demo: the API listens on STAMP_LISTEN ($LISTEN) and the front door on STAMP_FRONTDOOR ($FRONTDOOR);" >&2
  echo "demo: choose free ones, e.g. STAMP_LISTEN=127.0.0.1:8480 STAMP_FRONTDOOR=127.0.0.1:8481 make demo" >&2
  echo "demo: full log in $D/stampd.log" >&2
  rm -f "$D/stampd.pid"
  exit 1
fi
echo "stampd $("$B/stampd" --version | sed 's/^stampd //') is up (log $D/stampd.log)"

say "Applying the example template"
run "$CTL" apply -f deploy/templates/synaxis-stamp.yaml

say "Deploying two stamps in two regions, in parallel"
run "$CTL" deploy --region westeurope --stamp-id 001 --template synaxis-stamp
run "$CTL" deploy --region eastus --stamp-id 001 --template synaxis-stamp
t=$(date +%s%N)
"$CTL" wait --for=active synaxis-weu-001 --timeout 120s &
W=$!
"$CTL" wait --for=active synaxis-eus-001 --timeout 120s
wait $W   # not a bare wait: stampd is a background job of this shell too
say "Both Active after $(( ($(date +%s%N) - t) / 1000000 )) ms"
run "$CTL" list -o wide

say "Monitoring the fleet: the ObservabilityPlatform of deploy/observability/platform.yaml (the shipped file, as is)"
t=$(date +%s%N)
run "$CTL" apply -f deploy/observability/platform.yaml
# Progress: a line per change of the phase or of a component's state.
last= ; phase=
for _ in $(seq 600); do
  pj=$("$CTL" get platforms fleet-monitoring -o json)
  phase=$(jq -r '.status.phase // "Pending"' <<<"$pj")
  line=$(jq -r '[.status.phase // "Pending", ([.status.components[]? | "\(.name) \(.state // "Pending")"] | join(", "))]
    | map(select(. != "")) | join("  ")' <<<"$pj")
  if [ "$line" != "$last" ]; then
    printf '  [%5d ms] %s\n' $(( ($(date +%s%N) - t) / 1000000 )) "$line"; last=$line
  fi
  [ "$phase" = Ready ] && break
  sleep 0.2
done
if [ "$phase" != Ready ]; then
  "$CTL" describe platform fleet-monitoring >&2
  echo "demo: the platform is not Ready after 120 s (phase $phase)" >&2; exit 1
fi
say "Platform Ready in $(( ($(date +%s%N) - t) / 1000000 )) ms"
run "$CTL" get platforms
run "$CTL" describe platform fleet-monitoring
PROM=http://127.0.0.1:$(jq -r '.status.components[] | select(.name == "prometheus") | .port' <<<"$pj")
echo "$PROM" >"$D/prometheus-url"

# What the installed Prometheus answers about the fleet: up of stampd and of
# each Active stamp's workloads (file_sd targets stampd writes under
# prometheus-sd-dir, following the stamps' phases), and probe_success of
# their /health through the blackbox exporter.  A cell is "1  2/2 app
# inference": the value, then how many of the targets Prometheus has
# discovered for it (/api/v1/targets; series are matched to them by
# instance, so a target that just left is not counted) answer 1, and their
# steps; "-": none scraped yet.  fleet_table sets FLEET_ROWS and fails
# until every cell is 1 with every discovered target scraped.
prom_q() { curl -fsS "$PROM/api/v1/query" --data-urlencode "query=$1"; }
fleet_table() {
  local up pr tg active n total
  up=$(prom_q 'up{job=~"stampd|stamps"}') && pr=$(prom_q 'probe_success{job="blackbox"}') &&
    tg=$(curl -fsS "$PROM/api/v1/targets?state=active") || return 1
  active=$("$CTL" list -o json | jq -c '[.items[] | select(.status.phase == "Active") | .metadata.name]')
  FLEET_ROWS=$(jq -r -n --argjson up "$up" --argjson pr "$pr" --argjson tg "$tg" --argjson active "$active" \
    --arg listen "$LISTEN" '
    def cell($res; $job; $s):
      [$tg.data.activeTargets[] | select(.labels.job == $job and (.labels.stamp // "") == $s)
       | .labels.instance as $i | {step: (.labels.step // ""),
         v: ([$res.data.result[] | select(.metric.job == $job and .metric.instance == $i) | .value[1]][0])}] as $t
      | [$t[] | select(.v == "1")] as $ok
      | {ok: (($t | length) > 0 and ($ok | length) == ($t | length)),
         text: (if all($t[]; .v == null) then "-" else
                  (if any($t[]; .v != null and .v != "1") then "0" else "1" end)
                  + "  \($ok | length)/\($t | length)"
                  + ([$t[] | .step | select(. != "")] | sort | if length > 0 then " " + join(" ") else "" end) end)};
    def row($name; $a; $b): "  \($name | . + " " * (17 - length)) \($a | . + " " * (24 - length)) \($b)";
    [cell($up; "stampd"; "")] as $sd
    | [$active[] as $s | {s: $s, up: cell($up; "stamps"; $s), pr: cell($pr; "blackbox"; $s)}] as $st
    | row("TARGET"; "up"; "probe_success (blackbox)"),
      row("stampd"; $sd[0].text; "(not probed; \($listen))"),
      ($st[] | row(.s; .up.text; .pr.text)),
      "ok \([$sd[0].ok, ($st[] | .up.ok, .pr.ok)] | map(select(.)) | length) \(1 + 2 * ($st | length))"')
  # The last line is "ok N TOTAL": how many cells are complete.
  FLEET_OK=$(tail -n 1 <<<"$FLEET_ROWS")
  FLEET_ROWS=$(sed '$d' <<<"$FLEET_ROWS")
  read -r _ n total <<<"$FLEET_OK"
  [ "$n" = "$total" ]
}
# Waits for the first scrapes, with a line at each change: the shipped
# scrape_interval is 15s, and Prometheus hands newly discovered targets to
# its scrapers every 5s, so each is first scraped within about 20s.
fleet_wait() {
  local t0 n=0 last=
  t0=$(date +%s%N) FLEET_OK=
  until fleet_table; do
    if [ -n "$FLEET_OK" ] && [ "$FLEET_OK" != "$last" ]; then
      read -r _ a b <<<"$FLEET_OK"
      printf '  [%5d ms] %d of %d complete (every discovered target scraped, answering 1)\n' \
        $(( ($(date +%s%N) - t0) / 1000000 )) "$a" "$b"
      last=$FLEET_OK
    fi
    n=$((n + 1))
    if [ $n -ge 120 ]; then
      printf '%s\n' "$FLEET_ROWS"
      echo "demo: Prometheus ($PROM) does not see the whole fleet up after 60 s" >&2; return 1
    fi
    sleep 0.5
  done
  printf '  [%5d ms] all up\n%s\n' $(( ($(date +%s%N) - t0) / 1000000 )) "$FLEET_ROWS"
}

say "The platform's Prometheus ($PROM) watches the fleet: querying /api/v1/query for up and probe_success"
t=$(date +%s%N)
fleet_wait
say "stampd and every Active stamp up, every stamp's /health probed, $(( ($(date +%s%N) - t) / 1000000 )) ms after Ready; the platform stays up for the rest of the demo"

say "Sending requests through the HAProxy front door: tenants stick to a stamp"
for t in acme globex initech umbrella hooli; do
  for i in 1 2; do
    printf '  X-Tenant-Id: %-9s -> %s\n' "$t" "$(curl -fsS -D - -o /dev/null -H "X-Tenant-Id: $t" "http://$FRONTDOOR/work?ms=5" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p')"
  done
done
run "$CTL" frontdoor

say "The fleet rule: two Active stamps in two regions is the minimum"
run "$CTL" drain synaxis-weu-001 || true

# A tenant that lands on synaxis-weu-001.
T1=$(for t in $(seq 1 200); do w=$(curl -fsS -D - -o /dev/null -H "X-Tenant-Id: tenant-$t" "http://$FRONTDOOR/work?ms=0" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p'); [ "$w" = synaxis-weu-001 ] && { echo tenant-$t; break; }; done)
say "Draining synaxis-weu-001 anyway (--skip-fleet-check) while a 3 s request of $T1 is in flight"
curl -sS -H "X-Tenant-Id: $T1" "http://$FRONTDOOR/work?ms=3000" >"$D/slow.out" &
SLOW=$!
sleep 0.3
t=$(date +%s%N)
run "$CTL" drain synaxis-weu-001 --skip-fleet-check
sleep 0.5
run "$CTL" status synaxis-weu-001 | sed -n '1,14p'
printf '  a new request of %s now goes to: %s\n' "$T1" "$(curl -fsS -D - -o /dev/null -H "X-Tenant-Id: $T1" "http://$FRONTDOOR/work?ms=0" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]tamp-[Nn]ame: //p')"
"$CTL" wait --for=ready synaxis-weu-001 --timeout 60s
wait $SLOW
say "Drained to Ready in $(( ($(date +%s%N) - t) / 1000000 )) ms; the slow request finished: $(cat "$D/slow.out")"
run "$CTL" status synaxis-weu-001 | grep -E '^(Phase|Pools|Drain|Front door)'

say "Reactivating synaxis-weu-001 from warm standby"
t=$(date +%s%N)
run "$CTL" activate synaxis-weu-001
"$CTL" wait --for=active synaxis-weu-001 --timeout 60s
say "Active again in $(( ($(date +%s%N) - t) / 1000000 )) ms"
run "$CTL" health synaxis-weu-001

say "Updating synaxis-weu-001's application to version 2 under front-door traffic, one replica at a time"
"$B/stamp-loadgen" --concurrency 4 --duration 8s --tenants 16 --path '/work?ms=5' "http://$FRONTDOOR" >"$D/update-load.txt" 2>&1 &
LG=$!
sleep 1
run "$CTL" update synaxis-weu-001 --set app.version=2 --wait
wait $LG
echo "traffic during the update (stamp-loadgen):"
sed -n '1,3p' "$D/update-load.txt" | sed 's/^/  /'
printf '  synaxis-weu-001 now answers X-App-Version: %s\n' "$(curl -fsS -D - -o /dev/null "http://$(jq -r .status.endpoint <<<"$("$CTL" status synaxis-weu-001 -o json)")/health" | tr -d '\r' | sed -n 's/^[Xx]-[Aa]pp-[Vv]ersion: //p')"

say "Retiring synaxis-eus-001: drain, then backup, quarantine, decommission, archive, purge"
t=$(date +%s%N)
run "$CTL" delete synaxis-eus-001 --skip-fleet-check
"$CTL" wait --for=deleted synaxis-eus-001 --timeout 120s
say "Deleted in $(( ($(date +%s%N) - t) / 1000000 )) ms"
run "$CTL" events synaxis-eus-001 | tail -n 12
echo "archive: $(jq -r '"\(.files | length) files, kept until \(.retainUntilMs/1000 | todate)"' "$DATA/archive/synaxis-eus-001/manifest.json")"
run "$CTL" metrics synaxis-weu-001 --period=1h

say "Autoscaling on real load: two Active stamps in two regions and one warm in standby"
run "$CTL" deploy --region eastus --stamp-id 002 --template synaxis-stamp
run "$CTL" deploy --region westeurope --stamp-id 002 --template synaxis-stamp
"$CTL" wait --for=active synaxis-eus-002 --timeout 120s >/dev/null
"$CTL" wait --for=active synaxis-weu-002 --timeout 120s >/dev/null
run "$CTL" standby synaxis-weu-002 --skip-fleet-check
"$CTL" wait --for=ready synaxis-weu-002 --timeout 60s >/dev/null
# Thresholds and durations scaled down so the demo takes a minute; the
# seed's own manifest is deploy/autoscaler/synaxis-autoscaler.yaml.
cat >"$D/autoscaler.yaml" <<'Y'
apiVersion: autoscaling.synaxis.io/v1
kind: StampAutoscaler
metadata: {name: demo}
spec:
  template: synaxis-stamp
  regions: [westeurope, eastus]
  interval: 2s
  scaleOut:
    triggers: [{metric: cpu_utilization, threshold: 8, duration: 6s}]
    cooldown: 30s
    maxStamps: 3
  scaleIn:
    triggers: [{metric: cpu_utilization, threshold: 3, duration: 10s}]
    cooldown: 10s
    minStamps: 2
  standby: {maxAge: 72h, scaleDown: {generalPool: 0, gpuPool: 0}}
Y
run "$CTL" apply -f "$D/autoscaler.yaml"
say "Load: CPU-burning requests from 32 tenants through the front door"
"$B/stamp-loadgen" --concurrency 4 --duration 90s --tenants 32 --path '/work?cpu_ms=30' "http://$FRONTDOOR" >"$D/load.txt" 2>&1 &
LOAD=$!
t=$(date +%s%N)
for _ in $(seq 120); do
  [ "$("$CTL" status synaxis-weu-002 -o json | jq -r .status.phase)" = Active ] && break
  sleep 1
done
say "Scaled out in $(( ($(date +%s%N) - t) / 1000000 )) ms: the warm stamp was activated (no cold deploy)"
run "$CTL" describe autoscaler demo
kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null || true
say "Load gone: the autoscaler drains a stamp back to warm standby once CPU stays low"
t=$(date +%s%N)
for _ in $(seq 120); do
  [ "$("$CTL" list -o json | jq '[.items[] | select(.status.phase == "Active")] | length')" = 2 ] && break
  sleep 1
done
say "Scaled in after $(( ($(date +%s%N) - t) / 1000000 )) ms"
run "$CTL" events autoscaler/demo | tail -n 6
run "$CTL" list

say "A transient namespace for batch bucket q3-close, as tenant acme"
export STAMP_TOKEN
STAMP_TOKEN=$("$CTL" token create --tenant acme --user alice --ttl 1h 2>/dev/null)
echo "(a tenant token from: stampctl token create --tenant acme --user alice --ttl 1h)"
NS=livecalc-bucket-q3-close
run "$CTL" ns create q3-close
run "$CTL" ns volume $NS results
run "$CTL" ns run-pod $NS worker-1 --volume results -- --steps 20 --interval-ms 20 --write-volume results
run "$CTL" ns run-pod $NS worker-2 -- --steps 20 --interval-ms 20 --violation "rss 912MiB > 768MiB limit"
sleep 1
run "$CTL" ns pods $NS
run "$CTL" ns logs $NS worker-2 | head -n 4

say "MTTC: a model bundle by content hash, a recorded run, then verify: the run repeated in a fresh namespace and its result hash compared"
head -c 1048576 /dev/urandom >"$D/model.bin"
run "$CTL" bundle push "$D/model.bin"
H=$(sha256sum <"$D/model.bin" | cut -d' ' -f1)
run "$CTL" ns run $NS --bundle "$H" --set scenarios=2000 --set months=60
run "$CTL" mttc verify --bucket q3-close --bundle "$H"

say "The bucket's work is done: what a reap would do, then finalize"
run "$CTL" ns reap $NS --dry-run
t=$(date +%s%N)
run "$CTL" ns finalize $NS
for _ in $(seq 100); do [ "$("$CTL" ns get $NS -o json | jq -r .status)" = reaped ] && break; sleep 0.1; done
say "Reaped in $(( ($(date +%s%N) - t) / 1000000 )) ms, diagnostics stored and verified first"
grep -E "Reaping namespace $NS|Archived logs|Indexed|Deleted namespace $NS|Successfully reaped namespace $NS" "$D/stampd.log" | sed 's/^/  stampd: /'
run "$CTL" ns get $NS
v=$("$CTL" ns get $NS -o json | jq -r '.diagnostics.blob_paths[] | select(endswith("sentinel-violations.json"))')
echo "\$ cat $DATA/blobs/diagnostics/$v"
cat "$DATA/blobs/diagnostics/$v"; echo
unset STAMP_TOKEN
run "$CTL" audit --limit 8

say "Where things stand"
run "$CTL" list
run "$CTL" get platforms
echo "what the platform's Prometheus sees now (stamps come and go from its targets with their phases):"
fleet_wait
cat <<MSG

stampd is still running (pid $(cat "$D/stampd.pid"), log $D/stampd.log) with
synaxis-weu-001 Active behind the front door on $FRONTDOOR, watched by the
platform fleet-monitoring (Prometheus on $PROM).  Try:
  export STAMP_CONFIG=$D/client.conf
  curl -H 'X-Tenant-Id: acme' http://$FRONTDOOR/work?ms=10
  curl -s '$PROM/api/v1/query?query=up' | jq -c '.data.result[] | [.metric.job, .metric.stamp, .value[1]]'
  $CTL describe platform fleet-monitoring
  $CTL status synaxis-weu-001
  $CTL drain synaxis-weu-001 --grace-period 30s
  $CTL ns list -A
Stop it all with:  scripts/demo.sh $1 stop
MSG
