#!/usr/bin/env bash
# kill -9 of stampd in the middle of reaps, at different moments: after each
# crash, a namespace whose directory is gone must already have its
# diagnostics stored whole; after the restart every namespace converges to
# reaped exactly once, with one archive (the same paths, not a second copy),
# the logs byte for byte, and no pod process left.
TEST_NAME=ns-crash
. "$(dirname "$0")/lib.sh"

ARGS=("${NS_ARGS[@]}" --set reap-interval=500ms --set reap-retry-initial=200ms --set reap-retry-max=1s)
start_stampd "${ARGS[@]}"
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token acme carol)
BLOBS=$DATA/blobs/diagnostics
DELAYS=(0.01 0.06 0.12 0.18 0.25 0.32 0.45 0.7)
ROUNDS=${#DELAYS[@]}

for r in $(seq 1 $ROUNDS); do
  NS=livecalc-bucket-crash-$r
  ctl ns create crash-$r >/dev/null || fail "create $r"
  # Three big finished logs (about 8 MB each) and one pod still running.
  for p in a b c; do
    ctl ns run-pod $NS big-$p -- --steps 100000 --interval-ms 0 >/dev/null || fail "pod $p"
  done
  ctl ns run-pod $NS live -- --forever --interval-ms 20 >/dev/null || fail "pod live"
  wait_until "big pods done ($r)" 60 sh -c "[ \"\$(ctl ns pods $NS -o json | jq '[.pods[] | select(.phase == \"Succeeded\")] | length')\" = 3 ]"
  for p in a b c; do ctl ns logs $NS big-$p --limit-bytes 67108864 >"$T/$r-$p.log"; done
  ctl ns finalize $NS >/dev/null || fail "finalize $r"
  # A different moment each round, from the start of the reap to past its
  # end (a reap of these ~25 MB takes a few hundred ms), with some jitter.
  sleep "$(echo "${DELAYS[$((r - 1))]} + $((RANDOM % 30)) / 1000" | bc -l)"
  crash_stampd
  # The rule that must hold at any crash point: no namespace directory is
  # deleted before its logs are stored whole.
  if [ ! -d "$DATA/namespaces/$NS" ]; then
    for p in a b c; do
      f=$(ls "$BLOBS"/acme/crash-$r/*/logs/big-$p.log 2>/dev/null | head -n 1)
      [ -n "$f" ] && cmp -s "$T/$r-$p.log" "$f" || fail "round $r: namespace gone but big-$p's log is not archived whole"
    done
    log "round $r: crashed after the delete"
  else
    log "round $r: crashed with the namespace still there"
  fi
  start_stampd "${ARGS[@]}"
  wait_ns $NS reaped 60
done
ok "every crashed reap converged to reaped"

for r in $(seq 1 $ROUNDS); do
  NS=livecalc-bucket-crash-$r
  dirs=$(ls -d "$BLOBS"/acme/crash-$r/*/ | wc -l)
  expect_eq "round $r: one archive, not two" "$dirs" 1
  for p in a b c; do
    f=$(ls "$BLOBS"/acme/crash-$r/*/logs/big-$p.log)
    cmp -s "$T/$r-$p.log" "$f" || fail "round $r: big-$p log differs"
  done
  [ -f "$(ls -d "$BLOBS"/acme/crash-$r/*/)logs/live.log" ] || fail "round $r: running pod's log not archived"
  expect_eq "round $r: reaped once" "$(grep -c "Successfully reaped namespace $NS\$" "$T/stampd.log")" 1
  [ ! -e "$DATA/namespaces/$NS" ] || fail "round $r: namespace directory left"
  expect_eq "round $r: pods gone" "$(procs "ns/$NS/")" 0
  ctl ns get $NS -o json >"$T/g.json"
  for i in $(jq -r '.diagnostics.files | keys[]' "$T/g.json"); do
    p=$(jq -r ".diagnostics.files[$i].path" "$T/g.json")
    [ "$(sha256sum <"$BLOBS/$p" | cut -d' ' -f1)" = "$(jq -r ".diagnostics.files[$i].sha256" "$T/g.json")" ] ||
      fail "round $r: recorded sha of $p does not match the blob"
  done
done
ok "archives whole, recorded checksums match"
expect_eq "no stray namespace directories" "$(ls "$DATA/namespaces" 2>/dev/null | wc -l)" 0
finish
