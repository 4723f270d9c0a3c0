#!/usr/bin/env bash
# Two controllers on etcd with a router and two node agents that know both
# controllers (WLM_CONTROLLER is a list, for the agents and the CLI). kill -9
# of the leader at a quiet moment and again while a placement's actions are
# in flight: the standby takes over within 5 s, the app keeps one instance
# and keeps serving through the router, every job runs on one node and
# completes once.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
command -v etcd >/dev/null || { echo "FAIL: etcd not found (scripts/install-deps)" >&2; exit 1; }
e2e_begin hacl

ec=$(wlm_free_port); epeer=$(wlm_free_port)
etcd --name e0 --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$epeer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$epeer" \
  --initial-cluster "e0=http://127.0.0.1:$epeer" >"$dir/etcd.log" 2>&1 &
pids+=($!)
wlm_wait_http "http://127.0.0.1:$ec/health" 30 || e2e_fail "etcd did not start"

admin=$(wlm_free_port); web=$(wlm_free_port)
cport=($(wlm_free_port) $(wlm_free_port))
export WLM_TOKEN=hacl-$$-$RANDOM
export WLM_CONTROLLER=http://127.0.0.1:${cport[0]},http://127.0.0.1:${cport[1]}
E2E_WEB=127.0.0.1:$web
echo '{"limit": 32, "apps": []}' >"$dir/router.json"
"$bin/wlm-router" --config "$dir/router.json" --listen "$E2E_WEB" --admin "127.0.0.1:$admin" \
  --token "$WLM_TOKEN" >"$dir/router.log" 2>&1 &
pids+=($!)
E2E_PORT_BASE=$(( 20000 + (RANDOM % 400) * 100 ))
cpid=(0 0)
start_ctl() { # start_ctl I
  ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 "$bin/wlm-controller" --store "etcd://127.0.0.1:$ec" \
    --listen-port "${cport[$1]}" --db "$dir/c$1.db" --router-url "http://127.0.0.1:$admin" \
    --app-port-base "$E2E_PORT_BASE" --simulate-jobs --flow-period-ms 1000 \
    --placement-period-ms 2000 --node-lost-after-ms 5000 >>"$dir/controller$1.log" 2>&1 &
  cpid[$1]=$!
  pids+=($!)
  disown "$!"
}
role() { curl -s --max-time 1 "http://127.0.0.1:${cport[$1]}/healthz" |
  python3 -c "import json,sys; print(json.load(sys.stdin).get('role',''))" 2>/dev/null || true; }
wait_role() { # wait_role I ROLE SECONDS
  local end=$(( $(date +%s%N) + $3 * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    [ "$(role "$1")" = "$2" ] && return 0
    sleep 0.05
  done
  return 1
}
start_ctl 0
wait_role 0 leader 20 || e2e_fail "controller 0 did not lead"
start_ctl 1
wait_role 1 standby 20 || e2e_fail "controller 1 is not a standby"

for spec in n1:2:1000:2048 n2:2:1000:2048; do
  IFS=: read -r n cores mhz mem <<<"$spec"
  wlm_test_node_xml "$dir/$n.xml" "$cores" "$mhz" "$mem"
  mkdir -p "$dir/$n"
  "$bin/wlm-nodeagent" --name "$n" --controller "$WLM_CONTROLLER" --libvirt-uri "test://$dir/$n.xml" \
    --listen-port 0 --state-dir "$dir/$n" --shared-dir "$dir/shared" --heartbeat-ms 500 \
    >"$dir/$n.log" 2>&1 &
  pids+=($!)
done
ready2() { [ "$("$bin/wlm" nodes --json 2>/dev/null | grep -c '"READY"')" -ge 2 ]; }
e2e_wait 30 "both nodes READY (through the controller list)" ready2

cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 256,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
wlm app deploy -f "$dir/web.json" >/dev/null
wlm job submit --name one --command true --work-seconds 25 --threads 1 --max-speed 1000 --memory 256 \
  --class gold --submit-id one >/dev/null
serving() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$E2E_WEB/")" = 200 ]; }
running1() { [ "$(e2e_job_state 1)" = RUNNING ]; }
e2e_wait 60 "the app to serve" serving
e2e_wait 60 "job 1 to run" running1
sleep 3

leader=0
failover() { # kill -9 the leader; the other must lead within 5 s
  local victim=$leader other=$((1 - leader)) t0 t1
  kill -9 "${cpid[$victim]}"
  t0=$(date +%s%N)
  wait_role "$other" leader 10 || e2e_fail "no new leader within 10 s"
  t1=$(date +%s%N)
  local ms=$(( (t1 - t0) / 1000000 ))
  echo "failover: controller $other leads $ms ms after the kill"
  [ "$ms" -le 5000 ] || e2e_fail "failover took $ms ms (want <= 5000)"
  leader=$other
  start_ctl "$victim"
  wait_role "$victim" standby 20 || e2e_fail "the killed controller did not come back as a standby"
}

# 1. A quiet moment.
failover
sleep 6
[ "$(e2e_instances)" -eq 1 ] || e2e_fail "$(e2e_instances) instance processes after the failover (want 1)"
serving || e2e_fail "the app stopped serving after the failover"
[ "$(e2e_job_state 1)" = RUNNING ] || e2e_fail "job 1 is $(e2e_job_state 1) after the failover"
echo "failover 1: one instance, serving, job 1 still RUNNING"

# 2. While the start of a new job is being carried out.
wlm job submit --name two --command true --work-seconds 10 --threads 1 --max-speed 1000 --memory 256 \
  --class gold --submit-id two >/dev/null
for _ in $(seq 60); do
  grep -q 'action sent.*kind=start' <(tail -n 5 "$dir/controller$leader.log") && break
  sleep 0.1
done
failover
# The same submission again (a client retrying after the failover): no new job.
wlm job submit --name two --command true --work-seconds 10 --threads 1 --max-speed 1000 --memory 256 \
  --class gold --submit-id two >/dev/null
done2() { [ "$(e2e_job_state 2)" = COMPLETED ] && [ "$(e2e_job_state 1)" = COMPLETED ]; }
e2e_wait 120 "both jobs to complete" done2
njobs=$(wlm job list --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)['jobs']))")
[ "$njobs" -eq 2 ] || e2e_fail "$njobs jobs after the retried submission (want 2)"
for id in 1 2; do
  n=0
  for url in $(wlm nodes --json | e2e_py "import json,sys; print(' '.join(x['agent_url'] for x in json.load(sys.stdin)))"); do
    curl -s -H "Authorization: Bearer $WLM_TOKEN" "$url/v1/jobs" |
      e2e_py "import json,sys; sys.exit(0 if any(r.get('job')=='j$id' and r.get('state')!='migrated' for r in json.load(sys.stdin)['jobs']) else 1)" &&
      n=$((n + 1))
  done
  [ "$n" -le 1 ] || e2e_fail "job $id has domains on $n nodes"
  started=$(wlm job show "$id" --json | e2e_py "import json,sys; print(sum(1 for e in json.load(sys.stdin).get('history',[]) if e.get('to')=='STARTING'))")
  [ "$started" -le 1 ] || e2e_fail "job $id was started $started times"
done
[ "$(e2e_instances)" -eq 1 ] || e2e_fail "$(e2e_instances) instance processes at the end (want 1)"
serving || e2e_fail "the app is not served at the end"
echo "failover 2 (actions in flight): both jobs completed once, one app instance, still serving"
echo "it_ha_cluster: ok"
