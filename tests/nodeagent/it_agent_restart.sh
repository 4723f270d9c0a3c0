#!/usr/bin/env bash
# Agent restart recovery (libvirt test driver, real processes):
# kill -9 the agent while two app instances run and an app_stop is
# in flight; the restarted agent re-adopts the running instance (same pid, no
# second process), carries the interrupted app_stop out under its id, and
# answers a retried action id with its recorded outcome (200, not 202/409).
# Then an instance killed while the agent is down is reported gone (shutoff)
# (a pid whose start time or marker does not match is never adopted:
# test_nodeagent checks nodeagent_proc_check).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
dir=$(mktemp -d /tmp/wlm-it-restart-XXXXXX)
t=r$$ # instance names carry it: parallel runs never touch each other's
chmod 711 "$dir" # the instances run as wlm-app and must reach $dir/apps
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}" 2>/dev/null
  # Instances outlive a killed agent on purpose; end ours.
  for p in $( (grep -l "WLM_INSTANCE=$t-" /proc/[0-9]*/environ 2>/dev/null || true) | cut -d/ -f3); do
    kill -9 "$p" 2>/dev/null || true
  done
  wlm_rm_cgroups wlm-rt
  [ -n "${WLM_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  tail -30 "$dir/agent.log" >&2
  exit 1
}
export WLM_TOKEN=restart-secret
wlm_test_node_xml "$dir/n1.xml" 4 2400 8192
cport=$(wlm_free_port) # no controller: completions are not delivered, that is fine

start_agent() { # N-th start
  "$bin/wlm-nodeagent" --name rt --controller "http://127.0.0.1:$cport" \
    --libvirt-uri "test://$dir/n1.xml" --listen-port 0 --state-dir "$dir/state" \
    --app-dir "$dir/apps" --heartbeat-ms 200 >>"$dir/agent.log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
  url=""
  for _ in $(seq 100); do
    if [ "$(grep -c 'node agent listening' "$dir/agent.log" 2>/dev/null)" -ge "$1" ]; then
      url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/agent.log" | tail -1 | cut -d= -f2)
      break
    fi
    sleep 0.1
  done
  [ -n "$url" ] || fail "agent did not start"
}
# Running (a zombie is not: orphans wait for whoever adopted them to reap).
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }
api() { curl -sS -H "Authorization: Bearer $WLM_TOKEN" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
post() { # BODY -> "CODE BODY"
  local code
  code=$(api -o "$dir/resp" -w '%{http_code}' -d "$1" "$url/v1/actions")
  echo "$code $(cat "$dir/resp")"
}
wait_action() { # ID -> final JSON
  for _ in $(seq 100); do
    api "$url/v1/actions/$1" >"$dir/act"
    st=$(field 'd["status"]' <"$dir/act")
    [ "$st" = running ] || [ "$st" = accepted ] || { cat "$dir/act"; return 0; }
    sleep 0.1
  done
  fail "action $1 did not finish: $(cat "$dir/act")"
}
inst() { # ID KEY -> value from GET /v1/node
  api "$url/v1/node" | python3 -c '
import json,sys
d=json.load(sys.stdin)
for i in d["instances"]:
    if i["instance"]==sys.argv[1]: print(i[sys.argv[2]]); break
else: print("none")' "$1" "$2"
}

start_agent 1
# keep: serves until stopped. sticky: ignores SIGTERM, so its app_stop takes 2 s.
r=$(post "$(printf '{"id":"a-keep","kind":"app_start","instance":"%s-keep","command":"sleep 1000","port":1}' "$t")")
[ "${r%% *}" = 202 ] || fail "app_start keep: $r"
r=$(post "$(printf '{"id":"a-sticky","kind":"app_start","instance":"%s-sticky","command":"trap \\"\\" TERM; while :; do sleep 0.1; done","port":2}' "$t")")
[ "${r%% *}" = 202 ] || fail "app_start sticky: $r"
r=$(post '{"id":"j-start","kind":"start","job":"rtjob","command":"x","sim_seconds":1000}')
[ "${r%% *}" = 202 ] || fail "start: $r"
for id in a-keep a-sticky j-start; do
  [ "$(wait_action $id | field 'd["status"]')" = succeeded ] || fail "$id: $(cat "$dir/act")"
done
keep_pid=$(inst $t-keep pid)
sticky_pid=$(inst $t-sticky pid)
[ "$keep_pid" -gt 0 ] && [ "$sticky_pid" -gt 0 ] || fail "no pids ($keep_pid, $sticky_pid)"
echo "ok: two instances (pids $keep_pid, $sticky_pid) and a job run"

# An app_stop in flight (the sticky instance holds it for 2 s), then kill -9.
r=$(post "$(printf '{"id":"s-sticky","kind":"app_stop","instance":"%s-sticky"}' "$t")")
[ "${r%% *}" = 202 ] || fail "app_stop: $r"
sleep 0.4
[ "$(api "$url/v1/actions/s-sticky" | field 'd["status"]')" = running ] || fail "app_stop not in flight"
kill -9 "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
alive "$keep_pid" || fail "instance died with the agent"

start_agent 2
grep -q "recover: app instance re-adopted instance=$t-keep pid=$keep_pid" "$dir/agent.log" ||
  fail "$t-keep not re-adopted"
[ "$(inst $t-keep pid)" = "$keep_pid" ] || fail "$t-keep pid after restart: $(inst $t-keep pid)"
[ "$(inst $t-keep state)" = running ] || fail "$t-keep state: $(inst $t-keep state)"
n=$( (grep -l "WLM_INSTANCE=$t-keep" /proc/[0-9]*/environ 2>/dev/null || true) | wc -l)
[ "$n" = 1 ] || fail "$n processes carry $t-keep"
echo "ok: running instance re-adopted by pid + start time + command (pid $keep_pid)"

# The interrupted app_stop is carried out again under its id.
r=$(wait_action s-sticky)
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "s-sticky after restart: $r"
[ "$(echo "$r" | field 'd.get("recovered")')" = True ] || fail "s-sticky not marked recovered: $r"
alive "$sticky_pid" && fail "sticky instance still runs after its app_stop"
echo "ok: app_stop cut off by the crash finished after the restart"

# Retried ids get the recorded outcome: 200, the first result, nothing redone.
r=$(post "$(printf '{"id":"a-keep","kind":"app_start","instance":"%s-keep","command":"sleep 1000","port":1}' "$t")")
[ "${r%% *}" = 200 ] || fail "retried app_start gave $r"
[ "$(echo "${r#* }" | field 'd["result"]["pid"]')" = "$keep_pid" ] || fail "retried app_start result: $r"
r=$(post '{"id":"j-start","kind":"start","job":"rtjob","command":"x"}')
[ "${r%% *}" = 200 ] || fail "retried start gave $r"
[ "$(echo "${r#* }" | field 'd["status"]')" = succeeded ] || fail "retried start: $r"
r=$(post "$(printf '{"id":"s-sticky","kind":"app_stop","instance":"%s-sticky"}' "$t")")
[ "${r%% *}" = 200 ] || fail "retried app_stop gave $r"
# (The test driver's domains live inside the agent process, so the job itself
# ends with it; it_real_vm shows a real domain adopted across kill -9.)
echo "ok: retried action ids answer 200 with the recorded outcome"

# An instance killed while the agent is down is reported gone; one whose
# record no longer matches (another process) is not adopted.
r=$(post "$(printf '{"id":"a-dead","kind":"app_start","instance":"%s-dead","command":"sleep 1000","port":3}' "$t")")
[ "$(wait_action a-dead | field 'd["status"]')" = succeeded ] || fail "app_start dead"
dead_pid=$(inst $t-dead pid)
kill -9 "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
kill -9 "$dead_pid"
sleep 0.2
start_agent 3
grep -q "recover: app instance gone instance=$t-dead" "$dir/agent.log" || fail "$t-dead not reported gone"
[ "$(inst $t-dead state)" = shutoff ] || fail "$t-dead state: $(inst $t-dead state)"
[ "$(inst $t-keep pid)" = "$keep_pid" ] || fail "$t-keep lost on the second restart"
r=$(post "$(printf '{"id":"s-dead","kind":"app_stop","instance":"%s-dead"}' "$t")")
[ "$(wait_action s-dead | field 'd["status"]')" = succeeded ] || fail "app_stop of a gone instance"
[ "$(inst $t-dead state)" = none ] || fail "gone instance still listed after app_stop"
echo "ok: an instance that died while the agent was down is reported shutoff, then dropped"

# Clean stop: instances end with the agent and leave no record behind.
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
pids=()
alive "$keep_pid" && fail "instance survived a clean stop"
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$dir/agent.log"; then fail "sanitizer report"; fi
echo "it_agent_restart: ok"
