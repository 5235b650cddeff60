#!/usr/bin/env bash
# make demo: stampd on the embedded defaults (SQLite, local runtime), the
# example template, two stamps in two regions, real traffic, a drain with a
# slow request in flight, reactivation, and the retirement of one stamp.
#   scripts/demo.sh BUILD_DIR        run the demo (stampd is left running)
#   scripts/demo.sh BUILD_DIR stop   retire what is left and stop stampd
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
D=$PWD/.demo
CTL=$B/stampctl
LISTEN=${STAMP_LISTEN:-127.0.0.1:7480}
export STAMP_CONFIG=$D/client.conf
T0=$(date +%s%N)

say() { printf '\n\033[1m[%6.2fs] %s\033[0m\n' "$(echo "($(date +%s%N) - $T0)/1000000000" | bc -l)" "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [ "${2:-}" = stop ]; then
  if [ -f "$D/stampd.pid" ] && kill -0 "$(cat "$D/stampd.pid")" 2>/dev/null; then
    for s in $("$CTL" list -o json | jq -r '.items[] | select(.status.phase != "Deleted") | .metadata.name'); do
      "$CTL" delete "$s" --force >/dev/null && "$CTL" wait --for=deleted "$s" --timeout 60s
    done
    kill -TERM "$(cat "$D/stampd.pid")" && rm -f "$D/stampd.pid"
    echo "stampd stopped; state kept in $D/data"
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
rm -rf "$D" && mkdir -p "$D"

say "Starting stampd (SQLite store in $D/data, API on $LISTEN)"
"$B/stampd" --data-dir "$D/data" --listen "$LISTEN" >"$D/stampd.log" 2>&1 &
echo $! >"$D/stampd.pid"
for _ in $(seq 50); do curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1 && [ -s "$STAMP_CONFIG" ] && break; sleep 0.1; done
"$B/stampd" -n --data-dir "$D/data" --listen "$LISTEN"

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

say "Sending requests: every answer names the stamp that served it"
for s in synaxis-weu-001 synaxis-eus-001; do
  ep=$("$CTL" status "$s" -o json | jq -r .status.endpoint)
  for i in 1 2 3; do
    printf '  %s -> %s' "$s" "$(curl -fsS -D - "http://$ep/work?ms=20" -o /dev/null | tr -d '\r' | grep -i '^X-Stamp-Name')"
    echo
  done
done

say "Draining synaxis-weu-001 while a 3 s request is in flight"
ep=$("$CTL" status synaxis-weu-001 -o json | jq -r .status.endpoint)
curl -sS "http://$ep/work?ms=3000" >"$D/slow.out" &
SLOW=$!
sleep 0.3
t=$(date +%s%N)
run "$CTL" drain synaxis-weu-001
sleep 0.5
run "$CTL" status synaxis-weu-001 | sed -n '1,12p'
"$CTL" wait --for=ready synaxis-weu-001 --timeout 60s
wait $SLOW
say "Drained to Ready in $(( ($(date +%s%N) - t) / 1000000 )) ms; the slow request finished: $(cat "$D/slow.out")"
run "$CTL" status synaxis-weu-001 | grep -E '^(Phase|Pools|Drain)'

say "Reactivating synaxis-weu-001 from warm standby"
t=$(date +%s%N)
run "$CTL" activate synaxis-weu-001
"$CTL" wait --for=active synaxis-weu-001 --timeout 60s
say "Active again in $(( ($(date +%s%N) - t) / 1000000 )) ms"

say "Retiring synaxis-eus-001: drain, then backup, quarantine, decommission, archive, purge"
t=$(date +%s%N)
run "$CTL" delete synaxis-eus-001
"$CTL" wait --for=deleted synaxis-eus-001 --timeout 120s
say "Deleted in $(( ($(date +%s%N) - t) / 1000000 )) ms"
run "$CTL" events synaxis-eus-001 | tail -n 12
echo "archive: $(jq -r '"\(.files | length) files, kept until \(.retainUntilMs/1000 | todate)"' "$D/data/archive/synaxis-eus-001/manifest.json")"

say "Where things stand"
run "$CTL" list
cat <<MSG

stampd is still running (pid $(cat "$D/stampd.pid"), log $D/stampd.log) with
synaxis-weu-001 Active.  Try:
  export STAMP_CONFIG=$D/client.conf
  $CTL status synaxis-weu-001
  $CTL drain synaxis-weu-001 --grace-period 30s
Stop it all with:  scripts/demo.sh $1 stop
MSG
