#!/usr/bin/env bash
# Issue 19, item 6: an action kind a node cannot do is asked once, not every
# cycle. A stand-in agent (it_operator_agent.py) refuses CPU caps as
# "unsupported", as the libvirt test driver does; the placement keeps
# changing an app's CPU as jobs come and go. The controller sends the node
# one app_resize, says so once in its log, shows "cannot app_resize" in
# `wlm nodes`, and still records the allocations it decided. A start refused
# for lack of capacity backs off with the reason in the job (without the
# backoff: 13 starts in 12 periods; with it: 3).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin unsupported
port=$(wlm_free_port)
export WLM_TOKEN=uns-$$-$RANDOM WLM_CONTROLLER=http://127.0.0.1:$port
"$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --simulate-jobs \
  --flow-period-ms 500 --placement-period-ms 1000 >"$dir/controller.log" 2>&1 &
pids+=($!)
wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || e2e_fail "controller did not start"
python3 "$WLM_SOURCE_DIR/tests/e2e/it_operator_agent.py" --controller "$WLM_CONTROLLER" \
  --token "$WLM_TOKEN" --name stand-in --port-file "$dir/agent.port" >"$dir/agent.log" 2>&1 &
pids+=($!)
ready() { wlm nodes | grep -q "^stand-in .*READY"; }
e2e_wait 20 "the stand-in agent to be READY" ready
agent=http://127.0.0.1:$(cat "$dir/agent.port")
count() { curl -sf "$agent/counts" | e2e_py "import json,sys; print(json.load(sys.stdin).get('$1', 0))"; }
wlm app deploy -f - >/dev/null <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port}", "memory_mb": 128,
 "classes": [{"name": "default", "goal_ms": 100}]}
JSON
started() { [ "$(count app_start)" -ge 1 ]; }
e2e_wait 20 "the app to be started" started
# Jobs come and go: each changes the CPU left to the app.
for k in 1 2 3 4; do
  wlm job submit --name "j$k" --command true --work-seconds 3 --threads 1 --max-speed 1000 \
    --memory 64 >/dev/null
  sleep 2
done
resized() { [ "$(count app_resize)" -ge 1 ]; }
e2e_wait 30 "an app_resize to be sent" resized
sleep 6 # several more placement periods with the allocation moving
n=$(count app_resize)
echo "app_resize actions sent to the stand-in: $n"
[ "$n" -eq 1 ] || e2e_fail "the node was asked to app_resize $n times after saying it cannot"
[ "$(grep -c 'node cannot carry out an action kind' "$dir/controller.log")" -eq 1 ] \
  || e2e_fail "the controller did not say it once in its log"
wlm nodes | grep -E "^stand-in .*cannot app_resize" >/dev/null \
  || e2e_fail "wlm nodes does not show what the node cannot do: $(wlm nodes)"
wlm nodes | grep stand-in
if grep -E 'action failed.*app_resize' "$dir/controller.log"; then
  e2e_fail "an unsupported resize was logged as a failure"
fi
echo "it_operator_unsupported: ok"

# A start refused for lack of capacity is not planned again unchanged: the
# job backs off (2, 4, 8 ... placement periods) and its reason says why.
# This agent does not report its pool, so only the failures can teach it.
python3 "$WLM_SOURCE_DIR/tests/e2e/it_operator_agent.py" --controller "$WLM_CONTROLLER" \
  --token "$WLM_TOKEN" --name full --port-file "$dir/full.port" --full >"$dir/full.log" 2>&1 &
pids+=($!)
ready2() { wlm nodes | grep -q "^full .*READY"; }
e2e_wait 20 "the second stand-in agent to be READY" ready2
full=http://127.0.0.1:$(cat "$dir/full.port")
# The job may only run on the full node (label pool=full).
wlm job submit --name big --command true --work-seconds 600 --threads 2 --max-speed 1000 \
  --memory 512 --label pool=full --class gold >/dev/null
tried() { [ "$(curl -sf "$full/counts" | e2e_py "import json,sys; print(json.load(sys.stdin).get('start', 0))")" -ge 1 ]; }
e2e_wait 30 "a start on the full node" tried
sleep 12 # twelve placement periods
starts=$(curl -sf "$full/counts" | e2e_py "import json,sys; print(json.load(sys.stdin).get('start', 0))")
echo "starts sent to the full node in 12 placement periods after the first failure: $starts"
[ "$starts" -le 4 ] || e2e_fail "the refused start was planned again $starts times (no backoff)"
big=$(wlm job list --json | e2e_py "import json,sys; print([j['id'] for j in json.load(sys.stdin)['jobs'] if j.get('name')=='big'][0])")
wlm job show "$big" | grep -q "lack of capacity" || e2e_fail "the job's reason does not say why: $(wlm job show "$big")"
wlm job show "$big" | grep "lack of capacity" | head -1
echo "it_operator_unsupported (capacity backoff): ok"
