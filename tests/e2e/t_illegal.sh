#!/usr/bin/env bash
# Bad input gets a clear error and changes nothing: illegal operations name
# the phase and what it allows; bad names, regions, manifests, bodies and
# tokens are refused.
TEST_NAME=illegal
. "$(dirname "$0")/lib.sh"

start_stampd
apply_template
# A template whose app takes 3 s to become healthy, to catch Creating.
sed -e 's/name: synaxis-stamp/name: slow-stamp/' \
    -e 's|"--state-dir", "${STATE_DIR}"\]|"--state-dir", "${STATE_DIR}", "--health-delay-ms", "3000"]|' \
    "$STAMP_SRC/deploy/templates/synaxis-stamp.yaml" >"$T/slow.yaml"
apply_template "$T/slow.yaml"
ctl deploy --region westeurope --stamp-id 7 --template slow-stamp >/dev/null || fail deploy
S=synaxis-weu-007
expect_err "drain while Creating" "stamp $S is Creating: drain is not allowed (Creating blocks routing traffic and accepting connections; it allows: view, delete, delete --force)" ctl drain $S
expect_err "activate while Creating" "is Creating: activate is not allowed" ctl activate $S
expect_err "backup while Creating" "is Creating: backup is not allowed" ctl backup $S
wait_for $S active
expect_err "activate while Active" "is Active: activate is not allowed (Active blocks infrastructure changes (requires new stamp); it allows: view, drain, standby, delete, delete --force, backup, update, scale, rollout)" ctl activate $S
expect_err "deploy over an Active stamp" "is Active: deploy is not allowed" ctl deploy --region westeurope --stamp-id 7 --template slow-stamp
ctl drain $S >/dev/null && wait_for $S ready
expect_err "drain while Ready" "is Ready: drain is not allowed (Ready blocks infrastructure modifications; it allows: view, activate, delete, delete --force, backup, rollout)" ctl drain $S
expect_err "standby while Ready" "is Ready: standby is not allowed" ctl standby $S
expect_eq "refusals changed nothing" "$(phase $S)" Ready

# Names, regions, ids, templates.
expect_err "unknown region" "unknown region \"atlantis\"" ctl deploy --region atlantis --stamp-id 1 --template synaxis-stamp
expect_err "bad stamp id" "only lowercase letters and digits" ctl deploy --region eastus --stamp-id ../x --template synaxis-stamp
expect_err "unknown template" "template nope not found" ctl deploy --region eastus --stamp-id 1 --template nope
expect_err "no such stamp" "not found" ctl status synaxis-weu-999
expect_err "bad stamp name" "not a valid stamp name" ctl status 'Bad..Name'
expect_eq "nothing was created" "$(ctl list -o json | jq '.items | length')" 1

# Manifests: errors name the field; YAML and JSON are checked the same way.
cat >"$T/bad1.yaml" <<'Y'
apiVersion: stamp.synaxis.io/v1
kind: StampTemplate
metadata: {name: bad}
spec:
  phases:
    - name: compute
      steps:
        - {name: app, kind: process, pool: tpu, command: [x]}
Y
expect_err "bad pool named" "spec.phases[0].steps[0].pool" ctl apply -f "$T/bad1.yaml"
printf '{"apiVersion":"stamp.synaxis.io/v1","kind":"StampTemplate","metadata":{"name":"bad"},"spec":{"phases":[{"name":"compute","steps":[{"name":"app","kind":"process","pool":"tpu","command":["x"]}]}]}}' >"$T/bad1.json"
expect_err "same error from JSON" "spec.phases[0].steps[0].pool" ctl apply -f "$T/bad1.json"
printf 'kind: StampTemplate\nmetadata: {name: x}\nspec: {phases: []}\nextra: 1\n' >"$T/bad2.yaml"
expect_err "unknown top-level field" "manifest.extra: unknown field" ctl apply -f "$T/bad2.yaml"
printf 'kind: StampTemplate\nmetadata:\n  name: x\n  name: y\n' >"$T/bad3.yaml"
expect_err "duplicate key" "duplicate key" ctl apply -f "$T/bad3.yaml"
printf 'kind: Gizmo\nmetadata: {name: x}\nspec: {}\n' >"$T/bad4.yaml"
expect_err "unknown kind" "kind: \"Gizmo\"" ctl apply -f "$T/bad4.yaml"
expect_eq "no bad template stored" "$(ctl templates -o json | jq '.items | length')" 2

# Raw HTTP: malformed, oversized, deeply nested bodies; tokens.
TOKEN=$(sed -n 's/^token: //p' "$STAMP_CONFIG")
API=http://127.0.0.1:$API_PORT
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
expect_eq "no token" "$(code "$API/v1/stamps")" 401
expect_eq "garbage token" "$(code -H 'Authorization: Bearer abc.def.ghi' "$API/v1/stamps")" 401
# alg none with the same claims
payload=$(printf '%s' "$TOKEN" | cut -d. -f2)
none_hdr=$(printf '{"alg":"none","typ":"JWT"}' | base64 -w0 | tr '+/' '-_' | tr -d '=')
expect_eq "alg none" "$(code -H "Authorization: Bearer $none_hdr.$payload." "$API/v1/stamps")" 401
# a tampered payload keeps the old signature
sig=$(printf '%s' "$TOKEN" | cut -d. -f3)
hdr=$(printf '%s' "$TOKEN" | cut -d. -f1)
evil=$(printf '{"iss":"stampd","aud":"stamp","user_id":"mallory","tenant_id":"system","role":"operator","exp":9999999999}' | base64 -w0 | tr '+/' '-_' | tr -d '=')
expect_eq "tampered payload" "$(code -H "Authorization: Bearer $hdr.$evil.$sig" "$API/v1/stamps")" 401
expect_eq "healthz needs no token" "$(code "$API/healthz")" 200
A=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
expect_eq "malformed JSON" "$(code "${A[@]}" -d '{"region":' "$API/v1/stamps")" 400
expect_ok "malformed JSON says where" grep -q "line 1" "$T/body"
head -c 2000000 /dev/zero | tr '\0' 'a' >"$T/big"
expect_eq "oversized body" "$(code "${A[@]}" --data-binary @"$T/big" "$API/v1/stamps")" 413
deep=$(printf '%.0s[' $(seq 100))$(printf '%.0s]' $(seq 100))
expect_eq "deeply nested body" "$(code "${A[@]}" -d "{\"a\":$deep}" "$API/v1/stamps")" 400
expect_eq "unknown body field" "$(code "${A[@]}" -d '{"region":"eastus","stampId":"1","template":"synaxis-stamp","colour":"red"}' "$API/v1/stamps")" 400
expect_ok "error shape" sh -c "jq -e '.error.code == \"BadRequest\" and .status == 400' '$T/body'"
expect_eq "unknown action" "$(code "${A[@]}" -X POST "$API/v1/stamps/$S/explode")" 404
expect_eq "unknown endpoint" "$(code "${A[@]}" "$API/v1/nothing")" 404
expect_eq "wrong method" "$(code "${A[@]}" -X PUT "$API/v1/stamps")" 405
expect_eq "nothing changed" "$(ctl list -o json | jq -r '[.items[].status.phase] | join(",")')" Ready
expect_ok "refusals are audited" sh -c "ctl audit -o json | jq -e '[.items[] | select(.result != \"ok\")] | length >= 3'"
finish
