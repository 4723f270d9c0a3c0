#!/usr/bin/env bash
# Faults around the router: (1) the router is killed and restarted with an
# empty configuration; the controller gives it its routes and instances back
# and requests succeed again. (2) The controller is killed; the router keeps
# serving with the last configuration it was given.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/e2e/lib.sh"
e2e_begin rr
e2e_start_cluster n1:2:1000:2048
cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 256,
 "prefix": "/", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
wlm app deploy -f "$dir/web.json" >/dev/null
ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$E2E_WEB/")" = 200 ]; }
e2e_wait 60 "requests through the router to succeed" ok

# (1) kill -9 the router, start it again with nothing configured.
router_pid=${pids[0]}
kill -9 "$router_pid"
wait "$router_pid" 2>/dev/null || true
echo '{"limit": 8, "apps": []}' >"$dir/router.json"
"$bin/wlm-router" --config "$dir/router.json" --listen "$E2E_WEB" --admin "$E2E_ROUTER_ADMIN" \
  --token "$WLM_TOKEN" >>"$dir/router.log" 2>&1 &
pids+=($!)
t0=$(date +%s)
e2e_wait 60 "the restarted router to get its configuration back" ok
echo "router restarted: serving again after $(( $(date +%s) - t0 )) s"

# (2) the controller goes away: the router keeps serving.
kill -9 "${pids[1]}"
sleep 2
fails=0
for _ in $(seq 50); do ok || fails=$((fails + 1)); done
[ "$fails" -eq 0 ] || e2e_fail "$fails of 50 requests failed while the controller was down"
echo "controller down: 50 of 50 requests served with the last configuration"
echo "it_router_restart: ok"
