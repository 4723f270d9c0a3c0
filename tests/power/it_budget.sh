#!/usr/bin/env bash
# Power budgets in the controller's decisions (test-driver nodes, 2 x 1000
# MHz, idle 100 W, max 250 W):
#  1. a cluster budget of 500 W cannot power three nodes at full load: the
#     split gives each node at most its model's share, the placement gives no
#     node more CPU than its budget allows (2667 MHz in all: jobs run slower,
#     spread, and those that do not fit wait), the
#     decision says the budget makes goals unreachable; without the budget
#     every job runs.
#  2. a node whose workloads use more than planned (the test driver's VMs
#     each burn a whole core, the jobs were given 500 MHz) violates its own
#     budget; the agent cannot cap test-driver VMs and says so; after k of n
#     periods the controller flags the node and the next placement moves the
#     work away.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin budget
e2e_start_cluster n1:2:1000:8192 n2:2:1000:8192 n3:2:1000:8192
api() { curl -sf -H "Authorization: Bearer $WLM_TOKEN" "$WLM_CONTROLLER$1"; }

wlm power set-budget 500 >/dev/null
for i in 1 2 3 4 5 6; do
  wlm job submit --name b$i --command true --work-seconds 300 --threads 1 --max-speed 1000 \
    --memory 256 --class gold --deadline-in 330 >/dev/null
done
# Each node's CPU stays within what its budget allows under the model.
check_caps() {
  api /v1/power >"$dir/power.json"
  wlm placement --json >"$dir/placement.json"
  e2e_py "
import json, sys
p = json.load(open('$dir/power.json'))
pl = json.load(open('$dir/placement.json'))
budgets = {n['name']: n for n in p['nodes']}
total = sum(n['budget_w'] for n in p['nodes'] if n['on'])
assert total <= 500 + 0.5, 'budgets %.1f W > 500 W' % total
running = 0
total_used = 0
for n in pl['nodes']:
    b = budgets[n['name']]
    used = sum(i['cpu_mhz'] for i in n['instances'] if i['state'] in ('RUNNING', 'STARTING', 'MIGRATING'))
    running += sum(1 for i in n['instances'] if i['state'] == 'RUNNING')
    cap = n['cpu_mhz'] * max(0.0, (b['budget_w'] - b['idle_w']) / (b['max_w'] - b['idle_w'])) if b['budget_w'] > 0 else n['cpu_mhz']
    assert used <= cap + 1, '%s: %.0f MHz allocated, the budget %.1f W allows %.0f' % (n['name'], used, b['budget_w'], cap)
    total_used += used
assert p['cluster_budget_w'] <= 0 or total_used <= 2000 * 3 * (500 - 300) / (750 - 300) + 1, \
    '%.0f MHz allocated in all: 500 W allow 2667' % total_used
print(running)
"
}
two_running() { [ "$(check_caps)" -ge 2 ]; }
e2e_wait 60 "jobs to run under the cluster budget" two_running
for _ in 1 2 3 4 5; do
  r=$(check_caps) || e2e_fail "a node got more CPU than its budget allows"
  [ "$r" -le 3 ] || e2e_fail "$r jobs run: 500 W allow 2667 MHz in all"
  sleep 1
done
wlm power | tee "$dir/power.txt"
queued=$(wlm job list --state ELIGIBLE,PENDING --json | e2e_py "import json,sys; d=json.load(sys.stdin); print(len(d['jobs'] if isinstance(d, dict) else d))")
[ "$queued" -ge 3 ] || e2e_fail "only $queued jobs wait under the budget"
unreachable() { api /v1/power | grep -q 'makes goals unreachable'; }
e2e_wait 30 "the decision to say the budget makes goals unreachable" unreachable
echo "500 W: $(check_caps) jobs run (2667 MHz in all at most), $queued wait; $(api /v1/power | e2e_py "import json,sys; print(json.load(sys.stdin)['budget_note'])")"
grep -q 'cluster budget: 500 W' "$dir/power.txt" || e2e_fail "wlm power does not show the budget"
wlm power set-budget none >/dev/null
six() { [ "$(check_caps)" -eq 6 ]; }
e2e_wait 60 "every job to run without the budget" six
echo "no budget: 6 jobs run on 3 nodes"
for i in 1 2 3 4 5 6; do wlm job cancel "$i" >/dev/null 2>&1 || true; done

# --- 2. a node over its budget again and again is flagged, work moves away
for i in 7 8; do
  wlm job submit --name half$i --command true --work-seconds 600 --threads 1 --max-speed 500 \
    --memory 256 --class silver >/dev/null
done
node_of() { wlm job show "$1" --json | e2e_py "import json,sys; print(json.load(sys.stdin).get('node') or '')"; }
both_run() { [ "$(e2e_job_state 7)" = RUNNING ] && [ "$(e2e_job_state 8)" = RUNNING ]; }
e2e_wait 60 "jobs 7 and 8 to run" both_run
# Put both on one node: give the others no power.
host=$(node_of 7)
for n in n1 n2 n3; do [ "$n" = "$host" ] || wlm nodes set "$n" --power-budget 100 >/dev/null; done
together() { [ "$(node_of 7)" = "$host" ] && [ "$(node_of 8)" = "$host" ] && both_run; }
e2e_wait 60 "jobs 7 and 8 together on $host" together
# 190 W allows 1200 MHz: the plan (2 x 500) fits, the VMs' real use does not.
wlm nodes set "$host" --power-budget 190 >/dev/null
for n in n1 n2 n3; do [ "$n" = "$host" ] || wlm nodes set "$n" --power-budget none >/dev/null; done
violated() { api "/v1/nodes/$host" | e2e_py "
import json,sys
b=json.load(sys.stdin)['power_now'].get('agent',{})
sys.exit(0 if b.get('violations',0)>0 and any(a.get('action')=='cap' and not a.get('ok') for a in b.get('actions',[])) else 1)"; }
e2e_wait 30 "the agent on $host to report the violation and the cap it could not set" violated
flagged() { wlm nodes | awk -v n="$host" '$1==n' | grep -q FLAGGED; }
e2e_wait 60 "$host to be flagged" flagged
grep -q "node flagged: repeated power budget violations.*name=$host" "$dir/controller.log" ||
  e2e_fail "no log line for the flag"
away() { [ "$(node_of 7)" != "$host" ] || [ "$(node_of 8)" != "$host" ]; }
e2e_wait 60 "work to move away from flagged $host" away
echo "$host flagged after repeated violations; jobs now on $(node_of 7) and $(node_of 8)"
echo "it_budget: ok"
