#!/usr/bin/env bash
# Tokens and tenancy on seed 004's API: HS256 from the local secret, RS256
# and ES256 from a JWKS file chosen by kid; every forged token is 401
# (alg none, HS256 signed with the RSA public key, expired, wrong aud, wrong
# iss, bad signature, unknown kid, no tenant); another tenant's namespace is
# 404 for reads, reaps and everything else, and absent from its lists.
TEST_NAME=auth
. "$(dirname "$0")/lib.sh"

JWT=$STAMP_BIN/stamp-jwt
"$JWT" keygen rsa "$T/rsa.pem" || fail keygen-rsa
"$JWT" keygen rsa "$T/rsa-other.pem" || fail keygen-rsa2
"$JWT" keygen ec "$T/ec.pem" || fail keygen-ec
"$JWT" jwks idp-rsa="$T/rsa.pem" idp-ec="$T/ec.pem" >"$T/jwks.json" || fail jwks
"$JWT" pubkey "$T/rsa.pem" >"$T/rsa.pub" || fail pubkey

start_stampd "${NS_ARGS[@]}" --set jwt-algorithms=HS256,RS256,ES256 --set "jwt-jwks=$T/jwks.json"
expect_ok "jwks loaded" grep -q "2 JWKS key(s)" "$T/stampd.log"

now=$(date +%s)
claims() { # tenant user [exp-offset] [aud] [iss]
  printf '{"iss":"%s","aud":"%s","sub":"%s","user_id":"%s","tenant_id":"%s","iat":%d,"exp":%d}' \
    "${5:-stampd}" "${4:-stamp}" "$2" "$2" "$1" "$now" $((now + ${3:-600}))
}
b64() { basenc --base64url -w0 | tr -d '='; }

RS=$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa "$(claims tenant-a ann)") || fail sign-rs
ES=$("$JWT" sign ES256 "$T/ec.pem" idp-ec "$(claims tenant-b ben)") || fail sign-es
HS=$(tenant_token tenant-c cid)

TOKEN=$RS
expect_eq "RS256 token from the JWKS" "$(api GET /v1/platform/namespaces)" 200
TOKEN=$ES
expect_eq "ES256 token from the JWKS" "$(api GET /v1/platform/namespaces)" 200
TOKEN=$HS
expect_eq "HS256 token from stampctl token create" "$(api GET /v1/platform/namespaces)" 200

# ---- forged and wrong tokens: all 401, with a reason ----
forged() { # desc token [want-substring]
  TOKEN=$2
  local code
  code=$(api GET /v1/platform/namespaces)
  if [ "$code" = 401 ] && { [ -z "${3:-}" ] || grep -q "$3" "$T/body"; }; then ok "401: $1"
  else fail "$1: got $code $(cat "$T/body")"; fi
}
payload=$(claims tenant-a ann | b64)
forged "alg none" "$(printf '{"alg":"none","typ":"JWT"}' | b64).$payload." "algorithm not accepted"
forged "alg none with a kid" "$(printf '{"alg":"none","kid":"idp-rsa"}' | b64).$payload." "algorithm not accepted"
printf '%s' "$(cat "$T/rsa.pub")" >"$T/rsa.pub.secret"
forged "HS256 signed with the RSA public key" "$("$JWT" sign HS256 "$T/rsa.pub.secret" idp-rsa "$(claims tenant-a ann)")" "does not match the key"
forged "HS256 with the public key, no kid" "$("$JWT" sign HS256 "$T/rsa.pub" - "$(claims tenant-a ann)")" "bad signature"
forged "expired" "$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa "$(claims tenant-a ann -3600)")" "expired"
forged "wrong audience" "$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa "$(claims tenant-a ann 600 other-api)")" "aud"
forged "wrong issuer" "$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa "$(claims tenant-a ann 600 stamp evil)")" "iss"
forged "bad signature (another RSA key)" "$("$JWT" sign RS256 "$T/rsa-other.pem" idp-rsa "$(claims tenant-a ann)")" "bad signature"
forged "RS256 token naming the EC key" "$("$JWT" sign RS256 "$T/rsa.pem" idp-ec "$(claims tenant-a ann)")" "does not match"
forged "unknown kid" "$("$JWT" sign RS256 "$T/rsa.pem" nobody "$(claims tenant-a ann)")" "unknown key"
forged "tampered payload" "$(echo "$RS" | cut -d. -f1).$(claims tenant-b ann | b64).$(echo "$RS" | cut -d. -f3)" "bad signature"
forged "no tenant_id" "$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa '{"iss":"stampd","aud":"stamp","user_id":"x","exp":'$((now + 600))'}')" "tenant_id"
forged "tenant_id with a path" "$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa "$(claims ../etc ann)")" "tenant_id"
forged "garbage" "not.a.token" ""
forged "empty" "" ""

# ---- roles ----
TOKEN=$RS
expect_eq "tenant token on an operator endpoint" "$(api GET /v1/stamps)" 403
expect_eq "tenant cannot mint tokens" "$(api POST /v1/tokens -d '{"tenant_id":"x","user_id":"y"}')" 403
expect_eq "tenant cannot sweep the reaper" "$(api POST /v1/platform/reaper/sweep)" 403

# ---- tenancy: tenant-a's namespace is invisible to tenant-b ----
export STAMP_TOKEN=$RS
ctl ns create shared-name >/dev/null || fail "a creates"
NS=livecalc-bucket-shared-name
ctl ns run-pod $NS w1 -- --steps 2 --interval-ms 5 >/dev/null || fail "a pod"
echo "model" >"$T/model.bin"
H=$(ctl bundle push "$T/model.bin" -o json | jq -r .hash)
TOKEN=$ES
for req in "GET /v1/platform/namespaces/$NS" "POST /v1/platform/namespaces/$NS/finalize" \
  "POST /v1/platform/namespaces/$NS/activity" "POST /v1/platform/namespaces/$NS/reap" \
  "POST /v1/platform/namespaces/$NS/reap?dry_run=true" "GET /v1/platform/namespaces/$NS/pods" \
  "GET /v1/platform/namespaces/$NS/pods/w1/log"; do
  expect_eq "other tenant: $req" "$(api $req)" 404
  grep -q '"tenant-a"\|"w1"' "$T/body" && fail "404 body leaks: $(cat "$T/body")"
done
expect_eq "other tenant: start a pod" "$(api POST /v1/platform/namespaces/$NS/pods -d '{"name":"x"}')" 404
expect_eq "other tenant: annotate" "$(api POST /v1/platform/namespaces/$NS/pods/w1/annotations -d '{"a":"b"}')" 404
expect_eq "other tenant: run" "$(api POST /v1/platform/namespaces/$NS/runs -d '{"model_bundle_hash":"'$H'"}')" 404
expect_eq "other tenant: list is empty" "$(STAMP_TOKEN=$ES ctl ns list -o json | jq .count)" 0
expect_eq "other tenant: no bundles" "$(STAMP_TOKEN=$ES ctl bundle list -o json | jq '.bundles | length')" 0
expect_eq "other tenant: eligible list" "$(STAMP_TOKEN=$ES ctl ns reap --dry-run -o json | jq .count)" 0
expect_err "other tenant: reap via stampctl" "not found" env STAMP_TOKEN=$ES ctl ns reap $NS
expect_err "other tenant: same bucket is taken (names are global)" "exists" env STAMP_TOKEN=$ES ctl ns create shared-name
expect_eq "still active for its owner" "$(ns_status $NS)" active
expect_eq "owner sees it" "$(ctl ns list -o json | jq -r '.namespaces[0].namespace')" "$NS"
expect_eq "operator sees all tenants with -A" "$(env -u STAMP_TOKEN ctl ns list -A -o json | jq -r '[.namespaces[].tenant_id] | unique | join(",")')" tenant-a
# The audit names user, tenant, namespace and bucket.
a=$(env -u STAMP_TOKEN ctl audit --limit 200 -o json | jq -c '[.items[] | select(.operation == "create" and .name == "'$NS'")][0]')
expect_eq "audit create" "$(jq -r '"\(.user) \(.tenant) \(.details.bucket_id // .detail.bucket_id // "")"' <<<"$a")" "ann tenant-a shared-name"
finish
