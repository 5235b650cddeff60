#!/usr/bin/env bash
# pg.sh - throwaway PostgreSQL clusters for the tests (Debian's server,
# scripts/install-deps.sh test installs it).
#
#   pg.sh start DIR          initdb a cluster in DIR (or start the one there),
#                            print its URL and write it to DIR/url
#   pg.sh stop DIR           pg_ctl stop -m fast (a kill -9 if that fails)
#   pg.sh kill DIR           kill -9 of the postmaster and all its processes
#                            (a crash: the next start replays the WAL)
#   pg.sh restart DIR        stop if running, start again on the same port
#   pg.sh createdb DIR NAME  a new database; prints its URL
#   pg.sh url DIR            the cluster's URL
#
# Sourced, it defines the same as functions: pgh_start, pgh_stop, pgh_kill,
# pgh_restart, pgh_createdb, pgh_url (they return non-zero on failure).
#
# The cluster: DIR/data (PGDATA), DIR/pg.log, DIR/port, DIR/url, its unix
# socket in DIR.  It listens on 127.0.0.1 only, on a free port in
# 10000-19999 (as tests/e2e/lib.sh free_port; picked again when another
# process took it first), with trust authentication (the only users are
# the machine's own, on loopback).  The superuser is `postgres` whoever
# runs it, so the URL is postgresql://postgres@127.0.0.1:PORT/postgres.
# fsync and synchronous_commit stay on: the tests kill it to test crash
# safety.  As root, initdb and postgres refuse to run: the cluster runs as
# the user stamp-pg (install-deps creates it; PG_USER overrides), and DIR's
# parents must let that user through.
#
# With PG_WATCH_PID set, start leaves a watcher (its own session) that
# kills the cluster once that process is gone: a test killed before its
# cleanup (a ctest timeout) does not leave a postgres behind.
#
# Every step's time goes to stderr; PG_BIN overrides the directory of
# initdb/pg_ctl/postgres/pg_isready/psql.

_pgh_msg() { printf 'pg.sh: %s\n' "$*" >&2; }

_pgh_now() { date +%s.%N; }
_pgh_since() { awk -v a="$1" -v b="$(_pgh_now)" 'BEGIN { printf "%.2f", b - a }'; }

_pgh_bin() {
  [ -n "${PG_BIN:-}" ] && { echo "$PG_BIN"; return 0; }
  local d best=
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] || continue
    if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1)" = "$d" ]; then best=$d; fi
  done
  if [ -z "$best" ] && command -v initdb >/dev/null 2>&1; then best=$(dirname "$(command -v initdb)"); fi
  [ -n "$best" ] || { _pgh_msg "no PostgreSQL server found (scripts/install-deps.sh test installs Debian's postgresql)"; return 1; }
  echo "$best"
}

# The command prefix that runs a program as the cluster's owner.
_pgh_as() {
  if [ "$(id -u)" -eq 0 ]; then
    local u=${PG_USER:-stamp-pg}
    getent passwd "$u" >/dev/null || { _pgh_msg "user $u missing (scripts/install-deps.sh test creates it)"; return 1; }
    echo "runuser -u $u --"
  fi
}

_pgh_abs() { (cd "$1" 2>/dev/null && pwd); }

# A free TCP port on 127.0.0.1 in 10000-19999 (see tests/e2e/lib.sh).
_pgh_free_port() {
  local p
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  _pgh_msg "no free port"
  return 1
}

# The postmaster's pid when it runs (a live, non-zombie process), else "".
_pgh_pid() {
  local pid st
  pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null) || return 0
  case $pid in '' | *[!0-9]*) return 0 ;; esac
  st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $1}')
  [ -n "$st" ] && [ "$st" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] && echo "$pid"
  return 0
}

_pgh_alive() { # pid: a live, non-zombie process
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}')
  [ -n "$st" ] && [ "$st" != Z ]
}

_pgh_url() { echo "postgresql://postgres@127.0.0.1:$1/${2:-postgres}"; }

pgh_url() {
  local dir=$1
  [ -s "$dir/url" ] || { _pgh_msg "no cluster in $dir"; return 1; }
  cat "$dir/url"
}

# After a kill -9 the lock files name a dead (or zombie, where nothing reaps
# it) postmaster; postgres refuses to start while a live process has that
# pid, so they go when no postgres runs under that pid.
_pgh_clear_stale() {
  local dir=$1
  [ -e "$dir/data/postmaster.pid" ] || return 0
  [ -n "$(_pgh_pid "$dir")" ] && return 0
  rm -f "$dir/data/postmaster.pid" "$dir"/.s.PGSQL.*.lock
}

# Starts the cluster in DIR (initdb first when there is none) on PORT, or on
# a free port when PORT is empty (picked again when the bind fails).
_pgh_run() {
  local dir=$1 want_port=${2:-} bin as t0 t1 port
  bin=$(_pgh_bin) || return 1
  as=$(_pgh_as) || return 1
  t0=$(_pgh_now)
  mkdir -p "$dir" || return 1
  dir=$(_pgh_abs "$dir") || return 1
  # The socket's path must fit in sun_path (108 bytes).
  if [ $(( ${#dir} + 18 )) -gt 107 ]; then _pgh_msg "$dir: too long a path for the unix socket"; return 1; fi
  if [ -n "$as" ]; then
    chown "${PG_USER:-stamp-pg}:" "$dir" || return 1
    if ! $as test -w "$dir"; then
      _pgh_msg "$dir: ${PG_USER:-stamp-pg} cannot reach it (a parent directory closed to others?)"
      return 1
    fi
  fi
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir/data"
    t1=$(_pgh_now)
    # No --no-sync: the cluster's first files are flushed as in production.
    if ! (cd / && $as "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C) >"$dir/initdb.log" 2>&1; then
      _pgh_msg "initdb failed: $(tail -n 5 "$dir/initdb.log")"
      return 1
    fi
    # fsync, synchronous_commit and full_page_writes keep their defaults (on).
    $as tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF || return 1

# tests/pg/pg.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
max_connections = 200
shared_buffers = 16MB
fsync = on
synchronous_commit = on
full_page_writes = on
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
    _pgh_msg "initdb $dir: $(_pgh_since "$t1")s"
  fi
  _pgh_clear_stale "$dir"
  if [ -n "$(_pgh_pid "$dir")" ]; then _pgh_msg "a postgres already runs in $dir"; return 1; fi
  for _ in 1 2 3 4 5 6 7 8; do
    port=$want_port
    [ -n "$port" ] || port=$(_pgh_free_port) || return 1
    t1=$(_pgh_now)
    : >"$dir/pg_ctl.log"
    if (cd / && $as "$bin/pg_ctl" start -D "$dir/data" -l "$dir/pg.log" -w -t 120 -o "-p $port") >"$dir/pg_ctl.log" 2>&1 &&
       "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 30; then
      echo "$port" >"$dir/port"
      _pgh_url "$port" >"$dir/url"
      _pgh_msg "postgres $dir on 127.0.0.1:$port: start $(_pgh_since "$t1")s, in all $(_pgh_since "$t0")s"
      if [ -n "${PG_WATCH_PID:-}" ]; then
        setsid bash "${BASH_SOURCE[0]}" _watch "$dir" "$PG_WATCH_PID" </dev/null >/dev/null 2>&1 &
      fi
      cat "$dir/url"
      return 0
    fi
    # A postmaster that came up but did not answer is stopped before a retry.
    [ -n "$(_pgh_pid "$dir")" ] && pgh_kill "$dir"
    if [ -z "$want_port" ] && tail -n 20 "$dir/pg.log" 2>/dev/null | grep -q "could not bind\|could not create any TCP/IP sockets\|Address already in use"; then
      _pgh_msg "port $port taken between pick and bind; picking again"
      continue
    fi
    _pgh_msg "postgres did not start in $dir on port $port: $(tail -n 3 "$dir/pg_ctl.log") $(tail -n 10 "$dir/pg.log" 2>/dev/null)"
    return 1
  done
  _pgh_msg "postgres did not start in $dir: no port could be bound"
  return 1
}

pgh_start() { _pgh_run "$1" ""; }

pgh_restart() {
  local dir=$1 port
  port=$(cat "$dir/port" 2>/dev/null) || { _pgh_msg "no cluster in $dir"; return 1; }
  [ -n "$(_pgh_pid "$dir")" ] && { pgh_stop "$dir" || return 1; }
  _pgh_run "$dir" "$port"
}

pgh_stop() {
  local dir=$1 bin as t0
  [ -n "$(_pgh_pid "$dir")" ] || return 0
  bin=$(_pgh_bin) || return 1
  as=$(_pgh_as) || return 1
  t0=$(_pgh_now)
  if (cd / && $as "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 60) >>"$dir/pg_ctl.log" 2>&1; then
    _pgh_msg "stopped $dir: $(_pgh_since "$t0")s"
    return 0
  fi
  _pgh_msg "pg_ctl stop failed ($(tail -n 2 "$dir/pg_ctl.log")); killing"
  pgh_kill "$dir"
}

# kill -9 of the postmaster and of every process it started, as a crash of
# the server's machine would.  The postmaster is stopped first (it can fork
# no more), its children are listed, then all are killed and waited for (a
# new postmaster refuses to start while an old backend holds the shared
# memory).
pgh_kill() {
  local dir=$1 pid k t0 c
  local -a kids
  pid=$(_pgh_pid "$dir")
  [ -n "$pid" ] || return 0
  t0=$(_pgh_now)
  kill -STOP "$pid" 2>/dev/null || true
  mapfile -t kids < <(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ')
  kill -9 "$pid" "${kids[@]}" 2>/dev/null || true
  for _ in $(seq 300); do
    k=
    _pgh_alive "$pid" && k=1
    for c in "${kids[@]}"; do _pgh_alive "$c" && k=1; done
    [ -z "$k" ] && { _pgh_msg "killed $dir (postmaster $pid and ${#kids[@]} others): $(_pgh_since "$t0")s"; return 0; }
    sleep 0.05
  done
  _pgh_msg "postgres $pid in $dir still alive after kill -9"
  return 1
}

pgh_createdb() {
  local dir=$1 name=$2 bin port out
  case $name in '' | [!a-z_]* | *[!a-z0-9_]*) _pgh_msg "database name \"$name\": want [a-z_][a-z0-9_]*"; return 1 ;; esac
  bin=$(_pgh_bin) || return 1
  port=$(cat "$dir/port" 2>/dev/null) || { _pgh_msg "no cluster in $dir"; return 1; }
  if ! out=$("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
               -c "CREATE DATABASE $name" 2>&1); then
    _pgh_msg "create database $name: $out"
    return 1
  fi
  _pgh_url "$port" "$name"
}

# The watcher: once process PID is gone, the cluster is killed.
_pgh_watch() {
  local dir=$1 owner=$2
  while kill -0 "$owner" 2>/dev/null; do sleep 1; done
  pgh_kill "$dir" 2>/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -u
  usage() { echo "usage: $0 start|stop|kill|restart|url DIR | createdb DIR NAME" >&2; exit 2; }
  [ $# -ge 2 ] || usage
  case $1 in
    start | stop | kill | restart | url) [ $# -eq 2 ] || usage; "pgh_$1" "$2" ;;
    createdb) [ $# -eq 3 ] || usage; pgh_createdb "$2" "$3" ;;
    _watch) [ $# -eq 3 ] || usage; _pgh_watch "$2" "$3" ;;
    *) usage ;;
  esac
fi
