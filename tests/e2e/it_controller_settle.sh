#!/usr/bin/env bash
# kill -9 the controller while a stop action is in flight (issue 17, item 5):
# an app runs two instances on two nodes and is redeployed with one; the
# agents are frozen (SIGSTOP) so the controller's app_stop waits on one of
# them, the controller is killed, the agents resume and the stop is carried
# out while no controller listens. The restarted controller settles the action from the
# agent's report at the node's first heartbeat (not at the next placement):
# the instance is gone from its tables and from the router, exactly once,
# and nothing is decided before that.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin settle
trap 'kill -CONT "${pids[2]:-0}" "${pids[3]:-0}" 2>/dev/null || true; e2e_cleanup' EXIT
e2e_start_cluster n1:2:1000:2048 n2:2:1000:2048
cport=${WLM_CONTROLLER##*:}
cpid=${pids[1]}
app() {
  cat >"$dir/web.json" <<JSON
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 1200,
 "min_instances": $1, "max_instances": $1,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
  wlm app deploy -f "$dir/web.json" >/dev/null
}
app 2
inst_pids() {
  local pid args p
  for pid in $(pgrep -f 'wlm-sampleapp --port' || true); do
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    p=$(sed -n 's/.*--port \([0-9]*\).*/\1/p' <<<"$args")
    [ -n "$p" ] && [ "$p" -ge "$E2E_PORT_BASE" ] && [ "$p" -lt $((E2E_PORT_BASE + 100)) ] && echo "$pid"
  done
  return 0
}
two() { [ "$(inst_pids | wc -l)" -eq 2 ]; }
e2e_wait 60 "two instances" two

# Freeze the agents, redeploy with one instance: the next placement sends an
# app_stop, which waits on its frozen agent.
kill -STOP "${pids[2]}" "${pids[3]}"
app 1
for _ in $(seq 100); do
  grep -q 'action sent.*kind=app_stop' "$dir/controller.log" && break
  sleep 0.1
done
grep -q 'action sent.*kind=app_stop' "$dir/controller.log" || e2e_fail "no app_stop was sent"
sleep 0.3
kill -9 "$cpid"
wait "$cpid" 2>/dev/null || true
kill -CONT "${pids[2]}" "${pids[3]}"
# The agent stops the instance with no controller to tell.
for _ in $(seq 100); do [ "$(inst_pids | wc -l)" -eq 1 ] && break; sleep 0.1; done
[ "$(inst_pids | wc -l)" -eq 1 ] || e2e_fail "the agent did not stop the instance"
grep -q 'action done.*kind=app_stop' "$dir/controller.log" && e2e_fail "the stop completed before the kill"

t0=$(date +%s.%N)
"$bin/wlm-controller" --listen-port "$cport" --db "$dir/c.db" --router-url "http://$E2E_ROUTER_ADMIN" \
  --app-port-base "$E2E_PORT_BASE" --simulate-jobs --flow-period-ms 1000 --placement-period-ms 2000 \
  --node-lost-after-ms 5000 >"$dir/controller2.log" 2>&1 &
cpid=$!
pids+=($cpid)
wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || e2e_fail "controller did not restart"
grep -q 'action in flight before the restart, to settle.*kind=app_stop' "$dir/controller2.log" \
  || e2e_fail "the restarted controller did not find the app_stop in flight"
for _ in $(seq 100); do
  grep -q 'settled an action from before the restart.*kind=app_stop.*outcome=succeeded' \
    "$dir/controller2.log" && break
  sleep 0.05
done
t1=$(date +%s.%N)
grep -q 'settled an action from before the restart.*kind=app_stop.*outcome=succeeded' \
  "$dir/controller2.log" || e2e_fail "the app_stop was not settled from the agent's report"
# Settled before any placement decision of the new controller.
settled_line=$(grep -n 'settled an action from before the restart' "$dir/controller2.log" | head -1 | cut -d: -f1)
decided_line=$(grep -n 'placement decided\|plan finished\|action sent' "$dir/controller2.log" | head -1 | cut -d: -f1 || true)
[ -z "$decided_line" ] || [ "$settled_line" -lt "$decided_line" ] \
  || e2e_fail "a placement ran before the settlement (line $decided_line < $settled_line)"
insts=$(wlm placement --json | e2e_py "import json,sys; print(sum(1 for n in json.load(sys.stdin)['nodes'] for i in n['instances'] if i['kind']=='app'))")
[ "$insts" = 1 ] || e2e_fail "want 1 recorded instance after the settlement, got $insts"
ninst=0
for _ in $(seq 50); do
  cfg=$(curl -s -H "Authorization: Bearer $WLM_TOKEN" "http://$E2E_ROUTER_ADMIN/admin/config")
  ninst=$(python3 -c "import json,sys; print(sum(len(a.get('instances',[])) for a in json.loads(sys.argv[1])['apps']))" "$cfg" 2>/dev/null || echo x)
  [ "$ninst" = 1 ] && break
  sleep 0.1
done
[ "$ninst" = 1 ] || e2e_fail "the router should have 1 instance: $cfg"
sleep 3
[ "$(inst_pids | wc -l)" -eq 1 ] || e2e_fail "instance processes: $(inst_pids | wc -l), want 1"
serving() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$E2E_WEB/")" = 200 ]; }
e2e_wait 20 "the remaining instance to serve" serving
grep -q 'kind=app_stop' <(grep 'action sent' "$dir/controller2.log") && e2e_fail "the stop was sent twice"
printf 'settled the app_stop in flight %.2f s after the restart (heartbeat 0.5 s)\n' \
  "$(echo "$t1 - $t0" | bc -l)"
