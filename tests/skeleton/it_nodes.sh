#!/usr/bin/env bash
# A controller and two node agents on loopback: `wlm nodes` shows both READY;
# kill -9 one agent and it turns LOST; the controller restarts and still
# knows both nodes (the registry is in SQLite).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
dir=$(mktemp -d /tmp/wlm-it-nodes-XXXXXX)
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"
  wlm_rm_cgroups "wlm-nodes$$-*" # beta's agent is killed with -9 below
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$dir"/*.log; do echo "== $f"; tail -20 "$f"; done >&2; exit 1; }

port=$(wlm_free_port)
export WLM_TOKEN=it-secret WLM_CONTROLLER=http://127.0.0.1:$port
start_controller() {
  "$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --node-lost-after-ms 1500 \
    >>"$dir/controller.log" 2>&1 &
  cpid=$!
  pids+=($cpid)
  wlm_wait_http "$WLM_CONTROLLER/healthz" 20 || fail "controller did not start"
}
start_controller

for n in alpha beta; do
  wlm_test_node_xml "$dir/$n.xml" 4 2400 8192
  mkdir -p "$dir/$n"
  "$bin/wlm-nodeagent" --name "$n" --controller "$WLM_CONTROLLER" --libvirt-uri "test://$dir/$n.xml" \
    --listen-port 0 --state-dir "$dir/$n" --heartbeat-ms 300 --cgroup "wlm-nodes$$-$n" >"$dir/$n.log" 2>&1 &
  pids+=($!)
  eval "pid_$n=$!"
done

wait_state() { # NAME STATE SECONDS
  for _ in $(seq $(($3 * 10))); do
    "$bin/wlm" nodes 2>/dev/null | awk -v n="$1" -v s="$2" '$1==n && $2==s {f=1} END {exit !f}' && return 0
    sleep 0.1
  done
  "$bin/wlm" nodes >&2 || true
  fail "node $1 did not become $2 within $3 s"
}
wait_state alpha READY 15
wait_state beta READY 15
out=$("$bin/wlm" nodes)
echo "$out"
echo "$out" | grep -E '^alpha +READY +4 +2400 +8192 ' >/dev/null || fail "alpha row wrong: capacity from the test driver"
"$bin/wlm" nodes --json | python3 -c 'import json,sys; n=json.load(sys.stdin); assert {x["name"] for x in n}=={"alpha","beta"}, n' \
  || fail "--json output wrong"

# Without the token nothing is listed.
if WLM_TOKEN=wrong "$bin/wlm" nodes >/dev/null 2>"$dir/err"; then fail "wrong token accepted"; fi
grep -q "refused the token" "$dir/err" || fail "no clear message for a wrong token: $(cat "$dir/err")"

kill -9 "$pid_beta"
wait_state beta LOST 10
wait_state alpha READY 2

# Restart the controller: both nodes are still known; alpha comes back READY.
kill -9 "$cpid"
start_controller
"$bin/wlm" nodes | grep -q '^beta ' || fail "beta forgotten after controller restart"
wait_state alpha READY 10

# Bad registration input is refused with the field named, nothing stored.
code=$(curl -s -o "$dir/resp" -w '%{http_code}' -H "Authorization: Bearer $WLM_TOKEN" \
  -d '{"name":"bad","cores":0,"mhz":1000,"memory_mb":10}' "$WLM_CONTROLLER/v1/nodes")
[ "$code" = 400 ] || fail "registration with cores=0 gave $code"
grep -q cores "$dir/resp" || fail "error does not name the field: $(cat "$dir/resp")"
"$bin/wlm" nodes | grep -q '^bad ' && fail "invalid node was stored"

# Unreachable controller: clear message and exit code 3.
set +e
WLM_CONTROLLER=http://127.0.0.1:1 "$bin/wlm" nodes 2>"$dir/err"; rc=$?
set -e
[ $rc -eq 3 ] || fail "unreachable controller exit code $rc"
grep -q "cannot reach the controller" "$dir/err" || fail "unclear unreachable message"
echo "it_nodes: ok"
