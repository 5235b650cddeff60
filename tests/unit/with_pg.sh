#!/usr/bin/env bash
# with_pg.sh CMD ARGS... - runs CMD with a throwaway PostgreSQL of its own
# (tests/pg/pg.sh): STAMP_TEST_PG_URL is its URL (superuser postgres,
# database postgres), STAMP_TEST_PG_DIR its directory (for pg.sh kill,
# restart, createdb).  The cluster is stopped and removed whatever CMD's
# result; the exit status is CMD's.  When PostgreSQL cannot be started the
# command does not run and this fails: a broken harness is not a skip.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pg=$here/../pg/pg.sh
[ $# -ge 1 ] || { echo "usage: $0 CMD ARGS..." >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/stamp-pg.XXXXXX") || exit 1
# As root the cluster runs as stamp-pg, which must pass through (not list).
chmod 0711 "$tmp"
dir=$tmp/pg
# shellcheck disable=SC2317  # run by the trap
cleanup() {
  bash "$pg" stop "$dir" || bash "$pg" kill "$dir"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# A watcher kills the cluster if this script is killed before its trap runs.
if ! url=$(PG_WATCH_PID=$$ bash "$pg" start "$dir"); then
  echo "with_pg.sh: PostgreSQL did not start (scripts/install-deps.sh test installs it)" >&2
  exit 1
fi
export STAMP_TEST_PG_URL=$url STAMP_TEST_PG_DIR=$dir
rc=0
"$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "with_pg.sh: $1 exited $rc; PostgreSQL's log (tail):" >&2
  tail -n 30 "$dir/pg.log" >&2 2>/dev/null
fi
exit "$rc"
