#!/usr/bin/env bash
# The admin dashboard in headless Chromium: a controller with three libvirt
# test-driver node agents and a few jobs; the page loads, the utility chart
# gains data points, the placement map shows every node, the minimum utility
# is shown; without a token the page says so. Screenshot:
# $WLM_BUILD_DIR/dashboard.png.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
chromium=${WLM_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "FAIL: $chromium not found (scripts/install-deps browser)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-it-dash-XXXXXX)
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$dir"/*.log; do echo "== $f"; tail -20 "$f"; done >&2; exit 1; }

port=$(wlm_free_port)
export WLM_TOKEN=dash-secret-$$ WLM_CONTROLLER=http://127.0.0.1:$port
"$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --simulate-jobs \
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
  --token "$WLM_TOKEN" --nodes "$(IFS=,; echo "${nodes[*]}")" --screenshot "$shot" \
  --timeout 40 --log "$dir/chromium.log" &
cdp=$!
pids+=($cdp)
wait "$cdp" || fail "dashboard checks failed (above)"

[ -f "$shot" ] || fail "no screenshot at $shot"
size=$(stat -c %s "$shot")
[ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$shot is not a PNG"
[ "$size" -gt 10240 ] || fail "screenshot only $size bytes: page blank?"
echo "it_dashboard: ok (screenshot $shot, $size bytes)"
