#!/usr/bin/env bash
# ObservabilityPlatform through the API and stampctl: apply refuses a bad
# manifest with a message naming the field (apiVersion, an unknown
# component, a version the catalog lacks) and stores nothing; a valid one
# (every component disabled: nothing is started) reads back with get
# (table, wide, -o json|yaml|name) and describe, and -o yaml applies back
# unchanged; pause and resume write spec.paused once, with their events
# and audit; unknown names are 404 and unknown actions 400; a platform
# being deleted refuses a pause; delete --wait follows it until it is gone.
TEST_NAME=obs_api
. "$(dirname "$0")/lib.sh"

CAT=$STAMP_SRC/deploy/observability/catalog.yaml
start_stampd --set "observability-catalog=$CAT" --set "observability-root=$T/obs-root" \
  --set observability-pending-requeue=1s --set observability-install-requeue=200ms
TOKEN=$(env -u STAMP_TOKEN ctl token create --tenant ops --user alice --role operator) || fail "operator token"
export STAMP_TOKEN=$TOKEN
stored() { api GET /v1/platforms >/dev/null; jq '.items | length' "$T/body"; }

manifest() { # NAME APIVERSION COMPONENTS-YAML
  printf 'apiVersion: %s\nkind: ObservabilityPlatform\nmetadata:\n  name: %s\n  labels: {team: sre}\nspec:\n  components:\n%s\n' \
    "$2" "$1" "$3"
}
ALL_OFF='    - {name: prometheus, enabled: false}
    - {name: alertmanager, enabled: false}
    - {name: node-exporter, enabled: false}
    - {name: blackbox-exporter, enabled: false}
    - {name: pushgateway, enabled: false}
    - {name: loki, enabled: false}
    - {name: tempo, enabled: false}
    - {name: grafana, enabled: false}'
V1=observability.synaxis.io/v1alpha1

# ---- refused, nothing stored ----
manifest fm stamp.synaxis.io/v1 "$ALL_OFF" >"$T/badapi.yaml"
expect_err "wrong apiVersion" "apiVersion: \"stamp.synaxis.io/v1\"" ctl apply -f "$T/badapi.yaml"
sed '/^apiVersion/d' "$T/badapi.yaml" >"$T/noapi.yaml"
expect_err "no apiVersion" "apiVersion" ctl apply -f "$T/noapi.yaml"
manifest fm "$V1" '    - {name: prometheus, enabled: false}
    - {name: splunk, enabled: false}' >"$T/badcomp.yaml"
expect_err "unknown component named by its field" "spec.components[1]" ctl apply -f "$T/badcomp.yaml"
expect_err "unknown component named" "splunk" ctl apply -f "$T/badcomp.yaml"
manifest fm "$V1" '    - {name: prometheus, version: "9.9", enabled: false}' >"$T/badver.yaml"
expect_err "bad version named by its field" "spec.components[0].version" ctl apply -f "$T/badver.yaml"
expect_err "bad version named" "9.9" ctl apply -f "$T/badver.yaml"
expect_eq "a bad apply is a 400" "$(api POST /v1/apply -H 'Content-Type: application/json' --data \
  '{"apiVersion": "'$V1'", "kind": "ObservabilityPlatform", "metadata": {"name": "fm"},
    "spec": {"components": [{"name": "splunk"}]}}')" 400
expect_eq "nothing stored" "$(stored)" 0
expect_eq "get platforms: none" "$(ctl get platforms 2>&1)" "No platforms found."

# ---- a valid platform ----
manifest fm "$V1" "$ALL_OFF" >"$T/fm.yaml"
expect_eq "apply" "$(ctl apply -f "$T/fm.yaml" 2>&1)" "observabilityplatform/fm created"
expect_eq "apply again: unchanged" "$(ctl apply -f "$T/fm.yaml" 2>&1)" "observabilityplatform/fm unchanged"
expect_eq "stored once" "$(stored)" 1
expect_eq "get -o name" "$(ctl get platforms -o name)" "platform/fm"
expect_eq "aliases" "$(ctl get obs fm -o name) $(ctl get observabilityplatforms -o name)" "platform/fm platform/fm"
expect_ok "get table: columns" sh -c "ctl get platforms | head -n 1 | grep -Eq '^NAME +PHASE +READY +AVAILABLE +AGE$'"
expect_ok "get table: fm, 0 of 0 enabled ready" sh -c "ctl get platforms fm | grep -Eq '^fm +[A-Za-z,]+ +0/0 +'"
expect_ok "get -o wide adds VERSIONS and MESSAGE" sh -c "ctl get platforms -o wide | head -n 1 | grep -Eq 'AGE +VERSIONS +MESSAGE$'"
expect_eq "get -o json: kind and apiVersion" "$(ctl get platforms fm -o json | jq -r '.kind + " " + .apiVersion')" \
  "ObservabilityPlatform $V1"
expect_eq "get -o json: the spec as applied" "$(ctl get platforms fm -o json | jq -c '[.spec.components[] | .name]')" \
  '["prometheus","alertmanager","node-exporter","blackbox-exporter","pushgateway","loki","tempo","grafana"]'
expect_eq "list -o json: the list kind" "$(ctl get platforms -o json | jq -r '.kind + " " + (.items | length | tostring)')" \
  "ObservabilityPlatformList 1"
expect_ok "get -o yaml" sh -c "ctl get platforms fm -o yaml | grep -q '^kind: ObservabilityPlatform'"
ctl get platforms fm -o yaml >"$T/back.yaml" || fail "get -o yaml"
expect_eq "get -o yaml applies back unchanged" "$(ctl apply -f "$T/back.yaml" 2>&1)" "observabilityplatform/fm unchanged"
ctl get platforms -o yaml >"$T/backlist.yaml" || fail "get -o yaml (list)"
expect_eq "the list's -o yaml applies back unchanged" "$(ctl apply -f "$T/backlist.yaml" 2>&1)" "observabilityplatform/fm unchanged"
expect_ok "describe: name and phase" sh -c "ctl describe platform fm | grep -q '^Name: *fm' && ctl describe platform fm | grep -q '^Phase: '"
expect_ok "describe: the components" sh -c "ctl describe platform fm | grep -Eq '^  prometheus +Disabled'"
expect_ok "describe: the Applied event" sh -c "ctl describe platform fm | grep -Eq 'Normal +Applied'"
expect_eq "describe -o json" "$(ctl describe platform fm -o json | jq -r .metadata.name)" fm
expect_ok "events platform/fm" sh -c "ctl events platform/fm | grep -q Applied"

# ---- pause, resume ----
expect_eq "pause" "$(ctl platform pause fm)" "platform/fm paused (stampd touches none of its components until resume)"
expect_eq "spec.paused" "$(ctl get platforms fm -o json | jq .spec.paused)" true
expect_ok "PHASE says Paused" sh -c "ctl get platforms fm | grep -Eq '^fm +[A-Za-z]+,Paused '"
rv=$(ctl get platforms fm -o json | jq -r .metadata.resourceVersion)
expect_ok "pause again: fine" ctl platform pause fm
expect_eq "pause again changed nothing" "$(ctl get platforms fm -o json | jq -r .metadata.resourceVersion)" "$rv"
# (the controller records its own Paused event when it sees the pause)
expect_eq "one Paused event by the user" \
  "$(api GET '/v1/events?kind=ObservabilityPlatform&name=fm' >/dev/null; jq '[.items[] | select(.reason == "Paused" and .message == "paused by alice")] | length' "$T/body")" 1
expect_eq "apply of a manifest that does not say paused keeps it paused" \
  "$(ctl apply -f "$T/fm.yaml" 2>&1; ctl get platforms fm -o json | jq .spec.paused)" "observabilityplatform/fm unchanged
true"
expect_eq "resume -o json" "$(ctl platform resume fm -o json | jq .spec.paused)" false
expect_eq "apply after resume: unchanged" "$(ctl apply -f "$T/fm.yaml" 2>&1)" "observabilityplatform/fm unchanged"
expect_eq "audited" "$(ctl audit fm -o json | jq -r '[.items[] | select(.kind == "ObservabilityPlatform" and .operation != "apply") | .operation + ":" + .result] | join(",")')" \
  "pause:ok,pause:ok,resume:ok"

# ---- what is refused ----
expect_eq "unknown action: 400" "$(api POST /v1/platforms/fm/restart)" 400
expect_eq "unknown action: named" "$(jq -r .error.message "$T/body")" 'no platform action "restart" (pause, resume)'
expect_eq "get an unknown platform: 404" "$(api GET /v1/platforms/nope)" 404
expect_eq "pause an unknown platform: 404" "$(api POST /v1/platforms/nope/pause)" 404
expect_eq "delete an unknown platform: 404" "$(api DELETE /v1/platforms/nope)" 404
expect_eq "a bad name: 400" "$(api GET /v1/platforms/Bad_Name)" 400
expect_err "stampctl: unknown platform" "platform nope not found" ctl describe platform nope
expect_err "stampctl: pause unknown" "platform nope not found" ctl platform pause nope
expect_eq "a tenant may not read platforms" "$(TOKEN=$(tenant_token acme bob) api GET /v1/platforms)" 403
expect_eq "OpenAPI lists the routes" \
  "$(curl -fsS "http://127.0.0.1:$API_PORT/openapi.json" | jq -c '[.paths | keys[] | select(startswith("/v1/platforms"))]')" \
  '["/v1/platforms","/v1/platforms/{name}","/v1/platforms/{name}/{action}"]'

# ---- delete ----
# The controller adds its finalizer on the first reconcile; once it has,
# deletion marks the platform and the controller removes it after the
# uninstall (nothing is installed: every component is disabled).
wait_until "the controller's finalizer" 30 sh -c \
  "ctl get platforms fm -o json | jq -e '.metadata.finalizers | index(\"observability.synaxis.io/finalizer\")'"
expect_eq "DELETE: 202" "$(api DELETE /v1/platforms/fm)" 202
expect_ok "the answer is marked" jq -e '.metadata.deletionTimestamp' "$T/body"
# A pause now would stop the uninstall: refused (409) while the record is
# there, 404 once it is gone; never accepted.
code=$(api POST /v1/platforms/fm/pause)
case $code in
  409) expect_ok "pause while deleting: says why" grep -q "being deleted" "$T/body" ;;
  404) ok "pause while deleting: already gone" ;;
  *) fail "pause while deleting: $code $(cat "$T/body")" ;;
esac
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API_PORT/v1/platforms/$1")" = 404 ]; }
wait_until "fm gone" 60 gone fm
expect_eq "DeletionRequested recorded once" \
  "$(api GET '/v1/events?kind=ObservabilityPlatform&name=fm' >/dev/null; jq '[.items[] | select(.reason == "DeletionRequested" and .message == "deletion requested by alice")] | length' "$T/body")" 1

# stampctl delete --wait follows one until it is gone.
manifest quick "$V1" "$ALL_OFF" >"$T/quick.yaml"
ctl apply -f "$T/quick.yaml" >/dev/null || fail "apply quick"
wait_until "quick's finalizer" 30 sh -c \
  "ctl get platforms quick -o json | jq -e '.metadata.finalizers | index(\"observability.synaxis.io/finalizer\")'"
out=$(ctl delete platform quick --wait --timeout 60s 2>&1) || fail "delete --wait: $out"
case $out in *"quick: gone"|"platform/quick deleted") ok "delete --wait: $(tail -n 1 <<<"$out")" ;; *) fail "delete --wait: $out" ;; esac
expect_ok "quick gone" gone quick
expect_err "delete of an unknown platform" "platform quick not found" ctl delete platform quick
expect_eq "delete platform without NAME: a usage error" "$(ctl delete platform 2>&1; echo "rc=$?")" \
  "stampctl: delete platform needs the platform's NAME (see 'stampctl delete --help')
rc=2"
expect_err "delete of a stamp takes no --wait" "--wait and --timeout are for platforms" ctl delete some-stamp --wait
expect_eq "nothing left" "$(stored)" 0

finish
