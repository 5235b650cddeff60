#!/usr/bin/env bash
# The API's conventions: dryRun=All validates and changes nothing (store,
# events, processes, front door, audit); unknown query parameters and a
# dryRun a route does not support are refused; a watch streams a drain's
# phase changes in order, bounded and tenant-scoped; every error is JSON
# (404, 405, 413; 431 is libmicrohttpd's, see stampd(8)); the bearer scheme
# in any case; /version; /openapi.json passes an independent validator;
# times in RFC 3339, decimals as written; reap and finalize idempotent.
TEST_NAME=api_conventions
. "$(dirname "$0")/lib.sh"

start_stampd "${NS_ARGS[@]}" --set api-max-watches=3
OPTOKEN=$(awk '/^token:/ {print $2}' "$STAMP_CONFIG")
URL=http://127.0.0.1:$API_PORT
apply_template
ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy
S=synaxis-weu-001
wait_for $S active
# Settled: the controller records what it applied on a reconcile after
# Active; a snapshot taken before that would see it as a change.
wait_until "status.applied recorded" 20 sh -c "ctl status $S -o json | jq -e '.status.applied' >/dev/null"

# What a dry run must not change.
snapshot() {
  {
    TOKEN=$OPTOKEN api GET /v1/stamps >/dev/null; jq -S '.items | map(del(.status.health, .status.lastProbe, .status.metrics))' "$T/body"
    TOKEN=$OPTOKEN api GET /v1/stamps/$S/events >/dev/null; jq -c '.items | length' "$T/body"
    TOKEN=$OPTOKEN api GET /v1/frontdoor >/dev/null; jq -c '[.servers[] | {name, status}] | sort_by(.name)' "$T/body"
    TOKEN=$OPTOKEN api GET '/v1/audit?limit=10000' >/dev/null; jq -c '.items | length' "$T/body"
    TOKEN=$OPTOKEN api GET /v1/templates/synaxis-stamp >/dev/null; jq -c '.metadata.resourceVersion' "$T/body"
    echo "procs $(procs)"
  } >"$1"
}
snapshot "$T/before"

# ---- 1. dry runs ----
code=$(TOKEN=$OPTOKEN api POST '/v1/stamps?dryRun=All' -H 'Content-Type: application/json' \
  -d '{"region":"westeurope","stampId":"2","template":"synaxis-stamp"}')
expect_eq "deploy dry run: 201 as the real create (and kubectl) answers" "$code" 201
expect_eq "deploy dry run: the stamp it would create" \
  "$(jq -r '[.dryRun, .operation, .metadata.name, .transition.to] | join(" ")' "$T/body")" \
  "true deploy synaxis-weu-002 Creating"
code=$(TOKEN=$OPTOKEN api POST '/v1/stamps?dryRun=All' -d '{"region":"westeurope","stampId":"2","template":"nope"}')
expect_eq "deploy dry run validates the template" "$code" 404
code=$(TOKEN=$OPTOKEN api POST '/v1/stamps?dryRun=All' -d '{"region":"westeurope","stampId":"1","template":"synaxis-stamp"}')
expect_eq "deploy dry run of an Active stamp: the phase refuses it" "$code" 409
code=$(TOKEN=$OPTOKEN api POST "/v1/stamps/$S/drain?dryRun=All")
expect_eq "drain dry run: 200" "$code" 200
expect_eq "drain dry run: the transition" "$(jq -r '[.dryRun, .transition.from, .transition.to] | join(" ")' "$T/body")" \
  "true Active Draining"
code=$(TOKEN=$OPTOKEN api POST "/v1/stamps/$S/activate?dryRun=true")
expect_eq "activate dry run of an Active stamp refused by the phase" "$code" 409
code=$(TOKEN=$OPTOKEN api DELETE "/v1/stamps/$S?dryRun=All")
expect_eq "delete dry run: 200" "$code" 200
expect_eq "delete dry run: desired deleted" "$(jq -r '.spec.desired' "$T/body")" deleted
code=$(TOKEN=$OPTOKEN api POST "/v1/stamps/$S/delete?dryRun=All&force=true")
expect_eq "delete --force dry run: 200" "$code" 200
code=$(TOKEN=$OPTOKEN api POST "/v1/stamps/$S/drain?dryRun=maybe")
expect_eq "dryRun=maybe refused" "$code" 400
yq_json=$(TOKEN=$OPTOKEN api GET /v1/templates/synaxis-stamp >/dev/null; jq -c '{apiVersion: "stamp/v1", kind: "StampTemplate", metadata: {name: .metadata.name, labels: {tier: "dry"}}, spec: .spec}' "$T/body")
code=$(TOKEN=$OPTOKEN api POST '/v1/apply?dryRun=All' -d "$yq_json")
expect_eq "apply dry run: 200" "$code" 200
expect_eq "apply dry run: configured, not stored" "$(jq -r '[.dryRun, .result] | join(" ")' "$T/body")" "true configured"
code=$(TOKEN=$OPTOKEN api POST '/v1/apply?dryRun=All' -d '{"apiVersion":"stamp/v1","kind":"StampTemplate","metadata":{"name":"bad"},"spec":{}}')
expect_eq "apply dry run validates the spec" "$code" 400
sleep 1
snapshot "$T/after"
if diff "$T/before" "$T/after" >"$T/dry.diff"; then ok "dry runs changed nothing (store, events, front door, audit, processes)"
else fail "dry runs changed something: $(cat "$T/dry.diff")"; fi

# ---- 2. query parameters ----
code=$(TOKEN=$OPTOKEN api GET '/v1/stamps?stat=ready')
expect_eq "unknown query parameter: 400" "$code" 400
expect_ok "the message names it" jq -e '.error.message | contains("\"stat\"")' "$T/body"
code=$(TOKEN=$OPTOKEN api POST '/v1/tokens?dryRun=All' -d '{"tenant_id":"t","user_id":"u"}')
expect_eq "dryRun on a route without a dry run: 400, not ignored" "$code" 400
expect_ok "says it has no dry run" grep -q 'has no dry run' "$T/body"
code=$(TOKEN=$OPTOKEN api GET '/v1/audit?limit=abc')
expect_eq "an integer parameter that is not one: 400" "$code" 400
code=$(TOKEN=$OPTOKEN api GET '/v1/stamps?state=Active&region=westeurope')
expect_eq "declared parameters still work" "$code:$(jq -r '.items | length' "$T/body")" "200:1"

# ---- 3. watch ----
curl -sS -N -H "Authorization: Bearer $OPTOKEN" "$URL/v1/watch?kind=Stamp&name=$S" >"$T/watch.out" 2>"$T/watch.err" &
W1=$!
curl -sS -N -H "Authorization: Bearer $OPTOKEN" "$URL/v1/watch" >"$T/watch-all.out" 2>/dev/null &
W2=$!
sleep 0.5
ctl drain $S >/dev/null || fail drain
wait_for $S ready 20s
wait_until "the watch sees Ready" 5 grep -q '"to":"Ready"' "$T/watch.out"
expect_eq "watch: the drain's phase changes in order" \
  "$(jq -r 'select(.event.to) | .event.from + ">" + .event.to' "$T/watch.out" | paste -sd, -)" \
  "Active>Draining,Draining>Ready"
expect_eq "watch: only the stamp asked for" "$(jq -r '.object.name' "$T/watch.out" | sort -u)" "$S"
expect_eq "watch: MODIFIED events" "$(jq -r 'select(.event.to) | .type' "$T/watch.out" | sort -u)" MODIFIED
code=$(TOKEN=$OPTOKEN api GET "/v1/events?kind=Stamp&name=$S&since=0")
expect_eq "events list: the same changes as one answer" \
  "$code:$(jq -r '[.items[] | select(.to) | .from + ">" + .to] | join(",")' "$T/body")" \
  "200:Creating>Active,Active>Draining,Draining>Ready"
curl -sS -N -H "Authorization: Bearer $OPTOKEN" "$URL/v1/watch" >/dev/null 2>&1 &
W3=$!
sleep 0.3
code=$(TOKEN=$OPTOKEN api GET /v1/watch --max-time 2)
expect_eq "api-max-watches (3): the fourth is refused" "$code" 429
expect_eq "and in the one error shape" "$(jq -r .error.code "$T/body")" LimitReached
kill $W1 $W2 $W3 2>/dev/null; wait $W1 $W2 $W3 2>/dev/null
sleep 0.5 # a gone client's slot is freed within a notifier tick
code=$(TOKEN=$OPTOKEN api GET '/v1/watch?since=0&kind=Stamp' --max-time 1)
expect_ok "since=0 replays history (slots of gone clients freed: $code)" grep -q '"type":"ADDED"' "$T/body"
expect_eq "api answers while watches were open" "$(curl -fsS "$URL/healthz")" ok

# ---- 4. errors, auth scheme, version ----
code=$(TOKEN=$OPTOKEN api GET /nope)
expect_eq "unknown route: 404" "$code" 404
expect_eq "404 is JSON" "$(jq -r '.error.code + " " + (.status|tostring)' "$T/body")" "NotFound 404"
code=$(TOKEN=$OPTOKEN api PUT /v1/stamps)
expect_eq "wrong method: 405" "$code" 405
expect_eq "405 is JSON" "$(jq -r .error.code "$T/body")" MethodNotAllowed
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$T/big.json"
code=$(TOKEN=$OPTOKEN api POST /v1/apply --data-binary @"$T/big.json")
expect_eq "too large: 413" "$code" 413
expect_eq "413 is JSON" "$(jq -r .error.code "$T/body")" TooLarge
# Headers past the connection memory (256 KiB) are refused by libmicrohttpd
# itself, before stampd sees the request: 431 with MHD's own short HTML
# body (0.9.75 has no option to change it; stampd(8) says so).
printf 'X-Big: %s\r\n' "$(head -c 300000 /dev/zero | tr '\0' a)" >"$T/bighdr"
code=$(curl -sS -o "$T/body" -w '%{http_code}' -H @"$T/bighdr" "$URL/healthz" 2>/dev/null)
expect_eq "headers too large: 431 (libmicrohttpd's answer)" "$code" 431
code=$(curl -sS -o "$T/body" -w '%{http_code}' -H "Authorization: bearer $OPTOKEN" "$URL/v1/stamps")
expect_eq "lower-case bearer scheme works" "$code" 200
code=$(curl -sS -o "$T/body" -w '%{http_code}' -H "Authorization: BEARER $OPTOKEN" "$URL/v1/stamps")
expect_eq "upper-case BEARER works" "$code" 200
code=$(curl -sS -o "$T/body" -w '%{http_code}' "$URL/version")
expect_eq "/version without a token" "$code" 200
expect_ok "/version has the version" jq -e '.version | test("^[0-9]+\\.[0-9]+\\.[0-9]+$")' "$T/body"
expect_ok "/version lists the dryRun feature (stampctl's gate)" jq -e '.features | index("dryRun")' "$T/body"

# ---- 5. OpenAPI ----
code=$(curl -sS -o "$T/openapi.json" -w '%{http_code}' "$URL/openapi.json")
expect_eq "/openapi.json" "$code" 200
VALIDATOR=$STAMP_SRC/.deps/openapi/node_modules/@apidevtools/swagger-parser
[ -d "$VALIDATOR" ] || fail "$VALIDATOR missing (scripts/install-deps.sh test installs it)"
if out=$(NODE_PATH=$STAMP_SRC/.deps/openapi/node_modules node -e '
  const SwaggerParser = require("@apidevtools/swagger-parser");
  SwaggerParser.validate(process.argv[1]).then(api => {
    console.log("valid " + api.openapi + " " + Object.keys(api.paths).length);
  }).catch(e => { console.error(e.message); process.exit(1); });' "$T/openapi.json" 2>&1); then
  ok "swagger-parser validates the document ($out)"
else
  fail "swagger-parser: $out"
fi
for r in "post /v1/stamps" "get /v1/watch" "post /v1/platform/namespaces/{namespace}/reap" "get /version" "get /openapi.json" "get /healthz"; do
  set -- $r
  expect_ok "openapi lists $1 $2" jq -e --arg p "$2" --arg m "$1" '.paths[$p][$m]' "$T/openapi.json"
done
expect_ok "openapi: dryRun on deploy" jq -e '.paths["/v1/stamps"].post.parameters | map(.name) | index("dryRun")' "$T/openapi.json"

# ---- 6. times and decimals ----
TOKEN=$OPTOKEN api GET /v1/stamps/$S >/dev/null
expect_ok "phaseSince has an RFC 3339 sibling" jq -e '.status.phaseSinceTime | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")' "$T/body"
expect_ok "history entries have a time" jq -e '.status.history[0].time | test("Z$")' "$T/body"
TOKEN=$OPTOKEN api GET /v1/stamps/$S/metrics >/dev/null
expect_ok "no decimal printed past its precision" sh -c "! grep -Eq '[0-9]\\.[0-9]{16,}' '$T/body'"

# ---- 7. idempotent finalize and reap ----
TOKEN=$(tenant_token acme alice)
code=$(api POST '/v1/platform/namespaces?bucket_id=idem1')
expect_eq "namespace created" "$code" 201
NS=livecalc-bucket-idem1
ctl ns run-pod $NS w1 -- --steps 2 --interval-ms 10 >/dev/null || fail pod
wait_until "w1 done" 20 sh -c "ctl ns pods $NS -o json | jq -e '.pods[0].phase == \"Succeeded\"'"
code=$(api POST "/v1/platform/namespaces/$NS/reap?bucket_id=idem1&dryRun=All")
expect_eq "reap dry run: 200" "$code:$(jq -r '.dryRun' "$T/body")" "200:true"
expect_eq "reap dry run changed nothing" "$(ctl ns get $NS -o json | jq -r .status)" active
code=$(api POST "/v1/platform/namespaces/$NS/finalize")
expect_eq "finalize: 200" "$code:$(jq -r .alreadyFinalized "$T/body")" "200:false"
code=$(api POST "/v1/platform/namespaces/$NS/finalize")
expect_eq "finalize twice: 200, already" "$code:$(jq -r .alreadyFinalized "$T/body")" "200:true"
code=$(api POST "/v1/platform/namespaces/$NS/reap?bucket_id=idem1")
expect_eq "reap after finalize: 200 (not 409)" "$code" 200
expect_ok "with the outcome's blob_paths" jq -e '.success and (.diagnostics.blob_paths | length > 0)' "$T/body"
first=$(jq -c .diagnostics.blob_paths "$T/body")
code=$(api POST "/v1/platform/namespaces/$NS/reap?bucket_id=idem1")
expect_eq "reap twice: 200, alreadyReaped" "$code:$(jq -r .alreadyReaped "$T/body")" "200:true"
expect_eq "the same recorded blob_paths" "$(jq -c .diagnostics.blob_paths "$T/body")" "$first"
code=$(api POST "/v1/platform/namespaces/$NS/finalize")
expect_eq "finalize of a reaped namespace: 200" "$code:$(jq -r .alreadyFinalized "$T/body")" "200:true"

# Tenant scoping of watches.
code=$(api GET '/v1/watch?kind=Stamp' --max-time 2)
expect_eq "a tenant may not watch stamps" "$code" 403
curl -sS -N -H "Authorization: Bearer $TOKEN" "$URL/v1/watch?kind=Namespace" >"$T/watch-acme.out" 2>/dev/null &
W4=$!
sleep 0.3
OTHER=$(tenant_token globex bob)
TOKEN=$OTHER api POST '/v1/platform/namespaces?bucket_id=other1' >/dev/null
TOKEN=$TOKEN api POST '/v1/platform/namespaces?bucket_id=mine2' >/dev/null
wait_until "acme's watch sees its namespace" 5 grep -q 'livecalc-bucket-mine2' "$T/watch-acme.out"
kill $W4 2>/dev/null; wait $W4 2>/dev/null
expect_ok "and never another tenant's" sh -c "! grep -q other1 '$T/watch-acme.out'"
code=$(api GET '/v1/events?since=0')
expect_eq "a tenant's event list: its own namespaces only" \
  "$code:$(jq -r '[.items[].name] | unique | map(select(test("other1"))) | length' "$T/body")" "200:0"
expect_ok "and its own are there" jq -e '[.items[].name] | index("livecalc-bucket-mine2")' "$T/body"
# A reaped namespace's bucket taken by another tenant: the new owner sees
# the events of its own namespace, never the earlier tenant's.
expect_eq "globex takes the reaped bucket idem1" "$(TOKEN=$OTHER api POST '/v1/platform/namespaces?bucket_id=idem1')" 201
TOKEN=$OTHER api GET "/v1/events?since=0&kind=Namespace&name=$NS" >/dev/null
expect_ok "globex sees its own creation" jq -e '[.items[].reason] | index("Created")' "$T/body"
expect_eq "and none of acme's events of the same name" \
  "$(jq '[.items[] | select(.message | test("reap|Reap|inaliz"))] | length' "$T/body")" 0

# A stop with a watch open (suspended): the watch ends, stampd exits 0.
curl -sS -N -H "Authorization: Bearer $OPTOKEN" "$URL/v1/watch" >"$T/watch-stop.out" 2>/dev/null &
W5=$!
sleep 0.5
stop_stampd
wait $W5
expect_eq "stampd stopped cleanly with a watch open" "$STAMPD_BAD_EXITS" 0

finish
