#!/usr/bin/env bash
# stamp-workload under real load, started directly (no stampd): /work's
# cpu_ms burns the process's CPU, more concurrent requests than workers
# queue (the latency histogram shows requests that waited) and past the
# queue get 503, jobs fill the job queue, are refused past it and drain;
# /metrics keeps every series drains and health checks read and passes
# `promtool check metrics`.  stamp-loadgen drives the concurrency.
# Assertions are properties of the queueing, never timings of this machine.
TEST_NAME=workload_load
. "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || fail "promtool missing (scripts/install-deps.sh test installs the prometheus package)"
WL=$STAMP_BIN/stamp-workload
LG=$STAMP_BIN/stamp-loadgen
WPID=
stop_workload() { [ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null; WPID=; }
trap 'stop_workload; crash_stampd; kill_owned; stop_azurite' EXIT

# One worker with room for 7 waiting; two job workers with a queue of 20.
start_workload() {
  for _ in 1 2 3 4 5; do
    P=$(free_port)
    "$WL" --port "$P" --name wl-load --workers 1 --queue 7 --job-workers 2 --job-queue 20 \
      >"$T/workload.log" 2>&1 &
    WPID=$!
    for _ in $(seq 50); do
      curl -fsS -o /dev/null "http://127.0.0.1:$P/health" 2>/dev/null && return 0
      kill -0 "$WPID" 2>/dev/null || break
      sleep 0.1
    done
    stop_workload # the port was taken meanwhile: another one
  done
  fail "stamp-workload did not start: $(tail -n 3 "$T/workload.log")"
}
U() { echo "http://127.0.0.1:$P$1"; }
metric() { curl -fsS "$(U /metrics)" | awk -v n="$1" '$1 == n { print $2 }'; }
# Requests observed above 100 ms so far: +Inf minus the le="0.1" bucket.
slow_count() {
  curl -fsS "$(U /metrics)" | awk '
    $1 == "stamp_workload_request_duration_seconds_bucket{le=\"0.1\"}" { le = $2 }
    $1 == "stamp_workload_request_duration_seconds_bucket{le=\"+Inf\"}" { inf = $2 }
    END { print inf - le }'
}
# CPU the process has used (user time), in ms, from /proc.
utime_ms() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print int($12 * 1000 / hz) }' "/proc/$WPID/stat"; }

expect_ok "--help lists the pool flags" sh -c "'$WL' --help | grep -q -- '--job-workers'"
expect_err "a bad --workers is refused" "--workers must be" "$WL" --port 1 --workers 0
start_workload

# 1. Every series drains and health checks read today, with HELP and TYPE;
#    the new ones; promtool accepts the whole answer.
curl -fsS "$(U /metrics)" >"$T/m0" || fail "metrics"
for s in active_connections inflight_requests active_jobs requests_total jobs_total \
  data_latency_seconds uptime_seconds queue_depth job_capacity request_duration_seconds; do
  expect_ok "series stamp_workload_$s with HELP and TYPE" sh -c \
    "grep -q '^# HELP stamp_workload_$s ' '$T/m0' && grep -q '^# TYPE stamp_workload_$s ' '$T/m0'"
done
expect_eq "job capacity is --job-workers" "$(metric stamp_workload_job_capacity)" 2
expect_ok "promtool check metrics (idle)" promtool check metrics <"$T/m0"

# 2. cpu_ms burns CPU: user time grows by at least half of what was asked;
#    a request that only waits does not.
expect_eq "cpu_ms out of range is refused" \
  "$(curl -sS -o /dev/null -w '%{http_code}' "$(U '/work?cpu_ms=10001')")" 400
expect_eq "a bad cpu_ms is refused" "$(curl -sS -o /dev/null -w '%{http_code}' "$(U '/work?cpu_ms=x')")" 400
u0=$(utime_ms)
body=$(curl -fsS "$(U '/work?cpu_ms=1000')") || fail "cpu request"
u1=$(utime_ms)
expect_eq "the answer says what it burned" "$body" "done 0ms cpu 1000ms by wl-load"
expect_ok "user time grew by >= 500 ms (grew $((u1 - u0)) ms)" test $((u1 - u0)) -ge 500
curl -fsS -o /dev/null "$(U '/work?ms=500')" || fail "wait request"
u2=$(utime_ms)
expect_ok "a 500 ms wait used < 250 ms of CPU (used $((u2 - u1)) ms)" test $((u2 - u1)) -lt 250

# 3. 8 requests of 50 ms always in flight on 1 worker: each new one queues
#    behind the 7 others, so requests take >= 100 ms (they wait ~350 ms);
#    8 = 1 running + 7 waiting fits the queue, so none is refused.
s0=$(slow_count)
"$LG" --concurrency 8 --duration 1s --path '/work?ms=50' -o json "$(U '')" >"$T/lg.json" ||
  fail "loadgen: $(cat "$T/lg.json")"
s1=$(slow_count)
n=$(jq -r .requests "$T/lg.json")
expect_ok "loadgen sent more than 8 requests ($n)" test "$n" -gt 8
expect_eq "none refused: 8 fit 1 worker + 7 queued" "$(jq -r .errors "$T/lg.json")" 0
expect_ok "histogram: $((s1 - s0)) requests took > 100 ms" test $((s1 - s0)) -ge 1
expect_ok "loadgen's own p99 is >= 100 ms ($(jq -r .latencyMs.p99 "$T/lg.json"))" \
  jq -e '.latencyMs.p99 >= 100' "$T/lg.json"
expect_ok "promtool check metrics (after load)" sh -c "curl -fsS '$(U /metrics)' | promtool check metrics"

# 4. Past the queue: one long request holds the worker, 7 wait, the 9th is
#    refused at once with 503 and counted.
curl -sS -o /dev/null "$(U '/work?ms=4000')" &
LONG=$!
wait_until "the worker is busy" 5 sh -c "[ \"\$(curl -fsS '$(U /metrics)' | awk '\$1 == \"stamp_workload_busy_workers\" {print \$2}')\" = 1 ]"
QPIDS=()
for _ in 1 2 3 4 5 6 7; do
  curl -sS -o /dev/null "$(U '/work?ms=0')" &
  QPIDS+=($!)
done
wait_until "7 requests queued" 5 sh -c "[ \"\$(curl -fsS '$(U /metrics)' | awk '\$1 == \"stamp_workload_request_queue_depth\" {print \$2}')\" = 7 ]"
r0=$(metric stamp_workload_rejected_requests_total)
expect_eq "the 9th is refused" "$(curl -sS -o /dev/null -w '%{http_code}' "$(U '/work?ms=0')")" 503
expect_eq "and counted" "$(metric stamp_workload_rejected_requests_total)" $((r0 + 1))
expect_eq "probes still answer while the queue is full" \
  "$(curl -sS -o /dev/null -w '%{http_code}' "$(U /health)")" 200
wait "$LONG" "${QPIDS[@]}"
expect_eq "queue empty again" "$(metric stamp_workload_request_queue_depth)" 0

# 5. Jobs: two long ones hold both job workers; 20 short ones fill the
#    queue; one more is refused (all or none); then everything drains.
curl -fsS -o /dev/null "$(U '/jobs?n=2&ms=3000')" || fail "long jobs"
wait_until "both job workers busy" 5 sh -c "[ \"\$(curl -fsS '$(U /metrics)' | awk '\$1 == \"stamp_workload_active_jobs\" {print \$2}')\" = 2 ]"
expect_eq "20 short jobs accepted" "$(curl -sS -o /dev/null -w '%{http_code}' "$(U '/jobs?n=20&ms=100')")" 202
expect_eq "queue depth 20" "$(metric stamp_workload_queue_depth)" 20
expect_eq "active jobs stay at capacity" "$(metric stamp_workload_active_jobs)" 2
expect_eq "one more does not fit" "$(curl -sS -o /dev/null -w '%{http_code}' "$(U '/job?ms=0')")" 503
expect_eq "refused job counted" "$(metric stamp_workload_rejected_jobs_total)" 1
expect_eq "n past the queue's size is a bad request" \
  "$(curl -sS -o /dev/null -w '%{http_code}' "$(U '/jobs?n=21')")" 400
peak=0
end=$(($(date +%s) + 20))
while :; do
  q=$(metric stamp_workload_queue_depth) a=$(metric stamp_workload_active_jobs)
  [ "$a" -gt "$peak" ] && peak=$a
  [ "$q" = 0 ] && [ "$a" = 0 ] && break
  [ "$(date +%s)" -lt "$end" ] || fail "jobs did not drain: queue $q, active $a"
  sleep 0.1
done
expect_ok "never more jobs running than capacity (peak $peak)" test "$peak" -le 2
expect_eq "all 22 jobs ran" "$(metric stamp_workload_jobs_completed_total)" 22
expect_ok "promtool check metrics (after jobs)" sh -c "curl -fsS '$(U /metrics)' | promtool check metrics"

# 6. A rate is held, never exceeded: 40 req/s ramped over 0.5 s for 1 s is
#    at most 40 * 0.25 + 40 * 0.5 = 30 requests.
"$LG" --rate 40 --ramp 500ms --duration 1s --path '/work?ms=0' --header 'X-Tenant-Id: t1' -o json "$(U '')" \
  >"$T/rate.json" || fail "loadgen rate: $(cat "$T/rate.json")"
expect_ok "rate mode sent 1..30 requests ($(jq -r .requests "$T/rate.json"))" \
  jq -e '.requests >= 1 and .requests <= 30 and .errors == 0' "$T/rate.json"

# 7. SIGTERM: a clean stop.
kill -TERM "$WPID"
rc=0
wait "$WPID" || rc=$?
WPID=
expect_eq "SIGTERM stops it cleanly" "$rc" 0
finish
