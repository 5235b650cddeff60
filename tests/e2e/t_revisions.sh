#!/usr/bin/env bash
# Template revisions (issue 13): applying a changed template keeps the old
# revision; a stamp records the revision it was deployed from and runs that
# revision's spec (its workloads report the application version the
# revision's declared parameter gives); unknown revisions are refused;
# `get templates NAME --revisions` counts the stamps of each; the kept
# revisions are bounded but keep the ones a live stamp records.
TEST_NAME=revisions
. "$(dirname "$0")/lib.sh"

start_stampd
TOKEN=$(sed -n 's/^token: *//p' "$STAMP_CONFIG")
TPL=$STAMP_SRC/deploy/templates/synaxis-stamp.yaml
apply_template "$TPL"
tj() { ctl get templates synaxis-stamp -o json | jq -r "$1"; }
expect_eq "first apply is revision 1" "$(tj .metadata.generation) $(tj .status.revision)" "1 1"
expect_eq "one revision kept" "$(tj '.status.revisions | length')" 1

# Revision 2: the application version's default becomes "2".
sed 's/      default: "1"/      default: "2"/' "$TPL" >"$T/rev2.yaml"
grep -q 'default: "2"' "$T/rev2.yaml" || fail "rev2.yaml: the default was not changed"
expect_ok "apply revision 2" sh -c "ctl apply -f '$T/rev2.yaml' | grep -q configured"
expect_eq "revision 2 current" "$(tj .metadata.generation) $(tj .status.revision)" "2 2"
expect_ok "same spec again: unchanged" sh -c "ctl apply -f '$T/rev2.yaml' | grep -q unchanged"
sed 's/^  name: synaxis-stamp$/  name: synaxis-stamp\n  labels: {team: core}/' "$T/rev2.yaml" >"$T/rev2-labels.yaml"
ctl apply -f "$T/rev2-labels.yaml" >/dev/null || fail "apply labels"
expect_eq "a labels-only change is no revision" "$(tj .metadata.generation) $(tj '.status.revisions | length')" "2 2"
ctl get templates synaxis-stamp --revisions -o json >"$T/revs.json" || fail "revisions -o json"
expect_eq "two revisions listed, newest first" "$(jq -r '[.items[].revision] | join(",")' "$T/revs.json")" "2,1"
expect_eq "list kind" "$(jq -r .kind "$T/revs.json")" StampTemplateRevisionList
expect_eq "revision 2 is current" "$(jq -r '[.items[].current] | join(",")' "$T/revs.json")" "true,false"
expect_eq "old spec kept" "$(jq -r '.items[1].spec.parameters["app.version"].default' "$T/revs.json")" 1
expect_eq "new spec" "$(jq -r '.items[0].spec.parameters["app.version"].default' "$T/revs.json")" 2
expect_ok "appliedAt and appliedBy" jq -e '.items[0].appliedAt != null and (.items[0].appliedBy | type) == "string"' "$T/revs.json"

# One revision by the API, and its refusals.
expect_eq "GET ?revision=1" "$(api GET '/v1/templates/synaxis-stamp?revision=1')" 200
expect_eq "revision 1's spec" "$(jq -r '.spec.parameters["app.version"].default, .metadata.generation' "$T/body" | tr '\n' ' ')" "1 1 "
expect_eq "GET ?revision=9: 404" "$(api GET '/v1/templates/synaxis-stamp?revision=9')" 404
expect_ok "404 names the kept revisions" grep -q 'has no revision 9 (revisions kept: 2, 1' "$T/body"
expect_eq "GET ?revision=x: 400" "$(api GET '/v1/templates/synaxis-stamp?revision=x')" 400
expect_eq "GET ?rev=1 (unknown parameter): 400" "$(api GET '/v1/templates/synaxis-stamp?rev=1')" 400
expect_eq "revisions of no template: 404" "$(api GET /v1/templates/nothing/revisions)" 404
expect_ok "get --revision 1" sh -c "ctl get templates synaxis-stamp --revision 1 -o json | jq -e '.spec.parameters[\"app.version\"].default == \"1\"'"

# Deploy revision 1 explicitly, and the current one (2) by default.
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp --revision 1 >/dev/null || fail "deploy --revision 1"
ctl deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail "deploy current"
ctl deploy --region westeurope --stamp-id 2 --template synaxis-stamp --param app.version=7 >/dev/null || fail "deploy --param app.version=7"
expect_eq "weu-001 records revision 1" "$(jfield synaxis-weu-001 .spec.templateRevision)" 1
expect_eq "weu-001 runs revision 1's spec" "$(jfield synaxis-weu-001 '.spec.templateSpec.parameters["app.version"].default')" 1
expect_eq "eus-001 records revision 2" "$(jfield synaxis-eus-001 .spec.templateRevision)" 2
expect_eq "weu-002 records revision 2" "$(jfield synaxis-weu-002 .spec.templateRevision)" 2
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
wait_for synaxis-weu-002 active
version_of() {
  curl -fsS -D - -o /dev/null "http://$(endpoint "$1")/work?ms=1" | tr -d '\r' | sed -n 's/^X-App-Version: //Ip'
}
expect_eq "revision 1's workload reports version 1 (its default)" "$(version_of synaxis-weu-001)" 1
expect_eq "revision 2's workload reports version 2" "$(version_of synaxis-eus-001)" 2
expect_eq "a dotted --param replaces the default" "$(version_of synaxis-weu-002)" 7
expect_eq "/health says the version" "$(curl -fsS "http://$(endpoint synaxis-weu-001)/health")" "ok version 1"

# Unknown and malformed revisions are refused; nothing is created.
expect_err "deploy --revision 9 refused" "has no revision 9 (revisions kept: 2, 1" \
  ctl deploy --region eastus --stamp-id 9 --template synaxis-stamp --revision 9
expect_eq "POST revision 9: 404" "$(api POST /v1/stamps -H 'Content-Type: application/json' \
  -d '{"region":"eastus","stampId":"9","template":"synaxis-stamp","revision":9}')" 404
expect_eq "POST revision 0: 400" "$(api POST /v1/stamps -H 'Content-Type: application/json' \
  -d '{"region":"eastus","stampId":"9","template":"synaxis-stamp","revision":0}')" 400
expect_ok "400 says what a revision is" grep -q 'revision: must be an integer >= 1' "$T/body"
expect_eq "POST revision \"1\": 400" "$(api POST /v1/stamps -H 'Content-Type: application/json' \
  -d '{"region":"eastus","stampId":"9","template":"synaxis-stamp","revision":"1"}')" 400
expect_eq "POST a bad parameter name: 400" "$(api POST /v1/stamps -H 'Content-Type: application/json' \
  -d '{"region":"eastus","stampId":"9","template":"synaxis-stamp","parameters":{"a..b":"1"}}')" 400
expect_eq "no stamp 9" "$(ctl list -o json | jq '[.items[] | select(.metadata.name == "synaxis-eus-009")] | length')" 0
ctl deploy --region eastus --stamp-id 9 --template synaxis-stamp --revision 0 >/dev/null 2>"$T/err"
rc=$?
expect_eq "--revision 0 is a usage error" "$rc" 2
expect_ok "usage error says why" grep -q "revision is a whole number >= 1" "$T/err"
expect_err "--revisions needs templates NAME" "need templates NAME" ctl get stamps --revisions

# The table and the other outputs.
ctl get templates synaxis-stamp --revisions >"$T/table.txt" || fail "revisions table"
cat "$T/table.txt"
expect_ok "table header" sh -c "head -n1 '$T/table.txt' | grep -Eq '^REVISION +CURRENT +APPLIED +BY +STAMPS'"
expect_eq "revision 2: current, 2 stamps" "$(awk '$1 == 2 {print $2, $NF}' "$T/table.txt")" "* 2"
expect_eq "revision 1: 1 stamp" "$(awk '$1 == 1 {print $NF}' "$T/table.txt")" 1
expect_eq "-o name" "$(ctl get templates synaxis-stamp --revisions -o name | tr '\n' ' ')" "revision/2 revision/1 "
expect_ok "-o yaml" sh -c "ctl get templates synaxis-stamp --revisions -o yaml | grep -q 'kind: StampTemplateRevisionList'"
expect_ok "get templates shows the revision" sh -c "ctl get templates | grep -Eq '^synaxis-stamp +2 '"

# Validation names the field (the same code apply runs).
sed 's/          kind: process/          kind: process\n          change: sometimes/' "$TPL" >"$T/bad.yaml"
expect_err "bad change class named" "steps[0].change: \"sometimes\" is not one of application, infrastructure" ctl apply -f "$T/bad.yaml"
sed 's/    gpu: {minReplicas: 0, maxReplicas: 10}/    gpu: {minReplicas: 0, maxReplicas: 0}/' "$TPL" >"$T/bad2.yaml"
expect_err "a step above its pool's bounds" "replicas: 1 is above spec.pools.gpu.maxReplicas 0" ctl apply -f "$T/bad2.yaml"
expect_eq "refused applies made no revision" "$(tj .metadata.generation)" 2

# Bounded: 11 more revisions keep the newest 10 plus 1 and 2, which live
# stamps record; revision 3 is gone.
for i in $(seq 3 13); do
  sed "s/^  namePrefix: synaxis$/  namePrefix: synaxis\n  description: revision $i/" "$T/rev2.yaml" >"$T/rev$i.yaml"
  ctl apply -f "$T/rev$i.yaml" >/dev/null || fail "apply revision $i"
done
expect_eq "current is 13" "$(tj .status.revision)" 13
expect_eq "kept: newest 10 and those in use" "$(tj '[.status.revisions[].revision] | join(",")')" "1,2,4,5,6,7,8,9,10,11,12,13"
expect_err "revision 3 dropped" "has no revision 3" ctl deploy --region eastus --stamp-id 9 --template synaxis-stamp --revision 3
expect_ok "revision 1 still deploys (dry run)" sh -c \
  "ctl deploy --region eastus --stamp-id 9 --template synaxis-stamp --revision 1 --dry-run -o json | jq -e '.spec.templateRevision == 1'"
finish
