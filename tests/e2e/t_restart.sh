#!/usr/bin/env bash
# stampd itself: -n checks the configuration; the client config is written
# 0600; a second stampd on the same data dir is refused; SIGTERM stops stampd
# cleanly and leaves workloads running; the next stampd adopts them (no
# duplicates) and keeps serving; several stamps deploy in parallel.
TEST_NAME=restart
. "$(dirname "$0")/lib.sh"

expect_ok "-n says configuration OK" sh -c "$STAMP_BIN/stampd -n --data-dir $DATA | grep -qx 'configuration OK'"
expect_err "-n refuses a bad key" "unknown configuration key" "$STAMP_BIN/stampd" -n --data-dir "$DATA" --set nope=1
expect_err "-n refuses a bad duration" "creating-timeout" "$STAMP_BIN/stampd" -n --data-dir "$DATA" --set creating-timeout=soon
printf 'drain-total-timeout 20m\nstandby-max-age 48h\n' >"$T/stampd.conf"
expect_ok "-nv prints the file's values" sh -c "$STAMP_BIN/stampd -nv --data-dir $DATA --config $T/stampd.conf | grep -q 'standby-max-age *2d'"

start_stampd
expect_eq "client config is private" "$(stat -c %a "$STAMP_CONFIG")" 600
expect_ok "client config has endpoint and token" sh -c "grep -q '^endpoint: http://127.0.0.1:$API_PORT' $STAMP_CONFIG && grep -q '^token: ' $STAMP_CONFIG"
expect_err "second stampd refused" "another stampd is running" "$STAMP_BIN/stampd" --data-dir "$DATA" --listen 127.0.0.1:$(free_port)

apply_template
# Four stamps at once: deployed in parallel by the reconcile workers.
for r in westeurope eastus southeastasia northeurope; do
  ctl deploy --region $r --stamp-id 2 --template synaxis-stamp >/dev/null || fail "deploy $r"
done
for s in synaxis-weu-002 synaxis-eus-002 synaxis-sea-002 synaxis-neu-002; do wait_for $s active; done
expect_eq "12 processes" "$(procs synaxis-)" 12
EP=$(endpoint synaxis-weu-002)
curl -fsS "http://$EP/work?ms=5" >/dev/null || fail "serving before restart"

stop_stampd
expect_ok "stampd logged a clean stop" grep -q "workloads keep running" "$T/stampd.log"
expect_eq "workloads survive SIGTERM of stampd" "$(procs synaxis-)" 12
curl -fsS "http://$EP/work?ms=5" >/dev/null || fail "serving while stampd is down"
ok "stamp serves while stampd is down"

start_stampd
sleep 2
expect_eq "adopted, not duplicated" "$(procs synaxis-)" 12
expect_eq "still Active" "$(ctl list --state active -o json | jq '.items | length')" 4
# A replica that dies is restarted by the supervisor.
pid=$(pgrep -f "stamp-workload --port ${EP#*:} " | head -n1)
kill -9 "$pid"
wait_until "replica restarted" 10 sh -c "curl -fsS http://$EP/health"
wait_procs synaxis- 12 10
expect_ok "restart is an event" sh -c "ctl events synaxis-weu-002 | grep -q ReplicaRestarted"
for s in synaxis-weu-002 synaxis-eus-002 synaxis-sea-002 synaxis-neu-002; do ctl delete $s --force >/dev/null; done
for s in synaxis-weu-002 synaxis-eus-002 synaxis-sea-002 synaxis-neu-002; do wait_for $s deleted; done
expect_eq "all gone" "$(procs synaxis-)" 0
finish
