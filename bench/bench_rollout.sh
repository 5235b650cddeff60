#!/usr/bin/env bash
# Blue-green rotation against manual replacement (figures, not tests).  A
# real stampd with the real HAProxy front door and N stamps (N=4 default)
# of the synaxis template over westeurope and eastus, under continuous
# traffic (4 curl loops through the front door, 32 tenants):
#   rollout  stampctl rollout --to-revision 2 (maxSurge 1, maxUnavailable 0);
#   manual   the same fleet to revision 3 by hand, one stamp after the
#            other: deploy a new stamp in its region, wait Active, delete
#            the old one, wait Deleted.
# For each: the total time, the serving stamps (Active and meant to stay,
# sampled every 200 ms) at their lowest against N, the front door's
# successful requests per second (lowest 1 s bucket against the median),
# and failed requests.
# stampd runs with the e2e tests' fast timings (health-interval 100ms,
# drain-poll-interval 50ms, frontdoor-sync-interval 200ms).
# Usage: bench/bench_rollout.sh BUILD_DIR   (N=stamps, default 4)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
N=${N:-4}
SD=
BG=()
cleanup() {
  touch "$T/stop"
  for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_stampd
  rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM
now() { date +%s%3N; }
ctl() { "$CTL" "$@"; }

"$B/stampd" --data-dir "$T/data" --listen 127.0.0.1:$API --frontdoor-listen 127.0.0.1:$FDP \
  --set fleet-min-regions=2 --set port-range=32400-32599 --set health-recovery-grace=2s \
  --set stop-grace=2s --set creating-timeout=60s --set health-interval=100ms \
  --set drain-poll-interval=50ms --set frontdoor-sync-interval=200ms >"$T/stampd.log" 2>&1 &
SD=$!
wait_api
ctl apply -f "$SRC/deploy/templates/synaxis-stamp.yaml" >/dev/null
regions=(westeurope eastus)
for i in $(seq "$N"); do
  ctl deploy --region "${regions[$((i % 2))]}" --stamp-id "$i" --template synaxis-stamp >/dev/null
done
serving() {
  ctl list -o json 2>/dev/null | jq '[.items[] | select(.status.phase == "Active" and (.spec.desired // "active") == "active")] | length'
}
for _ in $(seq 600); do [ "$(serving)" = "$N" ] && break; sleep 0.2; done
[ "$(serving)" = "$N" ] || { echo "the $N stamps did not come up" >&2; exit 1; }

traffic() {
  local i=0 out
  while [ ! -f "$T/stop" ]; do
    out=$(curl -sS -m 20 -o /dev/null -w '%{http_code}' -H "X-Tenant-Id: t$(( (i * 4 + $1) % 32 ))" \
      "http://127.0.0.1:$FDP/work?ms=10" 2>/dev/null) || out=000
    echo "$(now) $out" >>"$T/traffic.$1"
    i=$((i + 1))
  done
}
sampler() {
  while [ ! -f "$T/stop" ]; do
    s=$(serving) && echo "$(now) $s" >>"$T/fleet"
    sleep 0.2
  done
}
for w in 0 1 2 3; do traffic $w & BG+=($!); done
sampler & BG+=($!)
sleep 3

# figures WHAT START_MS END_MS
figures() {
  cat "$T"/traffic.* | awk -v a="$2" -v b="$3" '$1 >= a && $1 <= b' >"$T/window"
  local low fails ok_rates median lowrate
  low=$(awk -v a="$2" -v b="$3" '$1 >= a && $1 <= b { if (m == "" || $2 < m) m = $2 } END { print m }' "$T/fleet")
  fails=$(awk '$2 != 200' "$T/window" | wc -l)
  # whole seconds inside the window only (the partial first and last would read as dips)
  ok_rates=$(awk -v a="$2" -v b="$3" 'BEGIN { lo = int(a / 1000) + 1; hi = int(b / 1000) - 1; for (s = lo; s <= hi; s++) c[s] = 0 }
    $2 == 200 { s = int($1 / 1000); if (s in c) c[s]++ } END { for (s in c) print c[s] }' "$T/window" | sort -n)
  median=$(echo "$ok_rates" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  lowrate=$(echo "$ok_rates" | head -n1)
  printf '%-8s %3d stamps in %6.1f s   serving stamps: lowest %s of %d   ok requests/s: lowest %s, median %s   failed: %d of %d\n' \
    "$1" "$N" "$(echo "($3 - $2) / 1000" | bc -l)" "$low" "$N" "$lowrate" "$median" "$fails" "$(wc -l <"$T/window")"
}

# rollout to revision 2
sed 's/service bus topics for/service bus topics (rev2) for/' "$SRC/deploy/templates/synaxis-stamp.yaml" >"$T/rev2.yaml"
ctl apply -f "$T/rev2.yaml" >/dev/null
t0=$(now)
ctl rollout --template synaxis-stamp --to-revision 2 >/dev/null
for _ in $(seq 3000); do
  [ "$(ctl rollout status synaxis-stamp-rev2 -o json | jq -r .status.phase)" = Complete ] && break
  sleep 0.2
done
t1=$(now)
sleep 2
figures rollout "$t0" "$t1"

# manual replacements to revision 3
sed 's/service bus topics for/service bus topics (rev3) for/' "$SRC/deploy/templates/synaxis-stamp.yaml" >"$T/rev3.yaml"
ctl apply -f "$T/rev3.yaml" >/dev/null
t0=$(now)
next=100
for old in $(ctl list -o json | jq -r '.items[] | select(.status.phase == "Active") | .metadata.name'); do
  region=$(ctl status "$old" -o json | jq -r .spec.region)
  name=$(ctl deploy --region "$region" --stamp-id $next --template synaxis-stamp -o json | jq -r .metadata.name)
  next=$((next + 1))
  ctl wait --for=active "$name" --timeout 120s >/dev/null
  ctl delete "$old" >/dev/null
  ctl wait --for=deleted "$old" --timeout 120s >/dev/null
done
t1=$(now)
figures manual "$t0" "$t1"
