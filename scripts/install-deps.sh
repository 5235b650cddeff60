#!/usr/bin/env bash
# Installs the Debian packages stamp needs, only when some are missing.
#   scripts/install-deps.sh build   - to build and run stampd (make)
#   scripts/install-deps.sh demo    - also what the demo's ObservabilityPlatform
#                                     runs (make demo)
#   scripts/install-deps.sh test    - also what the test suite starts
set -euo pipefail
what=${1:-build}
case $what in build|demo|test) ;; *) echo "usage: $0 [build|demo|test]" >&2; exit 2 ;; esac
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev
      libcurl4-openssl-dev libsqlite3-dev libpq-dev libyaml-dev libssl-dev
      haproxy curl jq bc)
if [ "$what" = test ]; then
  pkgs+=(libcmocka-dev sqlite3 procps jq openssl)
  # The PostgreSQL store's tests (tests/pg/pg.sh) initdb throwaway clusters
  # of Debian's server (bookworm: 15) in temporary directories on free
  # loopback ports; psql comes with the client.  Where systemd runs, the
  # package also starts a system cluster on 5432: the tests never use it
  # and never listen on 5432 (their ports are 10000-19999).
  pkgs+=(postgresql postgresql-client)
  # The fuzz harnesses (tests/fuzz, make fuzz / check-fuzz) are libFuzzer's:
  # clang, and compiler-rt's libFuzzer and sanitizer runtimes (bookworm: 14).
  pkgs+=(clang libclang-rt-14-dev)
  # t_fault_clock steps stampd's wall clock with libfaketime's preload.
  pkgs+=(faketime)
fi
# The ObservabilityPlatform runs Debian's Prometheus, Alertmanager and
# exporters (deploy/observability/catalog.yaml).  `build` stays what stampd
# needs to build and run: a stampd without them works, and a platform then
# waits in Pending naming the missing binary.  The demo installs a platform,
# so `demo` (and `test`, a superset) adds them.  The alert rules' tests
# (tests/prom, t_alerts) run promtool and amtool from the same packages;
# the pushgateway is tested, not used by the demo.  Where systemd runs, the
# packages start their own services (ports 9090, 9093/9094, 9100, 9115,
# 9091); stamp starts its own with their own configuration, data and
# loopback ports.
obs_pkgs=(prometheus prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter)
[ "$what" != build ] && pkgs+=("${obs_pkgs[@]}")
[ "$what" = test ] && pkgs+=(prometheus-pushgateway)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Tenants' pods run as their own unprivileged user when stampd is root
# (pod-user, default stamp-pod): no home, no login shell.
if [ "$(id -u)" -eq 0 ] && ! getent passwd stamp-pod >/dev/null; then
  echo "creating user: stamp-pod"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin stamp-pod
fi
# initdb and postgres refuse to run as root: as root, the tests' PostgreSQL
# clusters run as this user (tests/pg/pg.sh).
if [ "$what" = test ] && [ "$(id -u)" -eq 0 ] && ! getent passwd stamp-pg >/dev/null; then
  echo "creating user: stamp-pg"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin stamp-pg
fi

# Upgrades of a platform need a second, real version of Prometheus and
# Alertmanager.  bookworm has one of each; Debian trixie's builds run on
# bookworm (they need libc6 >= 2.34).  They are fetched with apt through a
# private sources list and state dir (the system's sources and lists are
# not touched: adding trixie there would upgrade libc), then unpacked with
# dpkg-deb -x into .deps/observability/<component>/<version>/, where the
# test catalog names them.  The directory is the catalog's version (2.53.3,
# 0.28.1).  The exact Debian version is asked for first; trixie is a stable
# release whose point releases replace a package in the archive, so when
# that version is gone the current one is taken, and the binary's
# --version must still say the same major.minor (2.53, 0.28): a change
# there needs a new catalog entry, so it fails loudly.  No root is needed
# (apt runs on private dirs; sudo is never used here).
apt_tmp=
apt_o=()
trixie_apt() { # the private apt of trixie, set up and updated once
  [ -n "$apt_tmp" ] && return 0
  local uri
  apt_tmp=$(mktemp -d)
  trap 'rm -rf "$apt_tmp"' EXIT
  chmod 0755 "$apt_tmp" # apt downloads as _apt when root: it must reach it
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  mkdir -p "$apt_tmp/lists/partial" "$apt_tmp/cache/archives/partial" "$apt_tmp/dl"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$apt_tmp/sources.list"
  apt_o=(-o "Dir::Etc::sourcelist=$apt_tmp/sources.list" -o Dir::Etc::sourceparts=/nonexistent
         -o "Dir::State::Lists=$apt_tmp/lists" -o "Dir::Cache=$apt_tmp/cache")
  if ! apt-get "${apt_o[@]}" -qq update; then
    echo "install-deps: apt-get update of trixie ($uri) failed" >&2; exit 1
  fi
}
fetch_trixie() { # dir package exact-version binary want-major.minor
  local dir=$1 pkg=$2 exact=$3 bin=$4 want=$5 v
  [ -x "$dir/usr/bin/$bin" ] && return 0
  echo "installing: $pkg (Debian trixie) into ${dir#"$root"/}"
  trixie_apt
  rm -f "$apt_tmp"/dl/*.deb
  if ! (cd "$apt_tmp/dl" && apt-get "${apt_o[@]}" -qq download "$pkg=$exact" 2>/dev/null); then
    echo "  $pkg $exact is no longer in trixie; taking its current version"
    if ! (cd "$apt_tmp/dl" && apt-get "${apt_o[@]}" -qq download "$pkg"); then
      echo "install-deps: apt-get download $pkg (trixie) failed" >&2; exit 1
    fi
  fi
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial"
  dpkg-deb -x "$apt_tmp"/dl/"${pkg}"_*.deb "$dir.partial"
  v=$("$dir.partial/usr/bin/$bin" --version 2>&1 | head -n 1 || true)
  case $v in
    *"version $want".*) ;;
    *) echo "install-deps: $pkg from trixie says \"$v\", not $want.x: the catalog needs a new entry" >&2
       rm -rf "$dir.partial"; exit 1 ;;
  esac
  mv "$dir.partial" "$dir"
  echo "  $v"
}
if [ "$what" = test ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  fetch_trixie "$root/.deps/observability/prometheus/2.53.3" prometheus 2.53.3+ds1-2 prometheus 2.53
  fetch_trixie "$root/.deps/observability/alertmanager/0.28.1" prometheus-alertmanager 0.28.1+ds-1 \
    prometheus-alertmanager 0.28
fi

# The tests run a real Azure Blob API: Azurite, from npm, into .deps/ of the
# source tree (not global, so nothing outside the checkout changes).
if [ "$what" = test ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  if [ ! -x "$root/.deps/azurite/node_modules/.bin/azurite-blob" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "installing: nodejs npm"
      SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
    echo "installing: azurite 3.35.0 (npm) into .deps/azurite"
    npm install --silent --no-audit --no-fund --prefix "$root/.deps/azurite" azurite@3.35.0 >/dev/null
  fi
  # Microsoft's own Azure Storage SDK reads the archives back in the tests:
  # an independent client, not stampd's code.  12.27 still runs on Node 18.
  if [ ! -d "$root/.deps/azure-sdk/node_modules/@azure/storage-blob" ]; then
    echo "installing: @azure/storage-blob 12.27.0 (npm) into .deps/azure-sdk"
    npm install --silent --no-audit --no-fund --prefix "$root/.deps/azure-sdk" @azure/storage-blob@12.27.0 >/dev/null
  fi
  # An independent OpenAPI validator checks the document stampd generates
  # (GET /openapi.json).  swagger-parser 10.1.1 validates OpenAPI 3.1 and
  # runs on Node 18 and 20 (its ref parser needs Node >= 16).
  if [ ! -d "$root/.deps/openapi/node_modules/@apidevtools/swagger-parser" ]; then
    echo "installing: @apidevtools/swagger-parser 10.1.1 (npm) into .deps/openapi"
    npm install --silent --no-audit --no-fund --prefix "$root/.deps/openapi" \
      @apidevtools/swagger-parser@10.1.1 openapi-types@12.1.3 >/dev/null
  fi
fi
