#!/usr/bin/env bash
# Roles and JWKS robustness: a JWKS with an Ed25519 key (which stamp does not
# support) still starts stampd, with a warning naming the kid; a token from
# the identity provider that claims role=operator is a tenant token (403 on
# operator routes, 200 on tenant ones) until its issuer is listed in
# jwt-operator-issuers (and, when set, its kid in jwt-operator-kids); keys
# fetched from a jwks_uri over https (openssl s_server, a CA file) follow a
# rotation: a token under the new kid is accepted after the refresh that its
# unknown kid asked for.
TEST_NAME=auth_roles
. "$(dirname "$0")/lib.sh"

IDP_PID=
stop_idp() {
  [ -n "$IDP_PID" ] || return 0
  kill "$IDP_PID" 2>/dev/null || true
  wait "$IDP_PID" 2>/dev/null || true
  IDP_PID=
}
trap 'stop_idp; crash_stampd; kill_owned; stop_azurite' EXIT

JWT=$STAMP_BIN/stamp-jwt
ISS=https://idp.test
"$JWT" keygen rsa "$T/rsa.pem" || fail keygen
"$JWT" keygen rsa "$T/rsa2.pem" || fail keygen2
"$JWT" jwks idp-rsa="$T/rsa.pem" >"$T/rsa.jwks" || fail jwks
# An Ed25519 key first, as identity providers publish them today.
jq '.keys = [{"kty":"OKP","crv":"Ed25519","kid":"ed-1","use":"sig",
              "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}] + .keys' \
  "$T/rsa.jwks" >"$T/jwks.json" || fail "jwks with Ed25519"

now=$(date +%s)
claims() { # tenant user [role]
  printf '{"iss":"%s","aud":"stamp","sub":"%s","user_id":"%s","tenant_id":"%s","iat":%d,"exp":%d%s}' \
    "$ISS" "$2" "$2" "$1" "$now" $((now + 600)) "${3:+,\"role\":\"$3\"}"
}
OP=$("$JWT" sign RS256 "$T/rsa.pem" idp-rsa "$(claims tenant-a ann operator)") || fail sign
MINT='{"tenant_id":"tenant-b","user_id":"mallory","role":"operator"}'

IDP_ARGS=(--set jwt-algorithms=HS256,RS256 --set "jwt-issuers=$ISS")
start_stampd "${NS_ARGS[@]}" "${IDP_ARGS[@]}" --set "jwt-jwks=$T/jwks.json"
expect_ok "started with the Ed25519 key skipped" grep -q "kid ed-1) skipped: kty OKP" "$T/stampd.log"
expect_ok "the RSA key loaded" grep -q "1 JWKS key(s)" "$T/stampd.log"

# ---- default: no identity-provider issuer grants operator ----
TOKEN=$OP
expect_eq "IdP operator claim: no tokens minted" "$(api POST /v1/tokens -d "$MINT")" 403
expect_eq "IdP operator claim: no stamps listed" "$(api GET /v1/stamps)" 403
expect_eq "IdP operator claim: still a tenant token" "$(api GET /v1/platform/namespaces)" 200
expect_ok "the refusal is logged" grep -q "operator role refused: issuer \"$ISS\"" "$T/stampd.log"
TOKEN=$(cat "$T/client.conf" | sed -n 's/^token: //p')
expect_eq "stampd's own operator token" "$(api GET /v1/stamps)" 200
stop_stampd

# ---- an operator issuer, then restricted to one kid ----
start_stampd "${NS_ARGS[@]}" "${IDP_ARGS[@]}" --set "jwt-jwks=$T/jwks.json" \
  --set "jwt-operator-issuers=$ISS"
TOKEN=$OP
code=$(api POST /v1/tokens -d "$MINT")
case "$code" in 2??) ok "listed issuer: mints tokens ($code)" ;; *) fail "listed issuer: $code $(cat "$T/body")" ;; esac
expect_eq "listed issuer: lists stamps" "$(api GET /v1/stamps)" 200
stop_stampd
start_stampd "${NS_ARGS[@]}" "${IDP_ARGS[@]}" --set "jwt-jwks=$T/jwks.json" \
  --set "jwt-operator-issuers=$ISS" --set jwt-operator-kids=some-other-kid
expect_eq "listed issuer, kid not listed" "$(api GET /v1/stamps)" 403
expect_ok "the kid refusal is logged" grep -q "not in jwt-operator-kids" "$T/stampd.log"
stop_stampd

# ---- plain http is for loopback only ----
out=$("$STAMP_BIN/stampd" --data-dir "$T/d2" --listen "127.0.0.1:$(free_port)" "${IDP_ARGS[@]}" \
  --set jwt-jwks-url=http://192.0.2.1/jwks.json 2>&1) && fail "http to a remote host accepted"
case "$out" in *"plain http only"*) ok "http jwks url to a remote host refused" ;; *) fail "refusal: $out" ;; esac

# ---- JWKS from an https URL, rotated ----
mkdir -p "$T/www"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.pem" -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || fail "certificate"
cp "$T/jwks.json" "$T/www/jwks.json"
IDP_PORT=$(free_port)
(cd "$T/www" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$IDP_PORT" \
   -cert "$T/srv.pem" -key "$T/srv.key") >>"$T/idp.log" 2>&1 &
IDP_PID=$!
wait_until "https JWKS server" 10 curl -fsS --cacert "$T/srv.pem" "https://127.0.0.1:$IDP_PORT/jwks.json"
start_stampd "${NS_ARGS[@]}" "${IDP_ARGS[@]}" --set "jwt-jwks-url=https://127.0.0.1:$IDP_PORT/jwks.json" \
  --set "jwt-jwks-ca-file=$T/srv.pem" --set jwt-jwks-min-refresh=1s
TOKEN=$OP
expect_eq "token under a key from the URL" "$(api GET /v1/platform/namespaces)" 200
# The provider rotates: the new key only.
"$JWT" jwks idp-rsa-2="$T/rsa2.pem" >"$T/www/jwks.new" && mv "$T/www/jwks.new" "$T/www/jwks.json" || fail rotate
TOKEN=$("$JWT" sign RS256 "$T/rsa2.pem" idp-rsa-2 "$(claims tenant-a ann)") || fail sign2
expect_eq "new kid before the refresh" "$(api GET /v1/platform/namespaces)" 401
grep -q "unknown key" "$T/body" || fail "401 reason: $(cat "$T/body")"
end=$(( $(date +%s) + 15 ))
until [ "$(api GET /v1/platform/namespaces)" = 200 ]; do
  [ "$(date +%s)" -lt "$end" ] || fail "new kid never accepted: $(cat "$T/body")"
  sleep 0.2
done
ok "new kid accepted after the refresh"
TOKEN=$OP
expect_eq "rotated-out key refused" "$(api GET /v1/platform/namespaces)" 401
# The provider goes away: the last good keys stay.
stop_idp
TOKEN=$("$JWT" sign RS256 "$T/rsa2.pem" idp-rsa-2 "$(claims tenant-a ann)")
api GET /v1/platform/namespaces >/dev/null
TOKEN=$("$JWT" sign RS256 "$T/rsa2.pem" nobody "$(claims tenant-a ann)")
api GET /v1/platform/namespaces >/dev/null # an unknown kid: a refresh that fails
wait_until "failed refresh logged" 10 grep -q "keeping the last good keys" "$T/stampd.log"
TOKEN=$("$JWT" sign RS256 "$T/rsa2.pem" idp-rsa-2 "$(claims tenant-a ann)")
expect_eq "last good keys kept" "$(api GET /v1/platform/namespaces)" 200
finish
