#!/usr/bin/env bash
# A tenant's pod is confined (DESIGN.md, "Tenancy and confinement").  The
# operator sets pod-command=/bin/sh, so a tenant's args are any shell code:
# the strongest attacker.  Loader, libc, shell and interpreter variables are
# refused (400, naming the variable, nothing started); from inside a pod the
# store, another namespace's pod log, another tenant's bundle blob and
# stampd's /proc environ cannot be read; the pod does not see stampd's
# environment; it runs as the pod user when stampd is root, with rlimits.
TEST_NAME=ns-confine
. "$(dirname "$0")/lib.sh"

# A canary in stampd's environment that no pod may see.
export STAMP_E2E_CANARY=canary-7f3a91 E2E_SECRET_TOKEN=canary-secret-5b2e
start_stampd --set pod-command=/bin/sh --set "pipeline-command=$STAMP_BIN/stamp-pipeline" \
  --set pod-memory-max=1073741824 --set pod-files-max=200 --set pod-procs-max=300 \
  --set pod-file-size-max=104857600 --set pod-cpu-max=60s
unset STAMP_E2E_CANARY E2E_SECRET_TOKEN
export STAMP_TOKEN
STAMP_TOKEN=$(tenant_token beta bob)

# ---- another tenant's secrets to aim at: a namespace with a pod log, a bundle ----
ctl ns create other >/dev/null || fail "ns other"
OTHER=livecalc-bucket-other
ctl ns run-pod $OTHER secret-pod -- -c 'echo beta-secret-4411' >/dev/null || fail "beta pod"
head -c 5000 /dev/urandom >"$T/beta-model.bin"
BH=$(ctl bundle push "$T/beta-model.bin" -o json | jq -r .hash)
BUNDLE=$DATA/blobs/bundles/beta/$BH
[ -f "$BUNDLE" ] || fail "beta's bundle is not at $BUNDLE"
wait_until "beta pod done" 20 sh -c "[ \"\$(ctl ns pods $OTHER -o json | jq -r '.pods[0].phase')\" = Succeeded ]"
OTHER_LOG=$DATA/namespaces/$OTHER/pods/secret-pod/log
expect_ok "beta's log holds its secret" grep -q beta-secret-4411 "$OTHER_LOG"
# A running pod of beta's with a secret in its environment: all pods share
# the pod user, so only Landlock keeps another pod out of its /proc files.
ctl ns run-pod $OTHER victim --env BETA_TOKEN=beta-token-9931 -- -c 'echo victim up; exec sleep 60' >/dev/null || fail "victim pod"
wait_until "victim runs" 20 sh -c "ctl ns logs $OTHER victim | grep -q 'victim up'"
VPID=$(pgrep -P "$(ctl ns pods $OTHER -o json | jq -r '.pods[] | select(.name == "victim") | .pid')" | head -n 1)
[ -n "$VPID" ] || fail "no victim process"
expect_ok "the victim's environ holds the token" grep -qa beta-token-9931 "/proc/$VPID/environ"

STAMP_TOKEN=$(tenant_token acme alice)
TOKEN=$STAMP_TOKEN
ctl ns create box >/dev/null || fail "ns box"
NS=livecalc-bucket-box
ctl ns volume $NS results >/dev/null || fail volume

# ---- refused variables: 400 naming the variable, nothing started ----
for kv in LD_PRELOAD=/tmp/x.so LD_AUDIT=/tmp/a.so LD_LIBRARY_PATH=/tmp GCONV_PATH=/tmp \
  BASH_ENV=/tmp/rc PATH=/tmp ENV=/tmp/rc GLIBC_TUNABLES=x PYTHONPATH=/tmp NODE_OPTIONS=--require=x \
  STAMP_POD=x LC_ALL=/tmp/l MALLOC_CHECK_=3 IFS=x; do
  name=${kv%%=*}
  code=$(api POST /v1/platform/namespaces/$NS/pods -H 'Content-Type: application/json' \
    -d "{\"name\":\"evil\",\"args\":[\"-c\",\"echo started\"],\"env\":{\"$name\":\"${kv#*=}\"}}")
  expect_eq "env $name refused" "$code" 400
  expect_ok "the refusal names $name" grep -q "env.$name" "$T/body"
done
expect_eq "lowercase env name refused" "$(api POST /v1/platform/namespaces/$NS/pods -H 'Content-Type: application/json' \
  -d '{"name":"evil","args":["-c","true"],"env":{"ld_preload":"/x"}}')" 400
expect_err "stampctl shows the refusal" "LD_PRELOAD" ctl ns run-pod $NS evil --env LD_PRELOAD=/tmp/x.so -- -c 'echo started'
[ ! -e "$DATA/namespaces/$NS/pods/evil" ] || fail "a refused pod left a directory"
expect_eq "no pod started" "$(ctl ns pods $NS -o json | jq '.pods | length')" 0
expect_eq "a plain variable is fine" "$(api POST /v1/platform/namespaces/$NS/pods -H 'Content-Type: application/json' \
  -d '{"name":"ok-env","args":["-c","echo MYVAR=$MY_VAR"],"env":{"MY_VAR":"hello"}}')" 201

# ---- from inside a pod ----
# Files any user may read, outside the pod's view: only Landlock keeps
# them out (the pod user's permissions would allow them).
echo world >"$T/world.txt" && chmod 0644 "$T/world.txt"
echo world >"/tmp/stamp-confine-$$.txt" && chmod 0644 "/tmp/stamp-confine-$$.txt"
STAMPD_PID_NOW=$STAMPD_PID
# try NAME PATH: prints "DENIED NAME: <error>" or "LEAK NAME".
cat >"$T/probe.sh" <<EOF
try() { if cat "\$2" >/dev/null 2>"\$HOME/err"; then echo "LEAK \$1"; else echo "DENIED \$1: \$(cat "\$HOME/err")"; fi; }
echo "uid=\$(id -u)"
try store "$DATA/stamp.db"
try store-wal "$DATA/stamp.db-wal"
try store-rel ../../../../../stamp.db
try other-log "$OTHER_LOG"
try other-bundle "$BUNDLE"
try other-bundle-rel "../../../../../blobs/bundles/beta/$BH"
try stampd-environ /proc/$STAMPD_PID_NOW/environ
try other-pod-environ /proc/$VPID/environ
try other-pod-cwd /proc/$VPID/cwd/../spec.json
try stampd-lock "$DATA/stampd.lock"
try client-conf "$T/client.conf"
try world-readable "$T/world.txt"
try tmp-file "/tmp/stamp-confine-$$.txt"
if ls "$DATA" >/dev/null 2>"\$HOME/err"; then echo "LEAK list-data"; else echo "DENIED list-data: \$(cat "\$HOME/err")"; fi
if ( echo x >"$DATA/namespaces/$OTHER/pods/secret-pod/planted" ) 2>"\$HOME/err"; then echo "LEAK write-other"; else echo "DENIED write-other: \$(cat "\$HOME/err")"; fi
if ln -s "$DATA/stamp.db" "\$STAMP_ANNOTATIONS_DIR/leak" 2>"\$HOME/err"; then echo "LEAK symlink"; else echo "DENIED symlink: \$(cat "\$HOME/err")"; fi
if command -v python3 >/dev/null; then
  python3 -c 'import socket,sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print("LEAK admin-socket")
except OSError as e: print("DENIED admin-socket:", e)' "$DATA/frontdoor/admin.sock"
fi
echo "own volume: \$(echo data >"\$STAMP_VOLUME_RESULTS/f" && cat "\$STAMP_VOLUME_RESULTS/f")"
echo "own annotation: \$(echo v1 >"\$STAMP_ANNOTATIONS_DIR/probe" && echo written)"
echo "home: \$(echo h >"\$HOME/h" && cat "\$HOME/h")"
echo "ENV-BEGIN"; env | sort; echo "ENV-END"
EOF
# Too long for one argument: the tenant's script comes in its volume.
cp "$T/probe.sh" "$DATA/volumes/$NS/results/probe.sh"
ctl ns run-pod $NS probe --volume results -- -c '. "$STAMP_VOLUME_RESULTS/probe.sh"' >/dev/null || fail "probe pod"
wait_until "probe done" 20 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"probe\") | .phase')\" = Succeeded ]"
ctl ns logs $NS probe >"$T/probe.log"
log "probe log: $(tr '\n' '|' <"$T/probe.log" | head -c 1500)"
for what in store store-wal store-rel other-log other-bundle other-bundle-rel stampd-environ stampd-lock \
  other-pod-environ other-pod-cwd \
  client-conf world-readable tmp-file list-data write-other symlink; do
  expect_ok "pod cannot: $what" grep -q "^DENIED $what: .*\(Permission denied\|No such file\|Operation not permitted\)" "$T/probe.log"
  expect_ok "no leak: $what" sh -c "! grep -q '^LEAK $what' '$T/probe.log'"
done
# Landlock does not cover connecting to a socket by its path: no unix
# sockets for pods (seccomp), so HAProxy's admin socket stays out of reach.
if command -v python3 >/dev/null; then
  expect_ok "pod cannot reach the HAProxy admin socket" grep -q "^DENIED admin-socket: .*Permission denied" "$T/probe.log"
fi
expect_ok "pod writes its volume" grep -qx "own volume: data" "$T/probe.log"
expect_ok "pod writes its annotations" grep -qx "own annotation: written" "$T/probe.log"
expect_ok "pod writes its home" grep -qx "home: h" "$T/probe.log"
expect_eq "annotation read back" "$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "probe") | .annotations.probe')" v1
sed -n '/^ENV-BEGIN$/,/^ENV-END$/p' "$T/probe.log" >"$T/probe.env"
expect_ok "no stampd canary in the pod's env" sh -c "! grep -q 'canary-' '$T/probe.env'"
expect_ok "the pod's PATH is stamp's" grep -qx "PATH=/usr/local/bin:/usr/bin:/bin" "$T/probe.env"
expect_ok "the pod's LANG" grep -qx "LANG=C.UTF-8" "$T/probe.env"
expect_ok "the pod knows its namespace" grep -qx "STAMP_NAMESPACE=$NS" "$T/probe.env"
expect_ok "the volume variable" grep -q "^STAMP_VOLUME_RESULTS=" "$T/probe.env"
n=$(grep -cv '^ENV-\|^STAMP\|^PATH=\|^HOME=\|^TMPDIR=\|^LANG=\|^PWD=\|^SHLVL=\|^_=\|^OLDPWD=' "$T/probe.env")
expect_eq "nothing else in the pod's env" "$n" 0
if [ "$(id -u)" -eq 0 ]; then
  expect_eq "pod runs as the pod user" "$(sed -n 's/^uid=//p' "$T/probe.log")" "$(id -u stamp-pod)"
else
  expect_eq "pod runs as stampd's user" "$(sed -n 's/^uid=//p' "$T/probe.log")" "$(id -u)"
fi
[ ! -e "$DATA/namespaces/$OTHER/pods/secret-pod/planted" ] || fail "a pod planted a file in another namespace"

rm -f "/tmp/stamp-confine-$$.txt"

# ---- what a shell cannot try: a program of the tenant's ----
# No TCP port may be bound (a pod squatting stampd's API port while it
# restarts would be handed the operator's token), no io_uring (it makes
# sockets without socket()), no unix socket by its path.
SQUAT=$(free_port)
ctl ns run-pod $NS prober -- -c "P=$STAMP_BIN/stamp-pod-probe; \$P bind $SQUAT; \$P uring; \$P unix $DATA/frontdoor/admin.sock" >/dev/null || fail prober
wait_until "prober done" 20 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"prober\") | .phase')\" = Succeeded ]"
ctl ns logs $NS prober >"$T/prober.log"
log "prober: $(tr '\n' '|' <"$T/prober.log")"
expect_ok "pod cannot bind a TCP port" grep -q "^DENIED bind: Permission denied" "$T/prober.log"
expect_ok "pod cannot use io_uring" grep -q "^DENIED io_uring: Operation not permitted" "$T/prober.log"
expect_ok "pod cannot connect to the HAProxy admin socket" grep -q "^DENIED unix: Permission denied" "$T/prober.log"

# ---- a pod with thousands of annotations: the listing shows a bounded part ----
ctl ns run-pod $NS many -- -c 'i=0; while [ $i -lt 300 ]; do printf "v%d" $i >"$STAMP_ANNOTATIONS_DIR/k$i"; i=$((i+1)); done; printf "oom 9GiB" >"$STAMP_ANNOTATIONS_DIR/memory-sentinel-violations"' >/dev/null || fail many
wait_until "many done" 20 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"many\") | .phase')\" = Succeeded ]"
ctl ns pods $NS -o json | jq '.pods[] | select(.name == "many")' >"$T/many.json"
expect_eq "at most 64 annotations shown" "$(jq '.annotations | length' "$T/many.json")" 64
expect_eq "the rest counted" "$(jq '.annotationsNotShown' "$T/many.json")" 237

# ---- '..' in args is only text ----
ctl ns run-pod $NS dots -- -c 'cat ../../../../../stamp.db ../../../../../../../../etc/shadow; echo "dots rc=$?"' >/dev/null || fail dots
wait_until "dots done" 20 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"dots\") | .phase')\" = Succeeded ]"
expect_ok "'..' paths lead nowhere" grep -q "dots rc=1" <(ctl ns logs $NS dots)
expect_ok "no store bytes in the log" sh -c "! ctl ns logs $NS dots | grep -qa 'SQLite format'"

# ---- nothing a pod starts outlives it, not even what left its group ----
ctl ns run-pod $NS escaper -- -c 'setsid sh -c "exec sleep 3011" </dev/null >/dev/null 2>&1 & (sh -c "exec sleep 3012" &) ; echo started' >/dev/null || fail escaper
wait_until "escaper done" 20 sh -c "[ \"\$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == \"escaper\") | .phase')\" = Succeeded ]"
wait_until "the escaped processes are gone" 5 sh -c '! pgrep -x -f "sleep 301[12]" >/dev/null'
expect_ok "no pod marker in a pod's processes" sh -c "! ctl ns logs $NS probe | grep -q '^STAMPD_OWNER='"

# ---- limits of a running pod ----
ctl ns run-pod $NS sleeper -- -c 'echo up; exec sleep 30' >/dev/null || fail sleeper
wait_until "sleeper runs" 20 sh -c "ctl ns logs $NS sleeper | grep -q up"
spid=$(ctl ns pods $NS -o json | jq -r '.pods[] | select(.name == "sleeper") | .pid')
cpid=$(pgrep -P "$spid" | head -n 1)
[ -n "$cpid" ] || fail "no pod process under stamp-run $spid"
cat "/proc/$cpid/limits" >"$T/limits"
lim() { awk -v n="$1" 'index($0, n) == 1 { print $(NF-2), $(NF-1) }' "$T/limits"; }
expect_eq "address space limit" "$(lim 'Max address space')" "1073741824 1073741824"
expect_eq "open files limit" "$(lim 'Max open files')" "200 200"
expect_eq "processes limit" "$(lim 'Max processes')" "300 300"
expect_eq "file size limit" "$(lim 'Max file size')" "104857600 104857600"
expect_eq "cpu limit" "$(lim 'Max cpu time')" "60 60"
expect_eq "no core files" "$(lim 'Max core file size')" "0 0"
expect_eq "no new privileges" "$(awk '/^NoNewPrivs/ {print $2}' "/proc/$cpid/status")" 1
[ "$(id -u)" -ne 0 ] || expect_eq "pod process uid" "$(awk '/^Uid/ {print $2}' "/proc/$cpid/status")" "$(id -u stamp-pod)"
expect_ok "stamp-run supervises as stampd's user" sh -c "[ \"\$(awk '/^Uid/ {print \$2}' /proc/$spid/status)\" = $(id -u) ]"

# The pod's program cannot signal stampd (other user, or Landlock's scope).
ctl ns run-pod $NS killer -- -c "kill -9 $STAMPD_PID; echo \"kill rc=\$?\"" >/dev/null || fail killer
wait_until "killer done" 20 sh -c "ctl ns logs $NS killer | grep -q 'kill rc='"
expect_ok "kill of stampd refused" grep -q "kill rc=1" <(ctl ns logs $NS killer)
expect_ok "stampd alive" kill -0 "$STAMPD_PID"

# ---- a reap still archives everything, and stops the pods ----
ctl ns finalize $NS >/dev/null || fail finalize
wait_ns $NS reaped 30
expect_eq "no pod processes" "$(procs "ns/$NS/")" 0
expect_ok "stampd logged how pods are confined" grep -q "pods run as" "$T/stampd.log"

# ---- as root, a missing pod user refuses pods, loudly ----
if [ "$(id -u)" -eq 0 ]; then
  stop_stampd
  kill_owned
  start_stampd --set pod-command=/bin/sh --set pod-user=stamp-no-such-user
  expect_ok "stampd says at start" grep -q "ERROR.*pod user \"stamp-no-such-user\" does not exist" "$T/stampd.log"
  ctl ns create late >/dev/null || fail "ns late"
  expect_err "pod refused without the pod user" "does not exist" ctl ns run-pod livecalc-bucket-late p -- -c true
  [ ! -e "$DATA/namespaces/livecalc-bucket-late/pods/p" ] || fail "a refused pod left a directory"
fi
finish
