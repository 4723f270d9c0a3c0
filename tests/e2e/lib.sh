# tests/e2e/lib.sh - a small wlm cluster on loopback for end-to-end tests.
# Source after scripts/lib.sh. Uses $bin and $dir; fills $pids.

e2e_fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log; do echo "== $f (tail)"; tail -25 "$f"; done >&2
  "$bin/wlm" placement >&2 2>&1 || true
  curl -s -H "Authorization: Bearer $WLM_TOKEN" "$WLM_CONTROLLER/v1/flows" >&2 || true
  echo >&2
  "$bin/wlm" job list >&2 2>&1 || true
  exit 1
}

# e2e_begin NAME: a scratch directory and a cleanup trap that stops every
# process in $pids and this cluster's app instances. Sets bin, dir, pids.
e2e_begin() {
  bin=$WLM_BIN_DIR
  export PATH=$bin:$PATH
  dir=$(mktemp -d "/tmp/wlm-$1-XXXXXX")
  mkdir -p "$dir/shared"
  pids=()
  trap e2e_cleanup EXIT
}
e2e_cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"
  e2e_kill_instances
  # The agents' cgroups, so that reruns on one machine do not pile them up.
  wlm_rm_cgroups "wlm-${dir##*/}-*"
  [ -n "${E2E_KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"
}

# e2e_start_cluster NODE_SPECS...: each "name:cores:mhz:mem[:labels]".
# E2E_CONTROLLER_FLAGS replaces --simulate-jobs; E2E_AGENT_FLAGS are added
# to every agent's flags.
e2e_start_cluster() {
  local port admin web
  port=$(wlm_free_port); admin=$(wlm_free_port); web=$(wlm_free_port)
  export WLM_TOKEN=e2e-$$-$RANDOM WLM_CONTROLLER=http://127.0.0.1:$port
  E2E_WEB=127.0.0.1:$web
  E2E_ROUTER_ADMIN=127.0.0.1:$admin
  echo '{"limit": 32, "apps": []}' >"$dir/router.json"
  "$bin/wlm-router" --config "$dir/router.json" --listen "$E2E_WEB" --admin "127.0.0.1:$admin" \
    --token "$WLM_TOKEN" >"$dir/router.log" 2>&1 &
  pids+=($!)
  # Instances get ports from a range of their own (tests run in parallel).
  E2E_PORT_BASE=$(( 20000 + (RANDOM % 400) * 100 ))
  "$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --router-url "http://127.0.0.1:$admin" \
    --app-port-base "$E2E_PORT_BASE" \
    ${E2E_CONTROLLER_FLAGS---simulate-jobs} --flow-period-ms 1000 --placement-period-ms 2000 \
    --node-lost-after-ms 5000 >"$dir/controller.log" 2>&1 &
  pids+=($!)
  wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || e2e_fail "controller did not start"
  local spec n
  for spec in "$@"; do
    IFS=: read -r n cores mhz mem labels <<<"$spec"
    wlm_test_node_xml "$dir/$n.xml" "$cores" "$mhz" "$mem"
    mkdir -p "$dir/$n"
    "$bin/wlm-nodeagent" --name "$n" --controller "$WLM_CONTROLLER" --libvirt-uri "test://$dir/$n.xml" \
      --listen-port 0 --state-dir "$dir/$n" --shared-dir "$dir/shared" --heartbeat-ms 500 \
      --cgroup "wlm-${dir##*/}-$n" \
      ${labels:+--labels "$labels"} ${E2E_AGENT_FLAGS:-} >"$dir/$n.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do
    [ "$("$bin/wlm" nodes --json 2>/dev/null | grep -c '"READY"')" -ge $# ] && return 0
    sleep 0.2
  done
  e2e_fail "nodes did not all become READY"
}

# The pids of this cluster's app instances (sample apps listening in its
# port range E2E_PORT_BASE..+99), one a line.
e2e_instance_pids() {
  local pid args p
  [ -n "${E2E_PORT_BASE:-}" ] || return 0
  for pid in $(pgrep -f 'wlm-sampleapp --port' || true); do
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    p=$(sed -n 's/.*--port \([0-9]*\).*/\1/p' <<<"$args")
    [ -n "$p" ] && [ "$p" -ge "$E2E_PORT_BASE" ] && [ "$p" -lt $((E2E_PORT_BASE + 100)) ] && echo "$pid"
  done
  return 0
}
e2e_instances() { e2e_instance_pids | wc -l; }

# Application instances run in their own sessions (agents leave them running
# across restarts, as on a real node): stop the ones of this cluster.
e2e_kill_instances() {
  local pid
  for pid in $(e2e_instance_pids); do kill -9 "$pid" 2>/dev/null || true; done
}

# e2e_wait SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
e2e_wait() {
  local limit=$1 what=$2
  shift 2
  local end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -lt "$end" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  e2e_fail "timed out after ${limit}s waiting for: $what"
}

# JSON queries through python3 (stdlib only).
e2e_py() { python3 -c "$1"; }

# Current utility of one workload (name prefix), or "none".
e2e_utility() {
  "$bin/wlm" utilities --json | e2e_py "
import json,sys
d=json.load(sys.stdin)
for w in d['workloads']:
    if w['name'].split(' ')[0]=='$1': print(w['utility']); break
else: print('none')"
}

e2e_nodes_on() {
  "$bin/wlm" status --json | e2e_py "import json,sys; print(json.load(sys.stdin)['nodes']['on'])"
}

e2e_job_state() {
  "$bin/wlm" job show "$1" --json | e2e_py "import json,sys; print(json.load(sys.stdin)['state'])"
}

# Has job $1 ever been in state $2 (from its recorded history)?
e2e_job_was() {
  "$bin/wlm" job show "$1" --json | e2e_py "
import json,sys
h=json.load(sys.stdin).get('history',[])
sys.exit(0 if any(e.get('to')=='$2' for e in h) else 1)"
}
