#!/usr/bin/env bash
# The operator walkthrough (issue 19): a person drives the CLI by hand on a
# controller, a router and two test-driver agents, makes the common
# mistakes, and every answer says what happened and what to do.
#   1  app delete drains and stops every instance, and says when it is done
#   2  test-driver jobs finish without --simulate-jobs; progress stays <= 100 %
#   4  an app no node can hold, and a second app on the same host + prefix,
#      are refused at deploy
#   5  an app whose command exits at once: exit status and output in
#      `wlm app show`, crash-looping with a growing delay, in `wlm status`
#   6  VM slots the agents enforce (image pool max) are a placement
#      constraint: many queued jobs on few slots, no start fails; a router
#      the controller cannot configure shows in `wlm status`
#   7/8 --help everywhere, global flags after the command, -f -, errors
#      that say what to do
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin operator
# No --simulate-jobs: the agents simulate on the test driver by themselves.
# Three VM slots per node (the image pool's maximum).
E2E_CONTROLLER_FLAGS="" E2E_AGENT_FLAGS="--pool-max 3" \
  e2e_start_cluster n1:4:1000:2048 n2:4:1000:2048
step() { echo "-- $*"; }
expect_fail() { # expect_fail PATTERN COMMAND...: exits non-zero, stderr matches PATTERN
  local pat=$1 out
  shift
  if out=$("$@" 2>&1); then e2e_fail "'$*' succeeded; expected a refusal matching '$pat'"; fi
  grep -qiE -- "$pat" <<<"$out" || e2e_fail "'$*' said: $out (expected '$pat')"
  echo "   refused: $(head -1 <<<"$out")"
}

# ---------------------------------------------------------------- 7, 8
step "7: --help on every command and subcommand"
for c in "nodes" "status" "placement" "utilities" "app" "app deploy" "app list" "app show" \
  "app delete" "job" "job submit" "job list" "job show" "job cancel" "job wait" "plan"; do
  # shellcheck disable=SC2086
  wlm $c --help >"$dir/help.txt" 2>&1 || e2e_fail "wlm $c --help failed: $(cat "$dir/help.txt")"
done
wlm app deploy --help | grep -q "memory_mb" || e2e_fail "app deploy --help does not document the format"
wlm job submit --help | grep -q "work_seconds" || e2e_fail "job submit --help does not document the file format"
wlm job submit --help | grep -qi "cancel" || e2e_fail "job submit --help does not say what happens to dependents"
step "7: global flags after the command"
( c=$WLM_CONTROLLER t=$WLM_TOKEN
  unset WLM_TOKEN WLM_CONTROLLER
  wlm nodes --controller "$c" --token "$t" --json >/dev/null ) \
  || e2e_fail "global flags after the command are refused"
step "8: errors that say what to do"
expect_fail "WLM_TOKEN_FILE.*cannot be read" env -u WLM_TOKEN WLM_TOKEN_FILE=/nonexistent/token wlm nodes
expect_fail "not a wlm controller" wlm --controller "http://$E2E_WEB" nodes
expect_fail "not a wlm controller" wlm job list --controller "http://$E2E_WEB"
wlm --controller "${WLM_CONTROLLER#http://}" nodes >/dev/null || e2e_fail "a URL without a scheme is not fixed up"
expect_fail "only http" wlm --controller "ftp://x" nodes
expect_fail "test:///" "$bin/wlm-nodeagent" --name bad --controller "$WLM_CONTROLLER" \
  --libvirt-uri test://node.xml --listen-port 0 --state-dir "$dir/bad"

# ---------------------------------------------------------------- 4
step "4: an app no node can hold is refused at deploy"
cat >"$dir/big.json" <<'JSON'
{"name": "big", "command": "wlm-sampleapp --port {port}", "memory_mb": 99999,
 "classes": [{"name": "default", "goal_ms": 100}]}
JSON
expect_fail "largest .*node has 2048" wlm app deploy -f "$dir/big.json"
step "7: -f - deploys from standard input"
wlm app deploy -f - <<'JSON' || e2e_fail "app deploy -f - failed"
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 128,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
step "4: a second app on the same host and prefix is refused, naming the first"
cat >"$dir/web2.json" <<'JSON'
{"name": "web2", "command": "wlm-sampleapp --port {port}", "memory_mb": 128, "prefix": "/",
 "classes": [{"name": "default", "goal_ms": 200}]}
JSON
expect_fail "app 'web' already serves prefix /" wlm app deploy -f "$dir/web2.json"

# ---------------------------------------------------------------- 1
step "1: app delete drains the router and stops the instance"
served() { curl -sf -o /dev/null "http://$E2E_WEB/"; }
e2e_wait 60 "web to be served through the router" served
port=$(wlm app show web --json | e2e_py "import json,sys; print(json.load(sys.stdin)['instance_list'][0]['port'])")
curl -sf -o /dev/null "http://127.0.0.1:$port/" || e2e_fail "instance port $port does not serve"
wlm app show web | grep -qE "RUNNING" || e2e_fail "wlm app show lists no running instance"
t0=$(date +%s.%N)
out=$(wlm app delete web) || e2e_fail "app delete failed: $out"
echo "   $out (in $(echo "$(date +%s.%N) - $t0" | bc) s)"
grep -q "1 instance drained" <<<"$out" || e2e_fail "app delete did not report the stopped instance"
if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
  e2e_fail "the deleted app's instance still serves on port $port"
fi
wlm placement --json | grep -q '"app": "web"' && e2e_fail "wlm placement still shows the deleted app's instance"
expect_fail "no app named 'web'" wlm app show web
wlm placement | grep -qE "^now: +min utility" || e2e_fail "wlm placement does not give the utility now beside the decision's"
echo "   port $port closed, placement empty"

# ---------------------------------------------------------------- 5
step "5: an app whose command exits at once"
cat >"$dir/crash.json" <<'JSON'
{"name": "crash", "command": "echo listening on {port}; echo 'fatal: config missing' >&2; exit 3",
 "memory_mb": 64, "prefix": "/crash", "classes": [{"name": "default", "goal_ms": 100}]}
JSON
wlm app deploy -f "$dir/crash.json" >/dev/null
looping() { wlm app show crash | grep -q "crash-looping"; }
e2e_wait 90 "crash to be crash-looping" looping
wlm app show crash >"$dir/crash.txt"
cat "$dir/crash.txt"
grep -q "exit status 3" "$dir/crash.txt" || e2e_fail "wlm app show does not give the exit status"
grep -q "fatal: config missing" "$dir/crash.txt" || e2e_fail "wlm app show does not give the last output"
wlm status | grep -q "crash: crash-looping" || e2e_fail "wlm status does not say crash-looping"
starts=$(grep -c 'action sent.*kind=app_start' "$dir/controller.log" || true)
sleep 8
starts2=$(grep -c 'action sent.*kind=app_start' "$dir/controller.log" || true)
[ $((starts2 - starts)) -le 1 ] || e2e_fail "crash-looping app restarted $((starts2 - starts)) times in 8 s (placement period 2 s)"

# ---------------------------------------------------------------- 2
step "2: test-driver jobs finish without --simulate-jobs"
wlm nodes | grep -q "test driver" || e2e_fail "wlm nodes does not say the nodes run the test driver"
id=$(wlm job submit --name short --command true --work-seconds 3 --threads 1 --max-speed 1000 \
  --memory 128 --json | e2e_py "import json,sys; d=json.load(sys.stdin); print((d['jobs'][0] if 'jobs' in d else d)['id'])")
wlm job wait "$id" --timeout 60 >/dev/null || e2e_fail "job $id did not complete: $(wlm job show "$id")"
wlm job list --json | e2e_py "
import json,sys
for j in json.load(sys.stdin)['jobs']:
    assert j.get('progress', 0) <= 1.0 + 1e-9, j
" || e2e_fail "a job's progress exceeds 100 %"
grep -q "test driver" "$dir/controller.log" || e2e_fail "the controller did not log that jobs are simulated"
wlm job list | grep -E "^$id +short .* COMPLETED .* 100% .*(early|late)" >/dev/null \
  || e2e_fail "the job list does not say how early or late the finished job ended: $(wlm job list)"

# ---------------------------------------------------------------- 9
step "9: the dashboard (Chromium)"
jid() { e2e_py "import json,sys; d=json.load(sys.stdin); print((d['jobs'][0] if 'jobs' in d else d)['id'])"; }
a=$(wlm job submit --name upstream --command true --work-seconds 600 --memory 64 --json | jid)
b=$(wlm job submit --name downstream --command true --work-seconds 5 --memory 64 --after "$a" --json | jid)
wlm job cancel "$a" >/dev/null
failed() { [ "$(e2e_job_state "$b")" = FAILED ]; }
e2e_wait 30 "job $b to fail after its afterok dependency was cancelled" failed
chromium=${WLM_CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then
  python3 "$WLM_SOURCE_DIR/tests/e2e/it_operator_dash.py" --chromium "$chromium" --base "$WLM_CONTROLLER" \
    --token "$WLM_TOKEN" --nodes n1,n2 --gone "web,job-$id" --failed-job "$b" --crashing crash \
    --log "$dir/chromium.log" || e2e_fail "dashboard walkthrough failed (above)"
else
  e2e_fail "$chromium not found (scripts/install-deps browser)"
fi
wlm status | grep -q "1 cancelled" || e2e_fail "wlm status does not count the cancelled job apart: $(wlm status)"
wlm app delete crash >/dev/null

# ---------------------------------------------------------------- 6
step "6: many queued jobs on 6 VM slots: no start fails"
cat >"$dir/many.json" <<'JSON'
{"jobs": [
JSON
for k in $(seq 1 16); do
  printf '{"name": "m%d", "command": "true", "work_seconds": 1, "threads": 1, "max_speed_mhz": 250, "memory_mb": 64}%s\n' \
    "$k" "$([ "$k" -lt 16 ] && echo ,)" >>"$dir/many.json"
done
echo ']}' >>"$dir/many.json"
wlm job submit -f "$dir/many.json" >/dev/null
waiting() { wlm status --json | grep -q '"waiting_for_vm_slot"'; }
e2e_wait 30 "status to report jobs waiting for a VM slot" waiting
wlm status
step "10: wlm plan on the live snapshot names the jobs"
curl -sf -H "Authorization: Bearer $WLM_TOKEN" "$WLM_CONTROLLER/v1/placement/snapshot" >"$dir/now.json" \
  || e2e_fail "no live snapshot"
wlm plan --snapshot "$dir/now.json" >"$dir/plan.txt" || e2e_fail "wlm plan failed: $(cat "$dir/plan.txt")"
grep -qE "job-[0-9]+ m[0-9]+ " "$dir/plan.txt" || e2e_fail "wlm plan does not name the jobs: $(cat "$dir/plan.txt")"
if grep -qE ' +$' "$dir/plan.txt"; then e2e_fail "wlm plan prints trailing blanks"; fi
if wlm job list | grep -qE ' +$'; then e2e_fail "wlm job list prints trailing blanks"; fi
alldone() { [ "$(wlm job list --state COMPLETED --json | e2e_py "import json,sys; print(len(json.load(sys.stdin)['jobs']))")" -ge 17 ]; }
e2e_wait 180 "the 16 jobs to complete" alldone
if grep -E 'action failed.*(maximum|limit)' "$dir/controller.log"; then
  e2e_fail "starts failed for lack of VM slots"
fi
echo "   16 jobs ran on 6 slots, no start failed"

step "6: a router the controller cannot configure shows in wlm status"
port2=$(wlm_free_port)
"$bin/wlm-controller" --listen-port "$port2" --db "$dir/c2.db" --router-url "http://$E2E_ROUTER_ADMIN" \
  --router-token wrong-token --token "$WLM_TOKEN" --flow-period-ms 500 >"$dir/controller2.log" 2>&1 &
pids+=($!)
wlm_wait_http "http://127.0.0.1:$port2/healthz" 30 || e2e_fail "second controller did not start"
refused() { wlm --controller "http://127.0.0.1:$port2" status | grep -q "rejects the controller's token"; }
e2e_wait 20 "status to show the router refusing the token" refused
wlm --controller "http://127.0.0.1:$port2" status
echo "it_operator: ok"
