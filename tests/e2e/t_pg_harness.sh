#!/usr/bin/env bash
# The PostgreSQL harness itself (tests/pg/pg.sh through lib.sh), so that a
# broken one fails here, loudly, instead of the PostgreSQL tests skipping:
# a cluster starts on loopback (as stamp-pg when root), answers through its
# URL, keeps fsync on, makes databases; a kill -9 takes every process of it
# and a restart on the same port recovers the committed data; a stop leaves
# nothing running.
TEST_NAME=pg_harness
. "$(dirname "$0")/lib.sh"

q() { psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
postmaster() { head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null; }
# Live (non-zombie) processes whose parent is $1 or that are $1.
live_family() {
  local n=0 d st pp
  for d in /proc/[0-9]*; do
    read -r st pp < <(sed 's/.*) //' "$d/stat" 2>/dev/null | awk '{print $1, $2}') || continue
    [ "$st" = Z ] && continue
    { [ "${d#/proc/}" = "$1" ] || [ "$pp" = "$1" ]; } && n=$((n + 1))
  done
  echo "$n"
}

command -v psql >/dev/null || fail "psql missing (scripts/install-deps.sh test installs postgresql-client)"

start_pg
case $PG_URL in
  postgresql://postgres@127.0.0.1:[0-9]*/postgres) ok "URL $PG_URL" ;;
  *) fail "URL: $PG_URL" ;;
esac
PORT=${PG_URL##*:}
PORT=${PORT%%/*}
[ "$PORT" != 5432 ] || fail "the test cluster is on 5432"
expect_eq "url file" "$(cat "$PG_DIR/url")" "$PG_URL"
expect_eq "select 1 through the URL" "$(q "$PG_URL" -c 'select 1')" 1
expect_eq "superuser postgres" "$(q "$PG_URL" -c 'select rolsuper from pg_roles where rolname = current_user')" t
expect_eq "fsync on" "$(q "$PG_URL" -c 'show fsync')" on
expect_eq "synchronous_commit on" "$(q "$PG_URL" -c 'show synchronous_commit')" on
expect_eq "loopback only" "$(q "$PG_URL" -c 'show listen_addresses')" 127.0.0.1
expect_eq "max_connections" "$(q "$PG_URL" -c 'show max_connections')" 200
expect_ok "unix socket in the cluster's directory" test -S "$PG_DIR/.s.PGSQL.$PORT"
PM=$(postmaster)
want_user=$(id -un)
[ "$(id -u)" -eq 0 ] && want_user=stamp-pg
expect_eq "postmaster runs as $want_user" "$(ps -o user= -p "$PM")" "$want_user"

URL1=$(pg_createdb t_1) || fail "pg_createdb t_1"
expect_eq "createdb URL" "$URL1" "${PG_URL%/postgres}/t_1"
expect_ok "table in t_1" q "$URL1" -c 'create table kept (id int primary key, v text not null)'
expect_ok "a committed row" q "$URL1" -c "insert into kept values (1, 'before the crash')"
expect_err "a bad database name is refused" "database name" pg_createdb "T-2"
expect_err "an existing database is refused" "already exists" pg_createdb t_1

# The crash: the postmaster and all its processes, at once.
FAMILY=$(live_family "$PM")
[ "$FAMILY" -gt 1 ] || fail "postmaster $PM has no processes under it ($FAMILY)"
kill_pg
expect_eq "kill -9: nothing of the cluster runs (was $FAMILY processes)" "$(live_family "$PM")" 0
expect_err "the URL does not answer after the kill" "" q "$PG_URL" -c 'select 1'

restart_pg
expect_eq "restart: same URL" "$PG_URL" "$(cat "$PG_DIR/url")"
case $PG_URL in *":$PORT/postgres") ok "restart: same port $PORT" ;; *) fail "restart moved to $PG_URL" ;; esac
expect_eq "the committed row survived the crash" "$(q "$URL1" -c 'select v from kept where id = 1')" "before the crash"
expect_ok "crash recovery ran" grep -q "not properly shut down" "$PG_DIR/pg.log"
expect_ok "writes after the recovery" q "$URL1" -c "insert into kept values (2, 'after')"
[ "$(postmaster)" != "$PM" ] || fail "the same postmaster after a restart"

# A clean stop and a restart of a running cluster.
PM=$(postmaster)
restart_pg
expect_eq "restart of a running cluster keeps the data" "$(q "$URL1" -c 'select count(*) from kept')" 2
PM=$(postmaster)
stop_pg
expect_eq "stop: nothing of the cluster runs" "$(live_family "$PM")" 0
expect_ok "stop: no postmaster.pid left" test ! -e "$PG_DIR/data/postmaster.pid"
expect_err "the URL does not answer after the stop" "" q "$PG_URL" -c 'select 1'
restart_pg
expect_eq "started again after a stop" "$(q "$URL1" -c 'select count(*) from kept')" 2
finish
