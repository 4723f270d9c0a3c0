#!/usr/bin/env bash
# End to end, on real processes: controller + router + node agents (libvirt
# test driver) + a sample web application under generated load + jobs.
#
# Part 1 (three nodes): under moderate load the application meets its goal,
# a dependency chain of jobs completes in order, spare nodes are powered off
# while load is low and one is powered back on when load rises.
# Part 2 (two nodes, full): a load spike makes the controller suspend the
# low-class (bronze) job to make room for a second web instance; when the
# load falls the job is resumed and completes.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
bin=$WLM_BIN_DIR
export PATH=$bin:$PATH
root=$(mktemp -d /tmp/wlm-e2e-XXXXXX)
pids=()
lg=
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"
  e2e_kill_instances
  rm -rf "$root"
}
trap cleanup EXIT

app_spec() { # NAME GOAL_MS
  cat <<JSON
{"name": "$1", "command": "wlm-sampleapp --port {port} --cpu-ms 4 --delay-ms 5 --workers 1",
 "memory_mb": 400, "min_instances": 1, "max_instances": 2, "max_cpu_mhz": 300,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": $2}]}
JSON
}

# Conditions polled by e2e_wait (functions, so they see this shell's helpers).
jobs_completed_at_least() { [ "$(wlm job list --state COMPLETED --json | grep -c '"id"')" -ge "$1" ]; }
web_meets_goal() { local u; u=$(e2e_utility web); [ "$u" != none ] && python3 -c "import sys; sys.exit(0 if float('$u') >= 0 else 1)"; }
nodes_on_below() { [ "$(e2e_nodes_on)" -lt "$1" ]; }
nodes_on_above() { [ "$(e2e_nodes_on)" -gt "$1" ]; }
job_in_state() { [ "$(e2e_job_state "$1")" = "$2" ]; }

load() { # RATE [SECONDS]: replace the load generator
  [ -n "$lg" ] && { kill "$lg" 2>/dev/null || true; wait "$lg" 2>/dev/null || true; }
  wlm-loadgen --target "$E2E_WEB" --stream "/@$1" --report 5 >>"$dir/loadgen.log" 2>&1 &
  lg=$!
  pids+=($lg)
}

############################################################ part 1
dir=$root/p1
mkdir -p "$dir/shared"
e2e_start_cluster n1:1:1000:1024 n2:1:1000:1024 n3:1:1000:1024
app_spec web 60 >"$dir/web.json"
wlm app deploy -f "$dir/web.json" >/dev/null
cat >"$dir/chain.json" <<'JSON'
{"batch": "chain", "jobs": [
 {"name": "a", "command": "true", "work_seconds": 4, "threads": 1, "max_speed_mhz": 500, "memory_mb": 128, "class": "gold"},
 {"name": "b", "command": "true", "work_seconds": 4, "threads": 1, "max_speed_mhz": 500, "memory_mb": 128, "class": "gold",
  "dependencies": [{"kind": "afterok", "on": "a"}]},
 {"name": "c", "command": "true", "work_seconds": 4, "threads": 1, "max_speed_mhz": 500, "memory_mb": 128, "class": "gold",
  "dependencies": [{"kind": "afterok", "on": "b"}]}]}
JSON
wlm job submit -f "$dir/chain.json" >/dev/null
load 15

# Dependency order: c after b after a, all completed.
e2e_wait 120 "the job chain to complete" jobs_completed_at_least 3
wlm job list --json | e2e_py "
import json,sys
jobs={j['name']:j for j in json.load(sys.stdin)['jobs']}
a,b,c=(jobs[n] for n in 'abc')
def start(j):
    import subprocess
    h=json.loads(subprocess.check_output(['wlm','job','show',str(j['id']),'--json']))['history']
    return min(e['t'] for e in h if e['to'] in ('STARTING','RUNNING')), max(e['t'] for e in h if e['to']=='COMPLETED')
sa,ea=start(a); sb,eb=start(b); sc,ec=start(c)
assert ea<=sb and eb<=sc, ('order', ea, sb, eb, sc)
print('chain order ok: a done %.1f <= b start %.1f, b done %.1f <= c start %.1f' % (ea,sb,eb,sc))
" || e2e_fail "jobs did not complete in dependency order"

# Moderate load: the application meets its goal (utility >= 0).
e2e_wait 90 "web utility >= 0 under moderate load" web_meets_goal
echo "web utility under moderate load: $(e2e_utility web)"
# Low load: spare nodes are powered off.
e2e_wait 60 "a node to be powered off" nodes_on_below 3
on_low=$(e2e_nodes_on)
echo "nodes on at low load: $on_low"
# Load rises beyond one instance's CPU: a node is powered back on.
load 90
e2e_wait 120 "a node to be powered back on as load rises" nodes_on_above "$on_low"
echo "nodes on at high load: $(e2e_nodes_on)"
wlm_kill_tree "${pids[@]}"
e2e_kill_instances
pids=(); lg=

############################################################ part 2
dir=$root/p2
mkdir -p "$dir/shared"
e2e_start_cluster n1:1:1000:1024 n2:1:1000:1024
# A looser goal: one instance is plenty at low load (so the job gets its node
# back), hopeless at the spike (so the job has to make room).
app_spec web 200 >"$dir/web.json"
wlm app deploy -f "$dir/web.json" >/dev/null
load 15
wlm job submit --name backfill --command true --work-seconds 70 --threads 1 --max-speed 1000 \
  --memory 700 --class bronze >/dev/null
e2e_wait 60 "the bronze job to run" job_in_state 1 RUNNING
sleep 8 # let the profiler learn the request cost at moderate load
load 90
e2e_wait 120 "the spike to suspend the bronze job" e2e_job_was 1 SUSPENDED
echo "bronze job suspended during the spike; web instances: $(wlm app list | awk '$1=="web"{print $2}')"
load 10
e2e_wait 150 "the bronze job to resume and complete" job_in_state 1 COMPLETED
echo "bronze job resumed and completed"
echo "it_e2e_cluster: ok"
