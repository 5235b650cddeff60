#!/usr/bin/env bash
# The alert rules and the Alertmanager example, checked with the tools of
# the Prometheus project (Debian's prometheus and prometheus-alertmanager;
# scripts/install-deps.sh test installs them):
#   - promtool check rules: the rules file is valid;
#   - promtool test rules: every alert fires and stays quiet when it should
#     (tests/prom/stamp-alerts.test.yaml);
#   - amtool check-config and routes: each severity reaches its receiver.
# ctest runs it as prom/rules.
set -u
: "${STAMP_SRC:?set STAMP_SRC to the source tree}"
rules=$STAMP_SRC/deploy/prometheus/stamp-alerts.yaml
am=$STAMP_SRC/deploy/alertmanager/alertmanager.yml
failed=0
for tool in promtool amtool; do
  command -v $tool >/dev/null || { echo "FAIL: $tool missing (scripts/install-deps.sh test installs it)"; exit 1; }
done
check() {
  local desc=$1
  shift
  if out=$("$@" 2>&1); then echo "ok: $desc"; else echo "FAIL: $desc"; echo "$out"; failed=1; fi
}
check "promtool check rules" promtool check rules "$rules"
# The test file names the rules relative to itself.
check "promtool test rules" sh -c "cd '$STAMP_SRC/tests/prom' && promtool test rules stamp-alerts.test.yaml"
check "amtool check-config" amtool check-config "$am"
route() {
  local got
  got=$(amtool config routes test --config.file="$am" "severity=$1" 2>/dev/null)
  if [ "$got" = "$2" ]; then echo "ok: severity=$1 -> $2"; else echo "FAIL: severity=$1 -> '$got', want $2"; failed=1; fi
}
route page page
route critical page
route notify notify
route warning notify
# Every alert of the rules file has a severity the routes know.
sev=$(grep -E '^\s+severity:' "$rules" | awk '{print $2}' | sort -u | tr '\n' ' ')
[ "$sev" = "critical notify page warning " ] && echo "ok: severities $sev" || { echo "FAIL: severities in the rules: $sev"; failed=1; }
# Every alert has a test where it fires and one where it does not.
tests=$STAMP_SRC/tests/prom/stamp-alerts.test.yaml
for a in $(sed -n 's/^ *- alert: *//p' "$rules"); do
  fires=$(awk -v a="$a" '$1 == "alertname:" && $2 == a { getline; if ($0 !~ /\[\]/) n++ } END { print n + 0 }' "$tests")
  quiet=$(awk -v a="$a" '$1 == "alertname:" && $2 == a { getline; if ($0 ~ /\[\]/) n++ } END { print n + 0 }' "$tests")
  if [ "$fires" -gt 0 ] && [ "$quiet" -gt 0 ]; then echo "ok: $a tested firing ($fires) and quiet ($quiet)"
  else echo "FAIL: $a tested firing $fires time(s), quiet $quiet time(s)"; failed=1; fi
done
exit $failed
