#!/usr/bin/env bash
# Installs the Debian packages stamp needs, only when some are missing.
#   scripts/install-deps.sh build   - to build and run (make, make demo)
#   scripts/install-deps.sh test    - also what the test suite starts
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev
      libcurl4-openssl-dev libsqlite3-dev libpq-dev libyaml-dev libssl-dev
      haproxy curl jq bc)
if [ "$what" = test ]; then
  pkgs+=(libcmocka-dev sqlite3 procps jq openssl)
fi
# The alert rules' tests (tests/prom, t_alerts) run promtool, amtool, a
# Prometheus and an Alertmanager.  Where systemd runs, the packages start
# their own services (ports 9090, 9093/9094, node exporter 9100); the tests
# start theirs with their own configuration, data and loopback ports.
[ "$what" = test ] && pkgs+=(prometheus prometheus-alertmanager)
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
