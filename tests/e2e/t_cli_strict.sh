#!/usr/bin/env bash
# stampctl refuses what it does not understand before sending anything:
# every command with --help, an unknown flag, a missing value and an extra
# argument (exit 2, one message naming the flag and the command, no audit
# entry); --dry-run where stampd has no server-side dry run creates nothing;
# empty or malformed tokens are errors; label selectors, -o name, --tail,
# wait's progress, version, completion, and get -o yaml | apply -f -.
TEST_NAME=cli-strict
. "$(dirname "$0")/lib.sh"

start_stampd "${NS_ARGS[@]}"
apply_template
ops() { env -u STAMP_TOKEN ctl audit --limit 10000 -o json | jq '.items | length'; }
names() { env -u STAMP_TOKEN ctl list -o json | jq -r '[.items[].metadata.name] | sort | join(" ")'; }

ctl deploy --region westeurope --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy-weu
ctl deploy --region eastus --stamp-id 1 --template synaxis-stamp >/dev/null || fail deploy-eus
wait_for synaxis-weu-001 active
wait_for synaxis-eus-001 active
S=synaxis-weu-001
TT=$(tenant_token acme alice)
NS=$(STAMP_TOKEN=$TT ctl ns create strict-1 -o json | jq -r .namespace)
[ -n "$NS" ] || fail "ns create"
STAMP_TOKEN=$TT ctl ns run-pod "$NS" w1 -- --steps 6 --interval-ms 5 >/dev/null || fail pod
TPL=$STAMP_SRC/deploy/templates/synaxis-stamp.yaml

# ---- every command, refused four ways, nothing sent ----
# words|arguments that fill every positional slot (so one more is extra)
CMDS=(
  "deploy|--region westeurope --stamp-id 9 --template synaxis-stamp"
  "wait|$S --for=active" "drain|$S" "activate|$S" "standby|$S" "delete|$S" "backup|$S" "restore|$S --as synaxis-weu-009"
  "scale|$S --pool general --replicas 2" "update|$S --set app.version=2"
  "list|" "get|stamps $S" "describe|stamps $S" "status|$S" "events|$S" "health|$S"
  "frontdoor|" "metrics|$S" "apply|-f $TPL" "templates|synaxis-stamp" "audit|$S"
  "logs|$NS w1" "version|" "help|ns reap" "completion|bash"
  "ns create|b1" "ns list|" "ns get|$NS" "ns activity|$NS" "ns finalize|$NS" "ns reap|$NS"
  "ns pods|$NS" "ns run-pod|$NS p9" "ns logs|$NS w1" "ns annotate|$NS w1 k=v" "ns volume|$NS v1"
  "ns run|$NS --bundle abc" "ns sweep|" "bundle push|$TPL" "bundle list|" "runs|"
  "mttc verify|--bucket b --bundle h" "token create|--tenant t --user u"
  "rollout|--template synaxis-stamp --to-revision 2" "rollout status|r1" "rollout pause|r1" "rollout resume|r1"
  "rollout abort|r1" "platform pause|p1" "platform resume|p1"
  "autoscaler simulate|-f $STAMP_SRC/deploy/autoscaler/synaxis-autoscaler.yaml --trace $STAMP_SRC/deploy/autoscaler/example-trace.csv"
)
listed=$(ctl help | sed -n '/^Commands:/,/^$/p' | grep -c '^  [a-z]')
expect_eq "the test covers every command of 'stampctl help'" "$listed" "${#CMDS[@]}"

before_ops=$(ops)
before_names=$(names)
bad=0
# run WANT_RC WANT_MSG cmd...: exit status and exact stderr
check() {
  local want_rc=$1 want=$2 out rc
  shift 2
  out=$("$@" 2>&1 >/dev/null) && rc=0 || rc=$?
  if [ "$rc" != "$want_rc" ] || [ "$out" != "$want" ]; then
    log "MISMATCH: $* -> exit $rc: $out (want exit $want_rc: $want)"
    bad=$((bad + 1))
  fi
}
for row in "${CMDS[@]}"; do
  words=${row%%|*}
  args=${row#*|}
  see="(see 'stampctl $words --help')"
  # shellcheck disable=SC2086
  {
    out=$(ctl $words $args --help 2>&1) && rc=0 || rc=$?
    if [ $rc != 0 ] || ! grep -q "^Usage: stampctl $words" <<<"$out"; then
      log "MISMATCH: $words --help -> $rc: $(head -n 2 <<<"$out")"
      bad=$((bad + 1))
    fi
    check 2 "stampctl: unknown flag --no-such-flag for $words $see" ctl $words $args --no-such-flag
    check 2 "stampctl: unknown flag -Z for $words $see" ctl $words -Z $args
    check 2 "stampctl: flag -o needs a value for $words $see" ctl $words $args -o
    check 2 "stampctl: flag --server needs a value for $words $see" ctl $words $args --server
    case $words in
      "ns annotate") ;; # takes any number of KEY=VALUE
      *) check 2 "stampctl: unexpected argument \"extra-arg\" for $words $see" ctl $words $args extra-arg ;;
    esac
  }
done
expect_eq "every command: --help, unknown flag, missing value, extra argument" "$bad" 0
expect_ok "ns --help lists its subcommands" sh -c "ctl ns --help | grep -q 'ns run-pod NS POD'"
expect_eq "ns without a subcommand" "$(ctl ns 2>&1 >/dev/null; echo "rc=$?")" \
  "stampctl: ns needs a subcommand: create, list, get, activity, finalize, reap, pods, run-pod, logs, annotate, volume, run, sweep (see 'stampctl ns --help')
rc=2"

# The issue's own examples.
check 2 "stampctl: unknown flag --grace-perod for drain (see 'stampctl drain --help')" ctl drain $S --grace-perod=60m
check 2 "stampctl: unknown flag --stat for list (see 'stampctl list --help')" ctl list --stat=ready
check 2 "stampctl: unexpected argument \"extra-arg\" for list (see 'stampctl list --help')" ctl list extra-arg
check 2 "stampctl: invalid value \"bogus\" for --state of list: expected creating, active, draining, ready, deleting, deleted or failed (see 'stampctl list --help')" ctl list --state=bogus
check 2 "stampctl: invalid value \"xml\" for -o of list: expected json, yaml, wide or name (see 'stampctl list --help')" ctl list -o xml
check 2 "stampctl: invalid value \"finished\" for --status of ns list: expected active, finalized, reaping or reaped (see 'stampctl ns list --help')" ctl ns list --status finished
check 2 "stampctl: invalid value \"60 minutes\" for --grace-period of drain: it is not a duration like 90s, 60m or 1h30m (see 'stampctl drain --help')" ctl drain $S --grace-period "60 minutes"
expect_err "unknown region" "unknown region" ctl deploy --region westeurop --stamp-id 9 --template synaxis-stamp
expect_eq "the examples refused" "$bad" 0
t0=$(date +%s%N)
check 2 "stampctl: invalid value \"activ\" for --for of wait: expected creating, active, draining, ready, deleting, deleted or failed (see 'stampctl wait --help')" ctl wait --for=activ $S
expect_ok "wait --for=activ refused at once" test $(( ($(date +%s%N) - t0) / 1000000 )) -lt 2000
expect_eq "wait --for=activ" "$bad" 0

# --dry-run: stampd ignores query parameters it does not know, so without
# its dryRun feature the client refuses rather than deploy for real.
out=$(ctl deploy --region westeurope --stamp-id 6 --template synaxis-stamp --dry-run 2>&1) && rc=0 || rc=$?
if [ $rc = 2 ]; then
  case $out in *"needs server-side dry run"*"nothing was sent"*) ok "deploy --dry-run refused: $out" ;; *) fail "deploy --dry-run message: $out" ;; esac
elif [ $rc = 0 ]; then
  ok "deploy --dry-run answered by a server with dry run"
else
  fail "deploy --dry-run: exit $rc: $out"
fi
for c in "drain $S --dry-run" "delete $S --dry-run" "apply -f $TPL --dry-run"; do
  # shellcheck disable=SC2086
  out=$(ctl $c 2>&1) && rc=0 || rc=$?
  [ $rc = 2 ] || [ $rc = 0 ] || fail "$c: exit $rc: $out"
done
expect_eq "no stamp created or removed by any of it" "$(names)" "$before_names"
expect_eq "$S still Active" "$(phase $S)" Active
expect_eq "no audit entry from any refused command" "$(ops)" "$before_ops"

# The gate itself, against a stand-in server that records what it gets: a
# dry run goes out (as ?dryRun=All) only when GET /version lists "dryRun".
fake_api() { # FEATURES_JSON LOGFILE PORTFILE
  python3 - "$1" "$2" "$3" <<'PY' &
import http.server, json, sys
features, logf, portf = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body):
        b = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        open(logf, "a").write("GET " + self.path + "\n")
        if self.path == "/version" and features is not None:
            self.reply(200, {"version": "fake", "features": features})
        else:
            self.reply(404, {"error": {"code": "NotFound", "message": "no such endpoint"}})
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); self.rfile.read(n)
        open(logf, "a").write("POST " + self.path + "\n")
        self.reply(200, {"metadata": {"name": "synaxis-weu-006"}, "status": {"phase": "Creating"}, "dryRun": True})
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(portf, "w").write(str(s.server_address[1]))
s.serve_forever()
PY
  FAKE_PID=$!
  for _ in $(seq 50); do [ -s "$3" ] && break; sleep 0.1; done
  FAKE_URL=http://127.0.0.1:$(cat "$3")
}
FAKE_PID=
trap '[ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; crash_stampd; kill_owned; stop_azurite' EXIT
DEPLOY6=(deploy --region westeurope --stamp-id 6 --template synaxis-stamp --dry-run --token a.b.c)
fake_api null "$T/fake1.log" "$T/fake1.port"
expect_eq "no /version: dry run refused" "$(ctl --server "$FAKE_URL" "${DEPLOY6[@]}" >/dev/null 2>&1; echo $?)" 2
expect_eq "no /version: only GET /version was sent" "$(cat "$T/fake1.log")" "GET /version"
kill "$FAKE_PID"
fake_api '["other"]' "$T/fake2.log" "$T/fake2.port"
expect_err "/version without dryRun: refused" "nothing was sent" ctl --server "$FAKE_URL" "${DEPLOY6[@]}"
expect_eq "/version without dryRun: no POST" "$(grep -c POST "$T/fake2.log")" 0
kill "$FAKE_PID"
fake_api '["dryRun"]' "$T/fake3.log" "$T/fake3.port"
expect_ok "/version with dryRun: sent" ctl --server "$FAKE_URL" "${DEPLOY6[@]}"
ctl --server "$FAKE_URL" --token a.b.c drain $S --dry-run >/dev/null || fail "drain --dry-run to a dry-run server"
expect_eq "dry runs carry dryRun=All" "$(grep POST "$T/fake3.log")" "POST /v1/stamps?dryRun=All
POST /v1/stamps/$S/drain?dryRun=All"
kill "$FAKE_PID"

# ---- tokens: given on purpose, used or refused, never replaced ----
expect_eq "STAMP_TOKEN= list" "$(STAMP_TOKEN= ctl list 2>&1 >/dev/null; echo "rc=$?")" \
  "stampctl: STAMP_TOKEN is empty; give a token, or unset it to use the client config's token
rc=2"
expect_eq "STAMP_TOKEN=' ' list" "$(STAMP_TOKEN=' ' ctl list >/dev/null 2>&1; echo $?)" 2
expect_err "malformed STAMP_TOKEN" "STAMP_TOKEN is not a token" env STAMP_TOKEN=not-a-jwt ctl list
expect_err "malformed --token" "--token is not a token" ctl list --token "a.b c.d"
expect_eq "--token= list" "$(ctl list --token= >/dev/null 2>&1; echo $?)" 2
expect_err "a well-formed but wrong token goes to stampd, which refuses it" "" env STAMP_TOKEN=a.b.c ctl list
expect_ok "no STAMP_TOKEN: the client config's token" env -u STAMP_TOKEN ctl list

# ---- selectors, -o name, get, describe ----
expect_eq "list -l region=westeurope" "$(ctl list -l region=westeurope -o name)" "stamp/$S"
expect_eq "get stamps -o name" "$(ctl get stamps -o name | sort | tr '\n' ' ')" "stamp/synaxis-eus-001 stamp/synaxis-weu-001 "
expect_eq "get st -l region!=westeurope" "$(ctl get st -l 'region!=westeurope' -o name)" "stamp/synaxis-eus-001"
expect_eq "get -l -o json keeps the list shape" "$(ctl get stamps -l region=eastus -o json | jq '.items | length')" 1
expect_eq "get -l with no match" "$(ctl get stamps -l region=nowhere 2>&1)" "No stamps found."
expect_err "bad selector" "selector" ctl get stamps -l '=x'
expect_ok "get stamps NAME table" sh -c "ctl get stamps $S | grep -q '^$S '"
expect_ok "describe stamp" sh -c "ctl describe stamp $S | grep -q '^Phase: *Active'"
expect_ok "get ns -A (operator)" sh -c "env -u STAMP_TOKEN ctl get ns -A -o name | grep -qx namespace/$NS"
expect_eq "get ns with the tenant's token" "$(STAMP_TOKEN=$TT ctl get namespaces -o name)" "namespace/$NS"
expect_ok "describe ns" sh -c "STAMP_TOKEN=$TT ctl describe ns $NS | grep -q '^Namespace: *$NS'"
expect_err "get unknown kind" "unknown kind" ctl get widgets
expect_eq "healthchecks read back (none applied here)" "$(ctl get hc 2>&1)" "No healthchecks found."

# ---- apply what get -o yaml prints ----
expect_eq "get templates NAME -o yaml | apply -f -" \
  "$(ctl get templates synaxis-stamp -o yaml | ctl apply -f - 2>&1)" "stamptemplate/synaxis-stamp unchanged"
expect_eq "get templates -o yaml (a List) | apply -f -" \
  "$(ctl get templates -o yaml | ctl apply -f - 2>&1)" "stamptemplate/synaxis-stamp unchanged"

# ---- logs --tail ----
wait_until "w1 done" 20 sh -c "[ \"\$(STAMP_TOKEN=$TT ctl ns pods $NS -o json | jq -r '.pods[0].phase')\" = Succeeded ]"
STAMP_TOKEN=$TT ctl ns logs "$NS" w1 >"$T/full.log" || fail "ns logs"
[ "$(wc -l <"$T/full.log")" -gt 2 ] || fail "w1 wrote $(wc -l <"$T/full.log") lines; the test needs more than 2"
expect_eq "ns logs --tail=2" "$(STAMP_TOKEN=$TT ctl ns logs "$NS" w1 --tail=2)" "$(tail -n 2 "$T/full.log")"
expect_eq "logs NS POD --tail 1" "$(STAMP_TOKEN=$TT ctl logs "$NS" w1 --tail 1)" "$(tail -n 1 "$T/full.log")"

# ---- version, help, completion, events ----
out=$(ctl --version) || fail "--version"
case $out in "client: stampctl "*"server: "*) ok "--version: $(tr '\n' ' ' <<<"$out")" ;; *) fail "--version: $out" ;; esac
expect_eq "version = --version" "$(ctl version)" "$out"
expect_ok "help drain" sh -c "ctl help drain | grep -q -- '--grace-period DURATION'"
expect_ok "completion bash parses" sh -c "ctl completion bash | bash -n"
expect_ok "completion bash knows drain's flags" sh -c "ctl completion bash | grep -q -- '--grace-period'"
expect_ok "completion zsh" sh -c "ctl completion zsh | grep -q bashcompinit"
expect_eq "completion fish" "$(ctl completion fish >/dev/null 2>&1; echo $?)" 2
out=$(ctl events 2>&1) && rc=0 || rc=$?
case "$rc:$out" in 0:*|1:*"no fleet-wide events endpoint"*) ok "events without a name: $rc" ;; *) fail "events: $rc $out" ;; esac

# ---- wait shows progress ----
ctl deploy --region westeurope --stamp-id 2 --template synaxis-stamp >/dev/null || fail deploy-2
ctl wait --for=active synaxis-weu-002 --progress >"$T/wait.out" 2>"$T/wait.err" || fail "wait: $(cat "$T/wait.err")"
expect_ok "wait --progress: elapsed, phase and limit on stderr" \
  grep -qE '^stampctl: waited [0-9a-z.]+ for synaxis-weu-002 to be active; now Creating.*gives up in' "$T/wait.err"
expect_ok "wait's changes on stdout" grep -q 'synaxis-weu-002: Active' "$T/wait.out"

# ---- delete -f ----
printf 'apiVersion: stamp.synaxis.io/v1\nkind: StampTemplate\nmetadata:\n  name: synaxis-stamp\n' >"$T/tpl.yaml"
expect_err "delete -f of a template" "can delete only stamps" ctl delete -f "$T/tpl.yaml"
expect_ok "template still there" ctl get templates synaxis-stamp
expect_eq "delete NAME -f FILE" "$(ctl delete $S -f "$T/tpl.yaml" >/dev/null 2>&1; echo $?)" 2
ctl get stamps synaxis-eus-001 -o yaml >"$T/eus.yaml"
expect_ok "delete -f what get -o yaml printed" sh -c "ctl delete -f $T/eus.yaml --force | grep -q 'stamp/synaxis-eus-001: delete --force requested'"
wait_for synaxis-eus-001 deleted

finish
