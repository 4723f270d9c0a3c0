#!/usr/bin/env bash
# The admin dashboard in headless Chromium: a controller with three libvirt
# test-driver node agents, a router, a web application under load and a few
# jobs; the page loads, the utility chart gains data points, the placement
# map shows every node, the minimum utility is shown; the utility functions
# panel draws the app's curve (with its cliff below the CPU demand) and every
# job's, each with a marker where it runs, lowest utility first and the
# minimum highlighted; with more jobs than charts it draws 24 and counts the
# rest; without a token the page says so. Screenshots:
# $WLM_BUILD_DIR/dashboard.png and dashboard-many.png (after the extra jobs).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh" # e2e_kill_instances
bin=$WLM_BIN_DIR
export PATH=$bin:$PATH # the agents start wlm-sampleapp instances
chromium=${WLM_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "FAIL: $chromium not found (scripts/install-deps browser)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-it-dash-XXXXXX)
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"
  e2e_kill_instances
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$dir"/*.log; do echo "== $f"; tail -20 "$f"; done >&2; exit 1; }

port=$(wlm_free_port); admin=$(wlm_free_port); web=$(wlm_free_port)
export WLM_TOKEN=dash-secret-$$ WLM_CONTROLLER=http://127.0.0.1:$port
echo '{"limit": 32, "apps": []}' >"$dir/router.json"
"$bin/wlm-router" --config "$dir/router.json" --listen "127.0.0.1:$web" --admin "127.0.0.1:$admin" \
  --token "$WLM_TOKEN" >"$dir/router.log" 2>&1 &
pids+=($!)
# Instances get ports from a range of their own (tests run in parallel).
E2E_PORT_BASE=$(( 20000 + (RANDOM % 400) * 100 ))
"$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --simulate-jobs \
  --router-url "http://127.0.0.1:$admin" --app-port-base "$E2E_PORT_BASE" \
  --flow-period-ms 500 --placement-period-ms 1500 >"$dir/controller.log" 2>&1 &
pids+=($!)
wlm_wait_http "$WLM_CONTROLLER/healthz" 30 || fail "controller did not start"

nodes=(alpha beta gamma)
for n in "${nodes[@]}"; do
  wlm_test_node_xml "$dir/$n.xml" 4 2400 8192
  mkdir -p "$dir/$n" "$dir/shared"
  "$bin/wlm-nodeagent" --name "$n" --controller "$WLM_CONTROLLER" --libvirt-uri "test://$dir/$n.xml" \
    --listen-port 0 --state-dir "$dir/$n" --shared-dir "$dir/shared" --heartbeat-ms 300 \
    >"$dir/$n.log" 2>&1 &
  pids+=($!)
done
ready=0
for _ in $(seq 300); do
  ready=$("$bin/wlm" nodes 2>/dev/null | awk '$2=="READY"' | wc -l) || true
  [ "$ready" -eq 3 ] && break
  sleep 0.1
done
[ "$ready" -eq 3 ] || fail "only $ready of 3 nodes READY after 30 s"

for j in build report; do
  "$bin/wlm" job submit --name "$j" --command true --work-seconds 30 --class gold >/dev/null \
    || fail "job submit $j failed"
done
"$bin/wlm" job submit --name batch --command true --work-seconds 60 --class bronze >/dev/null \
  || fail "job submit batch failed"
# A web application under load: the controller learns its curve, with a
# cliff below the CPU its traffic needs.
cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 3 --delay-ms 5 --workers 1",
 "memory_mb": 256, "min_instances": 1, "max_instances": 2, "max_cpu_mhz": 1200,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 50}]}
JSON
"$bin/wlm" app deploy -f "$dir/web.json" >/dev/null || fail "app deploy failed"
"$bin/wlm-loadgen" --target "127.0.0.1:$web" --stream "/@25" --report 5 >"$dir/loadgen.log" 2>&1 &
pids+=($!)

# Utilities exist before the browser starts, so a failure below is the page's.
for _ in $(seq 100); do
  curl -fsS -H "Authorization: Bearer $WLM_TOKEN" "$WLM_CONTROLLER/v1/utilities" 2>/dev/null |
    python3 -c 'import json,sys; u=json.load(sys.stdin); sys.exit(0 if u.get("workloads") else 1)' && break
  sleep 0.1
done

shot=$WLM_BUILD_DIR/dashboard.png
rm -f "$shot"
# In the background so the cleanup trap can stop it (it closes the browser).
python3 "$WLM_SOURCE_DIR/tests/dashboard/cdp.py" --chromium "$chromium" --base "$WLM_CONTROLLER" \
  --token "$WLM_TOKEN" --nodes "$(IFS=,; echo "${nodes[*]}")" --apps web --more-jobs 30 \
  --screenshot "$shot" --timeout 40 --log "$dir/chromium.log" &
cdp=$!
pids+=($cdp)
wait "$cdp" || fail "dashboard checks failed (above)"

[ -f "$shot" ] || fail "no screenshot at $shot"
size=$(stat -c %s "$shot")
[ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$shot is not a PNG"
[ "$size" -gt 10240 ] || fail "screenshot only $size bytes: page blank?"
echo "it_dashboard: ok (screenshot $shot, $size bytes)"
