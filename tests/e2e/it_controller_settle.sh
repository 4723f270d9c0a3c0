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
two() { [ "$(e2e_instances)" -eq 2 ]; }
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
for _ in $(seq 100); do [ "$(e2e_instances)" -eq 1 ] && break; sleep 0.1; done
[ "$(e2e_instances)" -eq 1 ] || e2e_fail "the agent did not stop the instance"
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
[ "$(e2e_instances)" -eq 1 ] || e2e_fail "instance processes: $(e2e_instances), want 1"
serving() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$E2E_WEB/")" = 200 ]; }
e2e_wait 20 "the remaining instance to serve" serving
grep -q 'kind=app_stop' <(grep 'action sent' "$dir/controller2.log") && e2e_fail "the stop was sent twice"
printf 'settled the app_stop in flight %.2f s after the restart (heartbeat 0.5 s)\n' \
  "$(echo "$t1 - $t0" | bc -l)"

# Part 2: job actions. The crash point is made by hand here (no placement is
# made to suspend on cue): two running jobs; the controller is killed; a
# suspend of job A is written to inflight_actions as the controller writes it
# when it sends one, and POSTed to A's agent, which carries it out with no
# controller to tell; a suspend of job B is recorded but never reaches its
# agent. After the restart, A is settled SUSPENDED (and later restored from
# its save file, not restarted) and B's suspend failed (the agent has no
# record), so B keeps running.
submit() { wlm job submit --name "$1" --command true --work-seconds 40 --threads 1 --max-speed 1000 \
  --memory 256 --class gold | sed -n 's/^submitted job \([0-9]*\).*/\1/p'; }
ja=$(submit a)
jb=$(submit b)
running() { [ "$(e2e_job_state "$ja")" = RUNNING ] && [ "$(e2e_job_state "$jb")" = RUNNING ]; }
e2e_wait 60 "jobs $ja and $jb to run" running
node_of() { wlm job show "$1" --json | e2e_py "import json,sys; print(json.load(sys.stdin)['node'])"; }
na=$(node_of "$ja"); nb=$(node_of "$jb")
kill -9 "$cpid"
wait "$cpid" 2>/dev/null || true
python3 - "$dir/c.db" "$ja" "$na" "$jb" "$nb" <<'PY'
import sqlite3, sys, time
db, ja, na, jb, nb = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
c = sqlite3.connect(db)
for aid, job, node in (("crash-suspend-a", ja, na), ("crash-suspend-b", jb, nb)):
    c.execute("INSERT INTO inflight_actions (id, kind, node, from_node, dest_node, is_job, job, app,"
              " instance, cpu_mhz, memory_mb, sent_at) VALUES (?, 'suspend', ?, '', '', 1, ?, '', '',"
              " 0, 0, ?)", (aid, node, job, time.time()))
c.commit()
PY
agent_a=$(sed -n 's/.*registered with controller.*url=\(http[^ ]*\).*/\1/p' "$dir/$na.log" | tail -1)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $WLM_TOKEN" \
  -d "{\"id\":\"crash-suspend-a\",\"kind\":\"suspend\",\"job\":\"j$ja\"}" "$agent_a/v1/actions")
[ "$code" = 202 ] || e2e_fail "the agent did not take the suspend ($code)"
for _ in $(seq 100); do grep -q 'action done id=crash-suspend-a' "$dir/$na.log" && break; sleep 0.1; done
grep -q 'action done id=crash-suspend-a' "$dir/$na.log" || e2e_fail "the agent did not suspend job $ja"
"$bin/wlm-controller" --listen-port "$cport" --db "$dir/c.db" --router-url "http://$E2E_ROUTER_ADMIN" \
  --app-port-base "$E2E_PORT_BASE" --simulate-jobs --flow-period-ms 1000 --placement-period-ms 2000 \
  --node-lost-after-ms 5000 >"$dir/controller3.log" 2>&1 &
cpid=$!
pids+=($cpid)
wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || e2e_fail "controller did not restart (2)"
for _ in $(seq 100); do
  grep -q 'every action in flight before the restart is settled' "$dir/controller3.log" && break
  sleep 0.05
done
grep -q 'settled.*id=crash-suspend-a kind=suspend.*outcome=succeeded' "$dir/controller3.log" \
  || e2e_fail "the delivered suspend was not settled as done"
grep -q 'settled.*id=crash-suspend-b kind=suspend.*outcome=failed.*no record' "$dir/controller3.log" \
  || e2e_fail "the undelivered suspend was not settled as failed"
e2e_job_was "$ja" SUSPENDED || e2e_fail "job $ja was never SUSPENDED"
e2e_job_was "$jb" SUSPENDED && e2e_fail "job $jb was SUSPENDED though its suspend never arrived"
[ "$(e2e_job_state "$jb")" = RUNNING ] || e2e_fail "job $jb is $(e2e_job_state "$jb"), want RUNNING"
restored() { [ "$(e2e_job_state "$ja")" = RUNNING ] || [ "$(e2e_job_state "$ja")" = COMPLETED ]; }
e2e_wait 60 "job $ja to be restored" restored
grep -q "kind=restore" "$dir/controller3.log" || e2e_fail "job $ja was not restored from its save file"
grep -q "restarting a job without a save file.*job=$ja" "$dir/controller3.log" \
  && e2e_fail "job $ja was restarted from scratch instead of restored"
echo "delivered suspend settled as done (job $ja SUSPENDED, then restored); undelivered one as failed (job $jb kept running)"
