#!/usr/bin/env bash
# stampctl autoscaler simulate on the shipped example (no stampd): every
# decision and the summary must be what the rules give.  The expectations
# are derived here from the trace and the manifest by a second, independent
# model written in Python (the rules of decide.h, the load model of
# simulate.h), never copied from a run; then a few story points are checked
# straight from the trace so a failure reads plainly.  Also: bad input is
# refused with the line or field named, and usage errors exit 2.
TEST_NAME=as_simulate
. "$(dirname "$0")/lib.sh"

AS=$STAMP_SRC/deploy/autoscaler/synaxis-autoscaler.yaml
TRACE=$STAMP_SRC/deploy/autoscaler/example-trace.csv
INITIAL=westeurope:1,eastus:1,ready:1

ctl autoscaler simulate -f "$AS" --trace "$TRACE" --initial "$INITIAL" -o json >"$T/sim.json" 2>"$T/sim.err" ||
  fail "simulate -o json: $(cat "$T/sim.err")"
jq -e '.summary and .decisions' "$T/sim.json" >/dev/null || fail "simulate -o json is not the documented shape"
ok "simulate runs on the example offline (no stampd, no client config)"

# The independent model: reads the manifest and the trace, replays the
# rules, and prints the decisions and the summary it expects; then compares
# them with simulate's.
python3 - "$AS" "$TRACE" "$INITIAL" "$T/sim.json" >"$T/oracle.out" 2>&1 <<'PY'
import json, math, re, sys

as_path, trace_path, initial, sim_path = sys.argv[1:5]

def dur(s):
    total, n = 0, ''
    for part in re.findall(r'(\d+)(ms|s|m|h|d)', s):
        total += int(part[0]) * {'ms': 1, 's': 1000, 'm': 60000, 'h': 3600000, 'd': 86400000}[part[1]]
    return total

PERCENT = {'cpu_utilization', 'memory_utilization', 'active_jobs'}
SPREADS = PERCENT | {'active_connections', 'queue_depth'}

def threshold(metric, v):
    if metric == 'request_latency_p99':
        m = re.fullmatch(r'([\d.]+)(ms|s|us)', v)
        return float(m.group(1)) * {'ms': 1e-3, 's': 1, 'us': 1e-6}[m.group(2)]
    return float(v.rstrip('%'))

# The manifest: a line reader for its block-YAML shape.
spec = {'out': [], 'in': [], 'mins': {}, 'interval': 15000, 'regions': []}
sect, cur, mins = None, None, False
for raw in open(as_path):
    line = raw.split('#')[0].rstrip()
    if not line.strip():
        continue
    ind, s = len(line) - len(line.lstrip()), line.strip()
    key, _, val = s.lstrip('- ').partition(':')
    key, val = key.strip(), val.strip()
    if ind == 2:
        mins = key == 'regionMinimums'
        sect = {'scaleOut': 'out', 'scaleIn': 'in'}.get(key)
        if key == 'interval':
            spec['interval'] = dur(val)
        if key == 'regions':
            spec['regions'] = [r.strip() for r in val.strip('[]').split(',')]
        continue
    if mins and ind == 4:
        spec['mins'][key] = int(val)
        continue
    if sect is None:
        continue
    if s.startswith('- '):
        cur = {}
        spec[sect].append(cur)
    if key in ('metric', 'threshold', 'duration') and cur is not None:
        cur[key] = val
    elif key == 'cooldown':
        spec[sect + 'Cooldown'] = dur(val)
    elif key in ('maxStamps', 'minStamps'):
        spec[key] = int(val)
for d in ('out', 'in'):
    for t in spec[d]:
        t['thr'] = threshold(t['metric'], t['threshold'])
        t['dur'] = dur(t['duration'])

CODES = {'westeurope': 'weu', 'eastus': 'eus'}
stamps = []
def add(region, phase, now):
    ids = [int(s['id']) for s in stamps if s['region'] == region]
    k = 1
    while k in ids:
        k += 1
    s = {'name': 'synaxis-%s-%03d' % (CODES[region], k), 'region': region, 'id': '%03d' % k, 'phase': phase,
         'activating': False, 'until': None, 'started': None, 'ready_since': now}
    stamps.append(s)
    return s

items = initial.split(',')
for ready_pass in (False, True):
    for it in items:
        parts = it.split(':')
        if parts[0] == 'ready':
            region, n, ready = spec['regions'][0], int(parts[1]), True
        elif len(parts) == 3:
            region, n, ready = parts[0], int(parts[2]), True
        else:
            region, n, ready = parts[0], int(parts[1]), False
        if ready == ready_pass:
            for _ in range(n):
                add(region, 'Ready' if ready else 'Active', 0)
n0 = sum(1 for s in stamps if s['phase'] == 'Active')

rows = []
for raw in open(trace_path):
    line = raw.split('#')[0].strip()
    if not line or line.startswith('t,'):
        continue
    f = [x.strip() for x in line.split(',')]
    rows.append((round(float(f[0]) * 1000), f[1], None if f[2] in ('', 'missing') else float(f[2]),
                 f[3] if len(f) > 3 and f[3] else None))
end = rows[-1][0]

WARM, COLD, DRAIN = 90000, 420000, 60000
iv = spec['interval']
fleet, over = {}, {}
state = {'out': [0] * 16, 'in': [0] * 16, 'last_out': None, 'last_in': None}
decisions, blocks = [], []
acct = {'active': 0, 'standby': 0, 'starting': 0, 'draining': 0}
summary = {'warm': 0, 'cold': 0, 'drains': 0, 'evals': 0, 'peak': 0, 'blocked': {}, 'over': [0] * len(spec['out'])}
last_block, row_i, t = None, 0, 0

def value(s, metric, nact):
    if (s['name'], metric) in over:
        return over[(s['name'], metric)]
    v = fleet.get(metric)
    if v is None:
        return None
    if metric in SPREADS:
        v = v * n0 / nact
    if metric in PERCENT:
        v = min(v, 100.0)
    return v

while t <= end:
    for s in stamps:
        if s['until'] is not None and s['until'] <= t:
            if s['activating'] or s['phase'] == 'Creating':
                s['phase'], s['activating'] = 'Active', False
            elif s['phase'] == 'Draining':
                s['phase'], s['ready_since'] = 'Ready', s['until']
            s['until'] = None
    while row_i < len(rows) and rows[row_i][0] <= t:
        rt, m, v, st = rows[row_i]
        if st:
            over[(st, m)] = v
        else:
            fleet[m] = v
        row_i += 1
    active = [s for s in stamps if s['phase'] == 'Active']
    nact = len(active)
    evals = {}
    fired = breaching = False
    all_in, missing_in, holding_or_missing = True, None, True
    for d in ('out', 'in'):
        for i, tr in enumerate(spec[d]):
            vals = [value(s, tr['metric'], nact) for s in active]
            rep = [v for v in vals if v is not None]
            has = bool(rep)
            mean = sum(rep) / len(rep) if rep else 0
            complete = has and len(rep) == len(vals)
            if d == 'out':
                br = has and mean > tr['thr']
            else:
                br = complete and (mean <= 0 if tr['thr'] == 0 else mean < tr['thr'])
            if not br:
                state[d][i] = 0
            elif not state[d][i]:
                state[d][i] = t + 1  # +1: 0 means "not", t may be 0
            met = br and t - (state[d][i] - 1) >= tr['dur']
            if d == 'out':
                fired |= met
                breaching |= br
                if br:
                    summary['over'][i] += iv
            else:
                all_in &= met
                miss = [s['name'] for s, v in zip(active, vals) if v is None]
                if not br:
                    if miss:
                        missing_in = missing_in or 'no metric for %s from %s' % (tr['metric'], ', '.join(miss))
                    else:
                        holding_or_missing = False
            evals[(d, i)] = (mean, has)
    serving = lambda r: sum(1 for s in stamps if s['region'] == r and (s['phase'] in ('Active', 'Creating') or s['activating']))
    counted = sum(1 for s in stamps if s['phase'] in ('Active', 'Creating', 'Draining') or s['activating'])
    total_serving = sum(serving(r) for r in spec['regions'])
    floor = max(spec['minStamps'] - total_serving, sum(max(0, spec['mins'].get(r, 0) - serving(r)) for r in spec['regions']))
    acts, block = [], None
    if fired or floor > 0:
        if floor == 0 and state['last_out'] is not None and t - state['last_out'] < spec['outCooldown']:
            block = ('out', 'Cooldown')
        elif counted >= spec['maxStamps']:
            block = ('out', 'MaxStamps')
        else:
            trig = next((i for i, tr in enumerate(spec['out']) if evals[('out', i)][1] and
                         evals[('out', i)][0] > tr['thr'] and t - (state['out'][i] - 1) >= tr['dur']), None)
            def rank(r):
                deficit = spec['mins'].get(r, 0) - serving(r)
                load = None
                if trig is not None:
                    vs = [value(s, spec['out'][trig]['metric'], nact) for s in active if s['region'] == r]
                    vs = [v for v in vs if v is not None]
                    load = sum(vs) / len(vs) if vs else None
                return (-(deficit if deficit > 0 else 0), 0 if load is not None else 1, -(load or 0), serving(r),
                        spec['regions'].index(r))
            warm = [s for s in stamps if s['phase'] == 'Ready' and not s['activating']]
            if warm:
                w = min(warm, key=lambda s: (rank(s['region']), s['ready_since'], s['name']))
                w['activating'], w['started'], w['until'] = True, t, t + WARM
                acts.append('activate ' + w['name'])
                summary['warm'] += 1
            else:
                r = min(spec['regions'], key=rank)
                s = add(r, 'Creating', t)
                s['started'], s['until'] = t, t + COLD
                acts.append('deploy ' + s['name'])
                summary['cold'] += 1
            state['last_out'] = t
    elif all_in and not breaching:
        last = max(x for x in (state['last_in'], state['last_out'], -10**12) if x is not None)
        if t - last < spec['inCooldown']:
            block = ('in', 'Cooldown')
        elif nact - 1 < spec['minStamps']:
            block = ('in', 'MinStamps')
        else:
            def load(s):
                return tuple(value(s, tr['metric'], nact) for tr in spec['in'])
            def ok(s):
                if sum(1 for x in active if x['region'] == s['region']) - 1 < spec['mins'].get(s['region'], 0):
                    return False
                rest = [x for x in active if x is not s]
                return len(rest) >= 2 and len({x['region'] for x in rest}) >= 2
            cands = sorted(active, key=lambda s: (load(s), [-ord(c) for c in s['name']]))
            pick = next((s for s in cands if ok(s)), None)
            if pick is None:
                block = ('in', 'RegionMinimum or FleetRule')
            else:
                pick['phase'], pick['started'], pick['until'] = 'Draining', t, t + DRAIN
                acts.append('drain ' + pick['name'])
                summary['drains'] += 1
                state['last_in'] = t
    elif not breaching and missing_in and holding_or_missing:
        block = ('in', 'MissingMetric')
    for s in stamps:
        if s['phase'] == 'Active':
            acct['active'] += iv
        elif s['phase'] == 'Creating' or s['activating']:
            acct['starting'] += iv
        elif s['phase'] == 'Draining':
            acct['draining'] += iv
        elif s['phase'] == 'Ready':
            acct['standby'] += iv
    summary['peak'] = max(summary['peak'], sum(1 for s in stamps if s['phase'] in ('Active', 'Creating', 'Draining') or s['activating']))
    summary['evals'] += 1
    if block:
        summary['blocked'][block[1]] = summary['blocked'].get(block[1], 0) + 1
    if acts:
        decisions.append((t // 1000, ', '.join(acts)))
    if block and block != last_block:
        blocks.append((t // 1000, block[0], block[1]))
    last_block = block
    t += iv

# simulate's own answer
sim = json.load(open(sim_path))
got_dec, got_blk = [], []
for k in sim['decisions']:
    d = k['decision']
    if d['actions']:
        got_dec.append((round(k['t']), ', '.join('%s %s' % (a['action'], a['stamp']) for a in d['actions'])))
    b = d.get('blocked')
    if b and not d['actions'] and k['decided']:
        got_blk.append((round(k['t']), 'out' if b['direction'] == 'scaleOut' else 'in', b['rule']))
bad = 0
def check(what, got, want):
    global bad
    if got != want:
        print('MISMATCH %s:\n  simulate: %s\n  expected: %s' % (what, got, want))
        bad += 1
    else:
        print('ok %s: %s' % (what, want if len(str(want)) < 300 else str(want)[:300] + '...'))
check('actions (time s, what)', got_dec, decisions)
check('blocks when the rule changes (time s, direction, rule)', got_blk, blocks)
S = sim['summary']
check('evaluations', S['evaluations'], summary['evals'])
check('warm activations', S['warmActivations'], summary['warm'])
check('cold deploys', S['coldDeploys'], summary['cold'])
check('drains', S['drains'], summary['drains'])
check('peak counted', S['peakCounted'], summary['peak'])
check('blocked evaluations by rule', S['blocked'], summary['blocked'])
for i, tr in enumerate(spec['out']):
    check('minutes over %s' % tr['metric'], round(S['overThreshold'][i]['minutes'], 6), round(summary['over'][i] / 60000, 6))
for k in acct:
    check('stamp-hours ' + k, round(S['stampHours'][k], 6), round(acct[k] / 3600000, 6))
check('stamp-hours total', round(S['stampHours']['total'], 6), round(sum(acct.values()) / 3600000, 6))
# Story points read straight from the trace, for a failure that reads plainly.
first_breach = next(r[0] for r in rows if r[1] == 'cpu_utilization' and r[3] is None and r[2] is not None and r[2] > spec['out'][0]['thr'])
first_tick = -(-first_breach // iv) * iv
check('the first scale-out is the warm stamp, one cpu duration after the first breach',
      got_dec[0], ((first_tick + spec['out'][0]['dur']) // 1000, 'activate synaxis-weu-002'))
check('the second scale-out is a cold deploy', got_dec[1][1].split()[0], 'deploy')
check('scale-in drains, one per cooldown', [d for d in got_dec if d[1].startswith('drain')][1][0] -
      [d for d in got_dec if d[1].startswith('drain')][0][0], spec['inCooldown'] // 1000)
sys.exit(1 if bad else 0)
PY
rc=$?
cat "$T/oracle.out" | while IFS= read -r l; do log "  $l"; done
[ $rc -eq 0 ] || fail "simulate's decisions or summary differ from what the rules give (see above)"
ok "decisions and summary are what the rules give"

# The shape of the story, from the record: each action says why.
expect_eq "the warm activation names its trigger" \
  "$(jq -r '[.decisions[] | select(.decision.action == "activate")][0].decision.reason' "$T/sim.json")" \
  "cpu_utilization 85% > 70% for 5m of 5m"
expect_ok "a scale-out during its cooldown says how long is left" \
  jq -e '[.decisions[].decision.blocked.reason // empty] | any(test("^scale-out blocked: cooldown 9m45s left"))' "$T/sim.json"
expect_ok "minStamps stops the last scale-in" \
  jq -e '[.decisions[].decision.blocked.reason // empty] | any(. == "scale-in blocked: minStamps 2 reached (2 Active)")' "$T/sim.json"
expect_ok "a stamp without data blocks scale-in, named" \
  jq -e '[.decisions[].decision.blocked.reason // empty] | any(. == "scale-in blocked: no metric for cpu_utilization from synaxis-weu-001")' "$T/sim.json"
expect_ok "the short latency spike never scaled out" \
  jq -e '[.decisions[].decision | select(.actions | length > 0) | .reason] | all(test("request_latency") | not)' "$T/sim.json"
expect_ok "the spike shows in the minutes over its threshold" \
  jq -e '.summary.overThreshold[] | select(.metric == "request_latency_p99") | .minutes > 0' "$T/sim.json"
expect_ok "transitions take the model's times" \
  jq -e '[.decisions[].events[]] | (any(test("synaxis-weu-002 is Active \\(warm activation, 1m30s\\)")) and any(test("is Active \\(cold deploy, 7m\\)")))' "$T/sim.json"

# The text output tells the same story as -o json.
ctl autoscaler simulate -f "$AS" --trace "$TRACE" --initial "$INITIAL" >"$T/sim.txt" 2>&1 || fail "simulate (text): $(tail -3 "$T/sim.txt")"
expect_eq "text and JSON list the same actions" \
  "$(grep -cE '^[0-9]+:[0-9]{2}:[0-9]{2} +(activate|deploy|drain|retire) ' "$T/sim.txt")" \
  "$(jq '[.decisions[] | select(.decision.actions | length > 0)] | length' "$T/sim.json")"
expect_ok "text summary: warm activations against cold deploys" \
  grep -qE "^  warm activations +$(jq .summary.warmActivations "$T/sim.json")$" "$T/sim.txt"
expect_ok "text summary: stamp-hours" \
  grep -qE "^  stamp-hours +$(jq -r '.summary.stampHours.total * 100 | round / 100 | tostring' "$T/sim.json")" "$T/sim.txt"
expect_ok "-o yaml" sh -c "ctl autoscaler simulate -f '$AS' --trace '$TRACE' --initial '$INITIAL' -o yaml | grep -q '^summary:'"

# Other fleets and timings change the outcome as the rules say: with no
# warm stamp the first scale-out deploys; a paused autoscaler never acts.
ctl autoscaler simulate -f "$AS" --trace "$TRACE" --initial westeurope:1,eastus:1 --cold 5m -o json >"$T/cold.json" ||
  fail "simulate without a warm stamp"
expect_eq "no warm stamp: the first scale-out deploys" \
  "$(jq -r '[.decisions[] | select(.decision.actions | length > 0)][0].decision.actions[0].action' "$T/cold.json")" deploy
expect_eq "--cold sets the deploy time" \
  "$(jq -r '[.decisions[].events[] | select(test("cold deploy"))][0]' "$T/cold.json" | sed 's/.*(cold deploy, \(.*\))/\1/')" 5m
sed 's/^  paused: false.*/  paused: true/' "$AS" >"$T/paused.yaml"
ctl autoscaler simulate -f "$T/paused.yaml" --trace "$TRACE" --initial "$INITIAL" -o json >"$T/paused.json" ||
  fail "simulate paused"
expect_eq "paused: no action" "$(jq '.summary.warmActivations + .summary.coldDeploys + .summary.drains' "$T/paused.json")" 0
expect_ok "paused: says what it would do" \
  jq -e '[.decisions[].decision.blocked.reason // empty] | any(test("^paused: would activate synaxis-weu-002"))' "$T/paused.json"
printf 't,metric,value\n0,cpu_utilization,50\n30,cpu_utilization,50\n' >"$T/short.csv"
expect_ok "--speed paces a replay and finishes" ctl autoscaler simulate -f "$AS" --trace "$T/short.csv" --speed 1000

# Bad input is refused with the line or field named; usage errors exit 2.
printf 't,metric,value\n0,cpu_utilization,50\n10,cpu_utilisation,50\n' >"$T/bad.csv"
expect_err "a bad trace line is named" "trace line 3: metric \"cpu_utilisation\"" \
  ctl autoscaler simulate -f "$AS" --trace "$T/bad.csv"
printf '0,cpu_utilization,50\n20,cpu_utilization,50\n10,cpu_utilization,50\n' >"$T/order.csv"
expect_err "rows out of order are refused" "trace line 3: t 10 is before the row above" \
  ctl autoscaler simulate -f "$AS" --trace "$T/order.csv"
sed 's/threshold: 500ms/threshold: 500/' "$AS" >"$T/nounit.yaml"
expect_err "a latency threshold without a unit names the field" \
  "spec.scaleOut.triggers[2].threshold: 500 has no unit: request_latency_p99 is a time, write 500ms" \
  ctl autoscaler simulate -f "$T/nounit.yaml" --trace "$TRACE"
expect_err "an unknown region in --initial" "--initial: \"atlantis\" is not a region" \
  ctl autoscaler simulate -f "$AS" --trace "$TRACE" --initial atlantis:2
rc=0
ctl autoscaler simulate -f "$AS" >"$T/usage.out" 2>&1 || rc=$?
expect_eq "no --trace is a usage error (exit 2)" "$rc" 2
expect_ok "the usage error names the flag" grep -q -- "--trace" "$T/usage.out"
expect_ok "--help" sh -c "ctl autoscaler simulate --help | grep -q 'Replay a StampAutoscaler'"
finish
