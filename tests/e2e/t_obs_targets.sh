#!/usr/bin/env bash
# The Prometheus file_sd files stampd writes (obs/targets.h) follow the
# stamps' phases: two deployed stamps are in stamps.json (the same body as
# GET /v1/prometheus/targets) and in stamps-health.json (their replicas'
# health URLs, which answer); a drained stamp leaves both and comes back
# when activated again; a deleted one leaves for good.  Both files are
# arrays of {targets, labels} that promtool accepts behind file_sd_configs
# (with the blackbox exporter's relabelling).  A file is not rewritten when
# nothing changed.  After kill -9 of stampd, with the files damaged, removed
# and a temporary left behind, the restarted stampd writes them right again.
TEST_NAME=obs_targets
. "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || fail "promtool missing (scripts/install-deps.sh test installs it)"
SD=$T/sd
M=$SD/stamps.json
H=$SD/stamps-health.json
STAMPD_ARGS=(--set "prometheus-sd-dir=$SD")
start_stampd
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
[ -n "$TOKEN" ] || fail "operator token in $STAMP_CONFIG"

# stamps in a file, sorted and space-separated
stamps_in() { jq -r '[.[].labels.stamp] | unique | join(" ")' "$1" 2>/dev/null; }
has_stamps() { [ "$(stamps_in "$1")" = "$2" ]; }
# stamps.json holds exactly what the API answers now
same_as_api() {
  [ "$(api GET /v1/prometheus/targets)" = 200 ] || return 1
  [ "$(jq -S . "$T/body")" = "$(jq -S . "$M")" ]
}
shape_ok() {
  jq -e 'type == "array" and all(.[]; (keys == ["labels", "targets"]) and (.targets | type == "array" and length > 0
         and all(.[]; type == "string")) and (.labels | type == "object" and all(.[]; type == "string")))' "$1" >/dev/null
}

wait_until "both files written at start" 10 sh -c "[ -f '$M' ] && [ -f '$H' ]"
expect_eq "no stamps: stamps.json is []" "$(jq -c . "$M")" "[]"
expect_eq "no stamps: stamps-health.json is []" "$(jq -c . "$H")" "[]"
expect_eq "the dir is 0755" "$(stat -c %a "$SD")" 755

apply_template
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy weu"
ctl deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy eus"
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
BOTH="synaxis-eus-001 synaxis-weu-001"
wait_until "both stamps in stamps.json" 20 has_stamps "$M" "$BOTH"
wait_until "both stamps in stamps-health.json" 20 has_stamps "$H" "$BOTH"
wait_until "stamps.json is the API's body" 20 same_as_api
ok "stamps.json lists both stamps, as GET /v1/prometheus/targets does"
expect_ok "stamps.json: an array of {targets, labels}" shape_ok "$M"
expect_ok "stamps-health.json: an array of {targets, labels}" shape_ok "$H"
expect_ok "health labels: stamp, region, template, pool, step (no metrics path)" \
  jq -e 'all(.[]; .labels | keys == ["pool", "region", "stamp", "step", "template"])' "$H"
expect_eq "health regions" "$(jq -r '[.[].labels | "\(.stamp)=\(.region)"] | unique | join(" ")' "$H")" \
  "synaxis-eus-001=eastus synaxis-weu-001=westeurope"
expect_ok "health targets are http://127.0.0.1:PORT/health" \
  jq -e '[.[].targets[]] | length >= 2 and all(.[]; test("^http://127\\.0\\.0\\.1:[0-9]+/health$"))' "$H"
expect_ok "every health URL answers 200" sh -c "for u in \$(jq -r '.[].targets[]' '$H'); do curl -fsS -o /dev/null \"\$u\" || exit 1; done"
ep=$(endpoint synaxis-weu-001)
expect_ok "the endpoint replica's health URL is listed" \
  jq -e --arg u "http://$ep/health" '[.[] | select(.labels.stamp == "synaxis-weu-001") | .targets[]] | index($u) != null' "$H"
expect_eq "no temporary files left" "$(find "$SD" -name '*.tmp.*' | wc -l)" 0

# promtool reads the files behind file_sd_configs (the blackbox job
# relabels each URL into the probe's target parameter).
cat >"$T/prometheus.yml" <<EOF
global: {scrape_interval: 5s}
scrape_configs:
  - job_name: stamps
    file_sd_configs: [{files: ["$M"]}]
  - job_name: stamp-health
    metrics_path: /probe
    params: {module: [http_2xx]}
    file_sd_configs: [{files: ["$H"]}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
      - {source_labels: [__param_target], target_label: instance}
      - {target_label: __address__, replacement: "127.0.0.1:9115"}
EOF
if out=$(promtool check config "$T/prometheus.yml" 2>&1); then ok "promtool check config accepts the file_sd files"
else fail "promtool check config: $out"; fi
# promtool does check the files: a broken one is refused.
echo '[{"targets": "not-a-list"}]' >"$T/broken.json"
sed "s|$M|$T/broken.json|" "$T/prometheus.yml" >"$T/prometheus-broken.yml"
expect_err "promtool refuses a broken file_sd file" "broken.json" promtool check config "$T/prometheus-broken.yml"

# Unchanged targets: the files are not replaced (a rename gives a new inode).
ino_m=$(stat -c %i "$M") ino_h=$(stat -c %i "$H")
sleep 1 # five front door ticks (frontdoor-sync-interval=200ms)
expect_eq "stamps.json not rewritten while unchanged" "$(stat -c %i "$M")" "$ino_m"
expect_eq "stamps-health.json not rewritten while unchanged" "$(stat -c %i "$H")" "$ino_h"

# A drain takes a stamp out of both; an activation brings it back.
ctl drain synaxis-weu-001 >/dev/null || fail "drain weu"
wait_for synaxis-weu-001 ready
wait_until "drained stamp leaves stamps.json" 20 has_stamps "$M" "synaxis-eus-001"
wait_until "drained stamp leaves stamps-health.json" 20 has_stamps "$H" "synaxis-eus-001"
ok "a drained stamp leaves both files"
wait_until "stamps.json is the API's body after the drain" 20 same_as_api
ctl activate synaxis-weu-001 >/dev/null || fail "activate weu"
wait_for synaxis-weu-001 active
wait_until "activated stamp back in stamps.json" 20 has_stamps "$M" "$BOTH"
wait_until "activated stamp back in stamps-health.json" 20 has_stamps "$H" "$BOTH"
ok "an activated stamp comes back in both files"

# A deleted stamp leaves for good.
ctl delete synaxis-eus-001 >/dev/null || fail "delete eus"
wait_until "deleted stamp leaves stamps.json" 60 has_stamps "$M" "synaxis-weu-001"
wait_until "deleted stamp leaves stamps-health.json" 60 has_stamps "$H" "synaxis-weu-001"
ok "a deleted stamp leaves both files"

# kill -9, the files damaged behind stampd's back: the next stampd compares
# with what is on disk and writes them right; a crash's temporary goes.
crash_stampd
echo '[{"targets": ["127.0.0.1:1"], "labels": {"stamp": "ghost"}}]' >"$M"
rm -f "$H"
echo 'half a fi' >"$SD/stamps.json.tmp.AbC123"
start_stampd
wait_until "stamps.json rewritten after the restart" 20 has_stamps "$M" "synaxis-weu-001"
wait_until "stamps-health.json rewritten after the restart" 20 has_stamps "$H" "synaxis-weu-001"
wait_until "stamps.json is the API's body after the restart" 20 same_as_api
ok "after kill -9 the restarted stampd writes both files right"
expect_ok "stamps-health.json well formed after the restart" shape_ok "$H"
expect_eq "the crash's temporary file is removed" "$(find "$SD" -name '*.tmp.*' | wc -l)" 0

finish
