#!/usr/bin/env bash
# Energy accounting end to end on test-driver nodes: a job's energy keeps
# growing across a move to another node (forced by a per-node power budget:
# the test driver's migration is suspend -> restore through shared storage),
# `wlm job show` prints it, and the workloads' energy plus what the agents
# kept for the nodes adds up to the nodes' totals within 1 %. Bad budgets are
# refused with the field named and change nothing.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin energy
e2e_start_cluster n1:2:1000:4096 n2:2:1000:4096
api() { curl -sf -H "Authorization: Bearer $WLM_TOKEN" "$WLM_CONTROLLER$1"; }

# --- bad input: refused, named, nothing changed
expect_refused() { # EXPECTED_TEXT COMMAND...
  local want=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || e2e_fail "accepted: $* ($out)"
  grep -q -- "$want" <<<"$out" || e2e_fail "'$*' said '$out', expected '$want'"
  echo "refused: $* -> $out"
}
expect_refused "negative" wlm power set-budget -5
expect_refused "not a number" wlm power set-budget lots
expect_refused "physical maximum" wlm power set-budget 100000
expect_refused "not registered" wlm nodes set nosuch --power-budget 150
expect_refused "physical maximum" wlm nodes set n1 --power-budget 251
expect_refused "negative" wlm nodes set n1 --power-budget -1
code=$(curl -s -o "$dir/bad.json" -w '%{http_code}' -X PUT -H "Authorization: Bearer $WLM_TOKEN" \
  -d '{"budget_w": "high"}' "$WLM_CONTROLLER/v1/power")
[ "$code" = 400 ] && grep -q budget_w "$dir/bad.json" || e2e_fail "string budget: $code $(cat "$dir/bad.json")"
api /v1/power | e2e_py "
import json,sys
p=json.load(sys.stdin)
assert p['cluster_budget_w']==0, p
assert all(n['override_w'] is None for n in p['nodes']), p
" || e2e_fail "a refused budget changed something"

# --- an app instance: its energy per instance in `wlm app show`
cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 128,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
wlm app deploy -f "$dir/web.json" >/dev/null

# --- a job runs, then its node gets a budget at idle power: it must move
wlm job submit --name e1 --command true --work-seconds 60 --threads 1 --max-speed 1000 \
  --memory 512 --class gold >/dev/null
job_running() { [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 60 "the job to run" job_running
job_node() { wlm job show 1 --json | e2e_py "import json,sys; print(json.load(sys.stdin).get('node') or '')"; }
first=$(job_node)
job_j() { api /v1/energy/jobs/1 | e2e_py "import json,sys; print(json.load(sys.stdin)['energy_j'])"; }
has_energy() { e2e_py "import sys; sys.exit(0 if float('$(job_j)') > 0 else 1)"; }
e2e_wait 30 "energy attributed to the job" has_energy
sleep 3
before=$(job_j)
echo "job 1 runs on $first, $before J so far"
wlm nodes set "$first" --power-budget 100 >/dev/null
moved() { local n; n=$(job_node); [ -n "$n" ] && [ "$n" != "$first" ] && [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 90 "the job to leave $first (budget at idle power)" moved
e2e_job_was 1 MIGRATING || e2e_job_was 1 SUSPENDED || e2e_fail "the job moved without a migration or suspend"
after_move=$(job_j)
sleep 4
later=$(job_j)
echo "job 1 moved to $(job_node): $after_move J after the move, $later J 4 s later"
e2e_py "
import sys
b,a,l=float('$before'),float('$after_move'),float('$later')
sys.exit(0 if a>=b and l>a else 1)" || e2e_fail "the job's energy did not carry over the move ($before -> $after_move -> $later)"
wlm job show 1 | grep -E '^  energy: +[0-9.]+ Wh' || e2e_fail "wlm job show has no energy line"
# And back: the job returns to the node it left, whose agent still has its
# old running total for the job; the energy goes on from where it was (the
# test driver's migration is a suspend -> restore through shared storage).
second=$(job_node)
m1=$(job_j)
wlm nodes set "$first" --power-budget none >/dev/null
wlm nodes set "$second" --power-budget 100 >/dev/null
back() { [ "$(job_node)" = "$first" ] && [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 90 "the job to move back to $first" back
sleep 4
m2=$(job_j)
e2e_py "import sys; sys.exit(0 if float('$m2') > float('$m1') else 1)" ||
  e2e_fail "the job's energy did not go on after moving back ($m1 -> $m2)"
echo "job 1 moved back to $first: $m1 J -> $m2 J"
first=$second # the node with the budget now, for the checks below
# Budget shown by wlm nodes; it stayed (override) after the move.
wlm nodes | awk -v n="$first" '$1==n' | grep -q ' 100.0' || e2e_fail "wlm nodes does not show the budget of $first"

app_energy() { wlm app show web | grep -E '^energy: [0-9.]+ Wh' >/dev/null &&
  wlm app show web | grep -qE '^  web-[0-9]+ +[0-9.]+ Wh'; }
e2e_wait 30 "wlm app show web to list energy per instance" app_energy
wlm app show web | grep -A3 '^energy:'

# --- sums: workloads + unattributed = node totals (1 %)
api /v1/energy >"$dir/energy.json"
e2e_py "
import json,sys
e=json.load(open('$dir/energy.json'))
nodes=sum(n['energy_j'] for n in e['nodes'])
un=sum(n['unattributed_j'] for n in e['nodes'])
wl=sum(j['energy_j'] for j in e['jobs'])+sum(i['energy_j'] for i in e['instances'])
err=abs(wl+un-nodes)/nodes
print('node totals %.1f J, workloads %.1f J, unattributed %.1f J, error %.4f %%' % (nodes, wl, un, 100*err))
sys.exit(0 if nodes>0 and err<0.01 else 1)" || e2e_fail "energy does not add up to the node totals"
per_node=$(e2e_py "
import json
e=json.load(open('$dir/energy.json'))
print(' '.join('%s:%.0f' % (n['name'], n['attributed_j']) for n in e['nodes']))")
echo "attributed per node: $per_node"

# --- metrics carry the figures
curl -s "$WLM_CONTROLLER/metrics" >"$dir/metrics.txt"
grep -q '^wlm_node_power_watts{node="n1"}' "$dir/metrics.txt" || e2e_fail "no wlm_node_power_watts"
grep -q '^wlm_node_power_budget_watts{node="'"$first"'"} 100' "$dir/metrics.txt" || e2e_fail "no budget metric"
grep -q '^wlm_workload_energy_joules_total{kind="job",name="1"}' "$dir/metrics.txt" || e2e_fail "no job energy metric"
if command -v promtool >/dev/null; then
  promtool check metrics <"$dir/metrics.txt" || e2e_fail "promtool rejects the controller's metrics"
  echo "promtool: controller metrics ok"
else
  echo "promtool not installed (scripts/install-deps test)"; exit 1
fi

# --- the dashboard's power view draws every node's power and budget and
# lists the job's energy (headless Chromium, after the scripts ran)
chromium=${WLM_CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then
  timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --user-data-dir="$dir/chrome" \
    --virtual-time-budget=6000 --dump-dom "$WLM_CONTROLLER/dashboard/#token=$WLM_TOKEN" \
    >"$dir/dom.html" 2>"$dir/chromium.log" || true
  for n in n1 n2; do
    grep -q "class=\"power-line\"[^>]*data-node=\"$n\"" "$dir/dom.html" ||
      e2e_fail "the power view has no power line for $n"
  done
  grep -q "class=\"budget-line\"[^>]*data-node=\"$first\"" "$dir/dom.html" ||
    e2e_fail "the power view has no budget line for $first"
  grep -q '<td>job-1</td>' "$dir/dom.html" || e2e_fail "the power view does not list job 1's energy"
  if [ -n "${WLM_BUILD_DIR:-}" ]; then
    timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --user-data-dir="$dir/chrome" \
      --virtual-time-budget=6000 --window-size=1280,1900 --screenshot="$WLM_BUILD_DIR/power-dashboard.png" \
      "$WLM_CONTROLLER/dashboard/#token=$WLM_TOKEN" >>"$dir/chromium.log" 2>&1 || true
  fi
  echo "dashboard power view: power and budget lines per node, job energy listed"
else
  e2e_fail "no $chromium for the dashboard check (scripts/install-deps browser)"
fi

# --- energy survives a controller restart
kill "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
stored=$(e2e_py "import json; print([j for j in json.load(open('$dir/energy.json'))['jobs'] if j['name']=='1'][0]['energy_j'])")
port=${WLM_CONTROLLER##*:}
"$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --router-url "http://$E2E_ROUTER_ADMIN" \
  --app-port-base "$E2E_PORT_BASE" --simulate-jobs --flow-period-ms 1000 --placement-period-ms 2000 \
  --node-lost-after-ms 5000 >"$dir/controller2.log" 2>&1 &
pids[1]=$!
wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || e2e_fail "controller did not restart"
kept() { e2e_py "import sys; sys.exit(0 if float('$(job_j)') >= float('$stored') else 1)"; }
e2e_wait 10 "the job's energy after a controller restart" kept
echo "after a controller restart job 1 has $(job_j) J (>= $stored)"
echo "it_energy: ok"
