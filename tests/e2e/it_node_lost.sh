#!/usr/bin/env bash
# A node stops heartbeating (its agent is killed with -9): the controller
# marks it LOST, replaces its web application instance on another node, and
# restarts its job elsewhere with the reason recorded; the job completes.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin lost
e2e_start_cluster n1:2:1000:2048 n2:2:1000:2048
cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 256,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
wlm app deploy -f "$dir/web.json" >/dev/null
wlm job submit --name long --command true --work-seconds 40 --threads 1 --max-speed 1000 \
  --memory 512 --class gold >/dev/null
job_running() { [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 60 "the job to run" job_running
# The problem of the controller's last decision replays in `wlm plan` to the
# same placement (one decision core, same inputs).
curl -sf -H "Authorization: Bearer $WLM_TOKEN" "$WLM_CONTROLLER/v1/placement/snapshot?of=last" \
  >"$dir/last.json" || e2e_fail "no snapshot of the last decision"
wlm plan --snapshot "$dir/last.json" --json >"$dir/replay.json" || e2e_fail "wlm plan refused the snapshot"
e2e_py "
import json, sys
a = json.load(open('$dir/last.json'))['decision']
b = json.load(open('$dir/replay.json'))
key = lambda d: sorted((x['workload'], x['node'], round(x['cpu_mhz'], 6)) for x in d['placement'])
if key(a) != key(b) or abs(a['min_utility'] - b['min_utility']) > 1e-5:
    sys.exit('controller %s %r / replay %s %r' % (key(a), a['min_utility'], key(b), b['min_utility']))
" || e2e_fail "wlm plan on the controller's snapshot decided differently"
echo "the last decision replays in wlm plan"
job_node() { wlm job show 1 --json | e2e_py "import json,sys; print(json.load(sys.stdin)['node'])"; }
inst_node() { wlm placement --json | e2e_py "
import json,sys
for n in json.load(sys.stdin)['nodes']:
    for i in n['instances']:
        if i['kind']=='app' and i['state']=='RUNNING': print(n['name'])"; }
has_instance() { [ -n "$(inst_node)" ]; }
e2e_wait 60 "the web instance to run" has_instance
# Power saving consolidates the two onto one node first (a migration and a
# power-off): the node is chosen once that is done, so the job is still
# there when its agent dies.
one_on() { [ "$(e2e_nodes_on)" -eq 1 ]; }
e2e_wait 60 "consolidation onto one node" one_on
sleep 3
victim=$(job_node)
echo "job runs on $victim; web instance on $(inst_node)"
# The agents were started in order n1, n2 after the router and controller.
if [ "$victim" = n1 ]; then vpid=${pids[2]}; else vpid=${pids[3]}; fi
kill -9 "$vpid"
lost() { wlm nodes | awk -v n="$victim" '$1==n && $2=="LOST" {f=1} END {exit !f}'; }
e2e_wait 30 "$victim to be LOST" lost
moved() { local n; n=$(job_node); [ -n "$n" ] && [ "$n" != "$victim" ] && [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 60 "the job to run on the other node" moved
wlm job show 1 --json | grep -q "node $victim lost" || e2e_fail "the reason was not recorded in the job's history"
echo "job restarted on $(job_node) with the reason recorded"
inst_elsewhere() { inst_node | grep -qv "^$victim\$"; }
e2e_wait 60 "the web instance to be replaced on the other node" inst_elsewhere
echo "web instance now on $(inst_node | tr '\n' ' ')"
done_() { [ "$(e2e_job_state 1)" = COMPLETED ]; }
e2e_wait 120 "the job to complete" done_
echo "it_node_lost: ok"
