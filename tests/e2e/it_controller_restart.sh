#!/usr/bin/env bash
# kill -9 the controller while it runs a web application and jobs (and once
# while a placement's actions are in flight); after the restart nothing is
# started twice: the same instance keeps serving, every job runs on exactly
# one node and completes once; a start its agent had not yet answered is
# settled from that agent's answer.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin crst
e2e_start_cluster n1:2:1000:2048 n2:2:1000:2048
cport=${WLM_CONTROLLER##*:}
cpid=${pids[1]}
restart_controller() {
  kill -9 "$cpid"
  wait "$cpid" 2>/dev/null || true
  "$bin/wlm-controller" --listen-port "$cport" --db "$dir/c.db" --router-url "http://$E2E_ROUTER_ADMIN" \
    --app-port-base "$E2E_PORT_BASE" --simulate-jobs --flow-period-ms 1000 --placement-period-ms 2000 \
    --node-lost-after-ms 5000 >>"$dir/controller.log" 2>&1 &
  cpid=$!
  pids+=($cpid)
  wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || e2e_fail "controller did not restart"
}
cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 256,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
wlm app deploy -f "$dir/web.json" >/dev/null
wlm job submit --name one --command true --work-seconds 25 --threads 1 --max-speed 1000 --memory 256 --class gold >/dev/null
serving() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$E2E_WEB/")" = 200 ]; }
running1() { [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 60 "the app to serve" serving
e2e_wait 60 "job 1 to run" running1
# Let the placement settle (everything consolidated on one node) first.
one_on() { [ "$(e2e_nodes_on)" -eq 1 ]; }
e2e_wait 60 "consolidation onto one node" one_on
sleep 3
before=$(wlm placement --json | e2e_py "import json,sys; print(sorted(i['name'] for n in json.load(sys.stdin)['nodes'] for i in n['instances'] if i['kind']=='app'))")

# 1. A quiet moment: everything is running.
restart_controller
sleep 8
after=$(wlm placement --json | e2e_py "import json,sys; print(sorted(i['name'] for n in json.load(sys.stdin)['nodes'] for i in n['instances'] if i['kind']=='app'))")
[ "$before" = "$after" ] || e2e_fail "app instances changed across the restart: $before -> $after"
[ "$(e2e_instances)" -eq 1 ] || e2e_fail "$(e2e_instances) instance processes after the restart (want 1)"
serving || e2e_fail "the app stopped serving after the restart"
[ "$(e2e_job_state 1)" = RUNNING ] || e2e_fail "job 1 is $(e2e_job_state 1) after the restart"
echo "restart 1: same instance $after, job 1 still RUNNING"

# 2. Kill it again right after a job was submitted, as its start goes out.
wlm job submit --name two --command true --work-seconds 10 --threads 1 --max-speed 1000 --memory 256 --class gold >/dev/null
for _ in $(seq 40); do
  grep -q 'action sent.*kind=start' <(tail -n 5 "$dir/controller.log") && break
  sleep 0.1
done
restart_controller
done2() { [ "$(e2e_job_state 2)" = COMPLETED ] && [ "$(e2e_job_state 1)" = COMPLETED ]; }
e2e_wait 120 "both jobs to complete" done2
# Each job was started on one node only: ask every agent. A job the
# placement moved (consolidation) leaves a "migrated" record at its source:
# that is a move, not a second start.
for id in 1 2; do
  n=0
  seen=""
  for url in $(wlm nodes --json | e2e_py "import json,sys; print(' '.join(x['agent_url'] for x in json.load(sys.stdin)))"); do
    curl -s -H "Authorization: Bearer $WLM_TOKEN" "$url/v1/jobs" |
      e2e_py "import json,sys; sys.exit(0 if any(r.get('job')=='j$id' and r.get('state')!='migrated' for r in json.load(sys.stdin)['jobs']) else 1)" &&
      n=$((n + 1))
    seen="$seen $url:$(curl -s -H "Authorization: Bearer $WLM_TOKEN" "$url/v1/jobs" |
      e2e_py "import json,sys; print([r.get('state') for r in json.load(sys.stdin)['jobs'] if r.get('job')=='j$id'])")"
  done
  [ "$n" -le 1 ] || e2e_fail "job $id has domains on $n nodes (records:$seen; events: $(wlm job show "$id" 2>&1 | tail -n 15 | tr '\n' '|'))"
done
[ "$(e2e_instances)" -eq 1 ] || e2e_fail "$(e2e_instances) instance processes at the end (want 1)"
echo "restart 2 (during execution): both jobs completed once, one app instance"

# 3. A start its agent has not answered when the controller dies: both
# agents are stopped (SIGSTOP) while job three is submitted, so the start
# waits unread in an agent's socket; the controller is killed and restarted,
# then the agents go on and the start is carried out. The restarted
# controller asks that agent for the start's outcome (it does not judge the
# start lost from heartbeats that do not show the job yet), so job three
# runs on one node, once. (The app goes first, so that no resize of its
# instance is ordered before the start.)
wlm app delete web >/dev/null
no_instances() { [ "$(e2e_instances)" -eq 0 ]; }
e2e_wait 60 "the app's instance to stop" no_instances
sleep 3
agents=("${pids[2]}" "${pids[3]}")
sent=$(grep -c 'action sent.*kind=start' "$dir/controller.log" || true)
kill -STOP "${agents[@]}"
wlm job submit --name three --command true --work-seconds 5 --threads 1 --max-speed 1000 --memory 256 --class gold >/dev/null
for _ in $(seq 60); do
  [ "$(grep -c 'action sent.*kind=start' "$dir/controller.log" || true)" -gt "$sent" ] && break
  sleep 0.1
done
[ "$(grep -c 'action sent.*kind=start' "$dir/controller.log" || true)" -gt "$sent" ] || {
  kill -CONT "${agents[@]}"
  e2e_fail "no start sent for job three"
}
restart_controller
kill -CONT "${agents[@]}"
done3() { [ "$(e2e_job_state 3)" = COMPLETED ]; }
e2e_wait 120 "job three to complete" done3
n=0
for url in $(wlm nodes --json | e2e_py "import json,sys; print(' '.join(x['agent_url'] for x in json.load(sys.stdin)))"); do
  curl -s -H "Authorization: Bearer $WLM_TOKEN" "$url/v1/jobs" |
    e2e_py "import json,sys; sys.exit(0 if any(r.get('job')=='j3' for r in json.load(sys.stdin)['jobs']) else 1)" &&
    n=$((n + 1))
done
[ "$n" = 1 ] || e2e_fail "job three has records on $n nodes: $(wlm job show 3 2>&1 | tail -n 15 | tr '\n' '|')"
grep -q 'settled an action from before the restart.*kind=start.*outcome=succeeded' "$dir/controller.log" ||
  e2e_fail "the start in flight was not settled from its agent's answer: $(grep -E 'kind=start|lost in a controller restart' "$dir/controller.log" | tail -n 5)"
if wlm job show 3 2>&1 | grep -q "lost in a controller restart"; then
  e2e_fail "job three's start was judged lost: $(wlm job show 3 2>&1 | tail -n 15 | tr '\n' '|')"
fi
echo "restart 3 (a start unanswered): settled from its agent, job three ran once"
echo "it_controller_restart: ok"
