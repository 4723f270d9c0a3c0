#!/usr/bin/env bash
# TLS on the control plane (issue 17, item 2), on real daemons on loopback:
#  - a local CA (openssl CLI) signs certificates for 127.0.0.1;
#  - CLI -> controller, agent -> controller (an agent token), controller ->
#    agent (a job's start action) and controller -> router admin (the pushed
#    configuration) all run over HTTPS;
#  - a client that trusts another CA, and a server whose certificate names
#    another host, are refused with a message that says why;
#  - plain HTTP to an HTTPS port gets a plain 400 that says so, and the
#    startup logs say which scheme each daemon serves.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
dir=$(mktemp -d /tmp/wlm-it-tls-XXXXXX)
pids=()
export PATH=$bin:$PATH
port_base=$(( 20000 + (RANDOM % 400) * 100 ))
kill_instances() { # app instances run in their own sessions
  local pid args p
  for pid in $(pgrep -f 'wlm-sampleapp --port' || true); do
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    p=$(sed -n 's/.*--port \([0-9]*\).*/\1/p' <<<"$args")
    [ -n "$p" ] && [ "$p" -ge "$port_base" ] && [ "$p" -lt $((port_base + 100)) ] && kill -9 "$pid" 2>/dev/null
  done
  return 0
}
cleanup() { [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"; kill_instances; rm -rf "$dir"; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log; do echo "== $f"; tail -20 "$f"; done >&2
  echo "FAIL: $*" >&2
  exit 1
}
checks=0
ok() { checks=$((checks + 1)); }

pki=$dir/pki
wlm_make_ca "$pki"
wlm_make_cert "$pki" srv "IP:127.0.0.1,DNS:localhost"
wlm_make_cert "$pki" wrongname "DNS:other.example"
wlm_make_ca "$pki/other" "another CA"
ca=$pki/ca.pem

token="tls-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
agentapi="agentapi-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
cport=$(wlm_free_port); rport=$(wlm_free_port); aport=$(wlm_free_port)
ctl=https://127.0.0.1:$cport
radmin=https://127.0.0.1:$aport

echo '{"limit": 8, "apps": []}' >"$dir/router.json"
"$bin/wlm-router" --config "$dir/router.json" --listen "127.0.0.1:$rport" --admin "127.0.0.1:$aport" \
  --admin-tls --tls-cert "$pki/srv.pem" --tls-key "$pki/srv.key" --token "$token" \
  >"$dir/router.log" 2>&1 &
pids+=($!)
WLM_TOKEN=$token "$bin/wlm-controller" --listen-port "$cport" --db "$dir/c.db" \
  --tls-cert "$pki/srv.pem" --tls-key "$pki/srv.key" --ca "$ca" --agent-token "$agentapi" \
  --router-url "$radmin" --simulate-jobs --flow-period-ms 500 --placement-period-ms 1000 \
  --app-port-base "$port_base" \
  >"$dir/controller.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS --cacert "$ca" -o /dev/null "$ctl/healthz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS --cacert "$ca" -o /dev/null "$ctl/healthz" || fail "controller did not start over HTTPS"
grep -q 'listening.*scheme=https' "$dir/controller.log" || fail "controller log does not say https"
ok
grep -q 'admin port speaks HTTPS' "$dir/router.log" || fail "router log does not say HTTPS admin"
ok

export WLM_CONTROLLER=$ctl WLM_TOKEN=$token
# CLI -> controller.
out=$(WLM_CA=$ca "$bin/wlm" token whoami) || fail "wlm over https: $out"
[[ $out == *"bootstrap (role admin) over HTTPS"* ]] || fail "whoami over TLS: $out"
ok
out=$("$bin/wlm" --ca "$ca" token whoami) || fail "wlm --ca: $out"
ok
# The wrong CA: refused, and the message says why.
set +e
out=$(WLM_CA=$pki/other/ca.pem "$bin/wlm" token whoami 2>&1); rc=$?
set -e
[ $rc -eq 3 ] && [[ $out == *"certificate verify failed"* ]] || fail "wrong CA (rc $rc): $out"
ok
# No CA given: the system store does not know ours either.
set +e
out=$(env -u WLM_CA "$bin/wlm" token whoami 2>&1); rc=$?
set -e
[ $rc -eq 3 ] && [[ $out == *"certificate verify failed"* ]] || fail "system store (rc $rc): $out"
ok
# Plain HTTP to the HTTPS port: a plain answer that says so.
body=$(curl -s "http://127.0.0.1:$cport/healthz")
[[ $body == *"this port speaks HTTPS"* ]] || fail "plain HTTP to HTTPS port: $body"
ok

# A server whose certificate names another host.
wport=$(wlm_free_port)
WLM_TOKEN=$token "$bin/wlm-controller" --listen-port "$wport" --db "$dir/w.db" \
  --tls-cert "$pki/wrongname.pem" --tls-key "$pki/wrongname.key" >"$dir/wrongname.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$dir/wrongname.log" 2>/dev/null && break; sleep 0.1; done
set +e
out=$(WLM_CA=$ca "$bin/wlm" --controller "https://127.0.0.1:$wport" token whoami 2>&1); rc=$?
set -e
[ $rc -eq 3 ] && [[ $out == *"certificate verify failed"*"mismatch"* ]] || fail "wrong name (rc $rc): $out"
ok
# A bad key file names the file and refuses to start.
set +e
out=$(WLM_TOKEN=$token "$bin/wlm-controller" --listen-port 0 --db "$dir/x.db" \
  --tls-cert "$pki/srv.pem" --tls-key "$pki/wrongname.key" 2>&1); rc=$?
set -e
[ $rc -ne 0 ] && [[ $out == *"wrongname.key"*"mismatch"* ]] || fail "mismatched key (rc $rc): $out"
ok

# Agent -> controller with an agent token, controller -> agent over HTTPS.
agent_tok=$(WLM_CA=$ca "$bin/wlm" token create --role agent --node n1 2>/dev/null)
wlm_test_node_xml "$dir/n1.xml" 4 2000 8192
mkdir -p "$dir/n1"
WLM_TOKEN=$agent_tok "$bin/wlm-nodeagent" --name n1 --controller "$ctl" --ca "$ca" \
  --tls-cert "$pki/srv.pem" --tls-key "$pki/srv.key" --api-token "$agentapi" \
  --libvirt-uri "test://$dir/n1.xml" --listen-port 0 --state-dir "$dir/n1" \
  --shared-dir "$dir/shared" --heartbeat-ms 300 >"$dir/n1.log" 2>&1 &
pids+=($!)
export WLM_CA=$ca
for _ in $(seq 100); do
  "$bin/wlm" nodes --json 2>/dev/null | grep -q '"READY"' && break
  sleep 0.1
done
nodes=$("$bin/wlm" nodes --json) || fail "wlm nodes"
[[ $nodes == *'"READY"'* && $nodes == *'"agent_url": "https://127.0.0.1:'* ]] \
  || fail "agent did not register over TLS with an https URL: $nodes"
ok
# The agent's API wants the agent API token over HTTPS.
agent_url=$(sed -n 's/.*"agent_url": "\(https:[^"]*\)".*/\1/p' <<<"$nodes" | head -1)
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "Authorization: Bearer $agentapi" "$agent_url/v1/node")" = 200 ] \
  || fail "agent API over HTTPS with the agent API token"
ok
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "Authorization: Bearer $agent_tok" "$agent_url/v1/node")" = 401 ] \
  || fail "the agent's own controller token must not open its API"
ok
"$bin/wlm" job submit --name t --command true --work-seconds 3 --threads 1 --max-speed 1000 \
  --memory 256 >/dev/null || fail "submit over TLS"
state=
for _ in $(seq 150); do
  state=$("$bin/wlm" job show 1 --json 2>/dev/null | sed -n 's/.*"state": "\([A-Z]*\)".*/\1/p' | head -1)
  [ "$state" = COMPLETED ] && break
  sleep 0.2
done
[ "$state" = COMPLETED ] || fail "job did not complete over TLS (state $state)"
grep -q 'action done.*kind=start.*node=n1' "$dir/controller.log" || fail "no start action done"
ok

# Controller -> router admin over HTTPS: a deployed app reaches the router.
cat >"$dir/app.json" <<'JSON'
{"name": "shop", "command": "true {port}", "memory_mb": 64, "min_instances": 0,
 "classes": [{"name": "gold", "goal_ms": 100}]}
JSON
"$bin/wlm" app deploy -f "$dir/app.json" >/dev/null || fail "deploy over TLS"
cfg=
for _ in $(seq 100); do
  cfg=$(curl -fsS --cacert "$ca" -H "Authorization: Bearer $token" "$radmin/admin/config" || true)
  [[ $cfg == *'"shop"'* ]] && break
  sleep 0.1
done
[[ $cfg == *'"shop"'* ]] || fail "router did not get the app over HTTPS: $cfg"
ok
# An app instance started over HTTPS (agent URL https://) is routed: the
# router gets the instance's plain address, and serves it.
cat >"$dir/web.json" <<'JSON'
{"name": "web", "command": "wlm-sampleapp --port {port} --cpu-ms 1 --delay-ms 1", "memory_mb": 256,
 "prefix": "/web", "classes": [{"name": "default", "goal_ms": 200}]}
JSON
"$bin/wlm" app deploy -f "$dir/web.json" >/dev/null || fail "deploy web over TLS"
code=
for _ in $(seq 150); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$rport/web" || true)
  [ "$code" = 200 ] && break
  sleep 0.2
done
[ "$code" = 200 ] || fail "the app started through an https agent is not served ($code): $(curl -s --cacert "$ca" -H "Authorization: Bearer $token" "$radmin/admin/config")"
ok
# The router's admin port refuses plain HTTP.
set +e
curl -fsS -o /dev/null --max-time 3 -H "Authorization: Bearer $token" "http://127.0.0.1:$aport/admin/stats" 2>/dev/null
rc=$?
set -e
[ $rc -ne 0 ] || fail "router admin answered plain HTTP"
ok

# A plain controller on loopback says so.
pport=$(wlm_free_port)
WLM_TOKEN=$token "$bin/wlm-controller" --listen-port "$pport" --db "$dir/p.db" >"$dir/plain.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'plain HTTP on loopback only' "$dir/plain.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'plain HTTP on loopback only' "$dir/plain.log" || fail "plain loopback controller log"
ok
for f in "$dir"/*.log; do
  grep -q "$token" "$f" && fail "token in $f"
  grep -q "${agent_tok:21}" "$f" && fail "agent token secret in $f"
done
ok
echo "it_tls: $checks checks passed"
