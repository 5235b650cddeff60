# bench/lib.sh - what the shell benchmarks share, sourced after `set -euo
# pipefail` with the build directory as $1: B (build), SRC (checkout), T (a
# scratch directory), CTL, STAMP_CONFIG in T, free loopback ports API and FDP
# for stampd, wait_api to wait for the stampd started on them, and
# stop_stampd to stop the one whose pid is $SD and everything it started.
B=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/stamp-bench.XXXXXX)
# As root, pods run as the pod user: it must pass through the scratch
# directory (no listing) and reach the build tree's programs.
if [ "$(id -u)" -eq 0 ]; then
  chmod 0711 "$T"
  d=$B
  while [ "$d" != / ] && [ -n "$d" ]; do
    d=$(dirname "$d")
    [ -n "$(find "$d" -maxdepth 0 ! -perm -o=x 2>/dev/null)" ] && chmod o+x "$d"
  done
fi
export STAMP_CONFIG=$T/client.conf
CTL=$B/stampctl
port() { local p; while :; do p=$((10000 + RANDOM % 10000)); (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo $p; return; }; done; }
API=$(port); FDP=$(port)
wait_api() {
  for _ in $(seq 50); do
    [ -s "$STAMP_CONFIG" ] && curl -fsS "http://127.0.0.1:$API/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "stampd did not answer on 127.0.0.1:$API; its log:" >&2
  cat "$T/stampd.log" >&2
  return 1
}

# stampd ($SD) and everything it started (found by its owner id), gone.
SD=
stop_stampd() {
  [ -n "$SD" ] || return 0
  local owner
  owner=$(sed -n 's/.*owner \([0-9a-f]*\).*/\1/p' "$T/stampd.log" | head -n1)
  kill -TERM $SD 2>/dev/null; wait $SD 2>/dev/null || true
  SD=
  [ -n "$owner" ] || return 0
  for d in /proc/[0-9]*; do
    tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "STAMPD_OWNER=$owner" && kill -9 "${d#/proc/}" 2>/dev/null
  done
  return 0
}
