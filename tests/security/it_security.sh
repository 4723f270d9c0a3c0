#!/usr/bin/env bash
# Hostile requests against the real daemons on loopback (issue 10):
#  - every control endpoint of wlm-controller, wlm-nodeagent and wlm-router
#    answers 401 with a JSON error and no data, without a token and with a
#    wrong one; /healthz and /metrics stay public;
#  - header and body limits hold (431, 413);
#  - job/instance ids that try to leave the agent's state dir are refused
#    (400) and nothing is created outside it;
#  - the token never appears in any daemon's log (debug level).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
dir=$(mktemp -d /tmp/wlm-it-security-XXXXXX)
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"; rm -rf "$dir"; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log; do echo "== $f"; tail -20 "$f"; done >&2
  echo "FAIL: $*" >&2
  exit 1
}

# A token no request or log line would contain by chance.
token="sec-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
cport=$(wlm_free_port)
rport=$(wlm_free_port)
aport=$(wlm_free_port)
ctl=http://127.0.0.1:$cport
radmin=http://127.0.0.1:$aport

cat >"$dir/router.json" <<JSON
{"limit":4,"apps":[{"name":"shop","hosts":["shop"],"instances":[{"url":"http://127.0.0.1:1"}]}]}
JSON
"$bin/wlm-router" --config "$dir/router.json" --listen "127.0.0.1:$rport" --admin "127.0.0.1:$aport" \
  --token "$token" --log-level debug >"$dir/router.log" 2>&1 &
pids+=($!)
WLM_TOKEN=$token "$bin/wlm-controller" --listen-port "$cport" --db "$dir/c.db" \
  --router-url "$radmin" --log-level debug >"$dir/controller.log" 2>&1 &
pids+=($!)
wlm_wait_http "$ctl/healthz" 30 || fail "controller did not start"
wlm_wait_http "$radmin/healthz" 30 || fail "router did not start"

wlm_test_node_xml "$dir/n1.xml" 4 2400 8192
agroot=$dir/agent # holds only the agent's state dir and a decoy sibling
mkdir -p "$agroot/state" "$agroot/outside"
WLM_TOKEN=$token "$bin/wlm-nodeagent" --name n1 --controller "$ctl" --libvirt-uri "test://$dir/n1.xml" \
  --listen-port 0 --state-dir "$agroot/state" --heartbeat-ms 300 --log-level debug >"$dir/agent.log" 2>&1 &
pids+=($!)
agent=
for _ in $(seq 200); do
  agent=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/agent.log" 2>/dev/null | head -1 | cut -d= -f2 || true)
  [ -n "$agent" ] && break
  sleep 0.1
done
[ -n "$agent" ] || fail "agent did not report its URL"
wlm_wait_http "$agent/healthz" 20 || fail "agent did not start"

checks=0
# expect_401 METHOD URL [BODY]: no token and a wrong token both give 401 with
# a JSON {"error": ...} body that carries nothing but the error.
expect_401() {
  local m=$1 url=$2 body=${3:-} auth code
  for auth in "" "Authorization: Bearer wrong-$token" "Authorization: Basic $token" "Authorization: Bearer "; do
    local args=(-s -o "$dir/resp" -w '%{http_code}' -X "$m" --max-time 5)
    [ -n "$auth" ] && args+=(-H "$auth")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    code=$(curl "${args[@]}" "$url") || true
    [ "$code" = 401 ] || fail "$m $url with '${auth:-no auth}' gave $code, want 401: $(head -c 300 "$dir/resp")"
    # {"error": "...", "detail": "..."} and nothing else (no listing, no echo of the token).
    tr -d '\n' <"$dir/resp" | grep -Eq '^\{ *"error": *"[^"]*"( *, *"detail": *"[^"]*")? *\}$' ||
      fail "$m $url: 401 body is not a bare JSON error: $(head -c 300 "$dir/resp")"
    grep -F -q -- "${token#sec-}" "$dir/resp" && fail "$m $url: 401 body echoes the token"
    checks=$((checks + 1))
  done
}
expect_401 GET "$ctl/v1/nodes"
expect_401 POST "$ctl/v1/nodes" '{"name":"evil","cores":1,"mhz":1000,"memory_mb":10}'
expect_401 GET "$ctl/v1/nodes/n1"
expect_401 DELETE "$ctl/v1/nodes/n1"
expect_401 POST "$ctl/v1/nodes/n1/heartbeat" '{}'
expect_401 GET "$ctl/v1/jobs"
expect_401 POST "$ctl/v1/jobs" '{"command":"true"}'
expect_401 GET "$ctl/v1/jobs/1"
expect_401 GET "$ctl/v1/apps"
expect_401 POST "$ctl/v1/apps" '{"name":"x"}'
expect_401 GET "$ctl/v1/placement"
expect_401 GET "$ctl/v1/placement/snapshot"
expect_401 GET "$ctl/v1/utilities"
expect_401 GET "$ctl/v1/events"
expect_401 GET "$ctl/v1/flows"
expect_401 GET "$ctl/v1/summary"
expect_401 POST "$ctl/v1/actions/x/complete" '{"status":"succeeded"}'
expect_401 GET "$agent/v1/node"
expect_401 GET "$agent/v1/jobs"
expect_401 GET "$agent/v1/jobs/j1"
expect_401 GET "$agent/v1/actions/a1"
expect_401 POST "$agent/v1/actions" '{"id":"a1","kind":"start","job":"j1"}'
expect_401 GET "$radmin/admin/config"
expect_401 PUT "$radmin/admin/config" '{"limit":1,"apps":[]}'
expect_401 GET "$radmin/admin/stats"

# Nothing changed by the refused writes.
code=$(curl -s -o "$dir/resp" -w '%{http_code}' -H "Authorization: Bearer $token" "$ctl/v1/nodes")
[ "$code" = 200 ] || fail "GET /v1/nodes with the token gave $code"
grep -q evil "$dir/resp" && fail "refused registration was stored"
# (the controller owns the router's config and pushes its own with the token;
# the refused PUT asked for limit 1)
curl -s -H "Authorization: Bearer $token" "$radmin/admin/stats" |
  python3 -c 'import json,sys; assert json.load(sys.stdin)["limit"] != 1' ||
  fail "router config changed by a refused PUT"
echo "it_security: 401 checks done (${SECONDS}s)"

# Public endpoints stay public.
for u in "$ctl/healthz" "$ctl/metrics" "$agent/healthz" "$radmin/healthz" "$radmin/metrics"; do
  code=$(curl -s -o "$dir/resp" -w '%{http_code}' --max-time 5 "$u")
  [ "$code" = 200 ] || fail "public $u gave $code"
  grep -q "$token" "$dir/resp" && fail "$u leaks the token"
  checks=$((checks + 1))
done

# Header limit: 431 on every daemon (defaults: 16 KiB of head).
big=$(head -c 40000 /dev/zero | tr '\0' a)
for u in "$ctl/v1/nodes" "$agent/v1/node" "$radmin/admin/stats" "http://127.0.0.1:$rport/"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Big: $big" \
    -H "Authorization: Bearer $token" "$u") || true
  [ "$code" = 431 ] || fail "40 KB header to $u gave $code, want 431"
  checks=$((checks + 1))
done
# Body limit: 413 on the controller (default 8 MiB), even with the token, and
# announced by Content-Length before the body is read.
head -c $((9 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$dir/big.json"
for u in "$ctl/v1/jobs" "$ctl/v1/nodes"; do
  code=$(curl -s -o "$dir/resp" -w '%{http_code}' --max-time 20 -H 'Expect:' \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data-binary @"$dir/big.json" "$u") || true
  [ "$code" = 413 ] || fail "9 MiB body to $u gave $code, want 413"
  checks=$((checks + 1))
done
# Chunked bodies have no length up front: the limit must still hold.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H 'Expect:' -H 'Transfer-Encoding: chunked' \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  --data-binary @"$dir/big.json" "$ctl/v1/jobs") || true
[ "$code" = 413 ] || fail "9 MiB chunked body gave $code, want 413"
checks=$((checks + 1))

echo "it_security: limits done (${SECONDS}s)"
# Path traversal on the agent: ids that name a path are refused with 400.
before=$(find "$agroot" -path "$agroot/state" -prune -o -print | sort)
n=0
for id in "../../etc" "..%2F..%2Fetc" "../outside/x" ".." "." "a/b" "..\\\\x" "/etc/passwd" "" \
          "$(head -c 200 /dev/zero | tr '\0' a)"; do
  for kind in start app_start restore; do
    n=$((n + 1))
    field=job
    [ "$kind" = app_start ] && field=instance
    body=$(printf '{"id":"t%d","kind":"%s","%s":"%s","image":"../../outside/img","port":%d}' \
      "$n" "$kind" "$field" "$id" "$((20000 + n))")
    code=$(curl -s -o "$dir/resp" -w '%{http_code}' -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -d "$body" "$agent/v1/actions")
    [ "$code" = 400 ] || fail "agent action $kind with $field='$id' gave $code, want 400: $(cat "$dir/resp")"
    checks=$((checks + 1))
  done
  # The action id itself is a name too.
  body=$(printf '{"id":"%s","kind":"power_on"}' "$id")
  code=$(curl -s -o "$dir/resp" -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "$body" "$agent/v1/actions")
  [ "$code" = 400 ] || fail "agent action id '$id' gave $code, want 400: $(cat "$dir/resp")"
  checks=$((checks + 1))
done
for p in "..%2F..%2Fetc%2Fpasswd" "%2E%2E" "..%2Foutside"; do
  for base in "$agent/v1/jobs/" "$agent/v1/actions/"; do
    code=$(curl -s --path-as-is -o "$dir/resp" -w '%{http_code}' -H "Authorization: Bearer $token" "$base$p")
    case $code in 400 | 404) ;; *) fail "GET $base$p gave $code, want 400/404: $(head -c 200 "$dir/resp")" ;; esac
    grep -q "root:" "$dir/resp" && fail "GET $base$p leaked a file"
    checks=$((checks + 1))
  done
done
after=$(find "$agroot" -path "$agroot/state" -prune -o -print | sort)
[ "$before" = "$after" ] || fail "files appeared outside the agent's state dir: $(diff <(echo "$before") <(echo "$after"))"
[ -z "$(ls -A "$agroot/outside")" ] || fail "agent wrote into $agroot/outside"
find "$dir" -maxdepth 4 -newer "$dir/n1.xml" \( -name etc -o -name passwd -o -name img \) 2>/dev/null | grep -q . &&
  fail "a file named after a traversal attempt appeared: $(find "$dir" -maxdepth 4 -newer "$dir/n1.xml" \( -name etc -o -name passwd -o -name img \) 2>/dev/null)"

# The token in logs: look for it (and its hex body) in every daemon's output.
sleep 1
for f in "$dir"/*.log; do
  grep -F -q "$token" "$f" && fail "token appears in $(basename "$f")"
  grep -F -q "${token#sec-}" "$f" && fail "token body appears in $(basename "$f")"
done
for f in "$dir"/*.log; do [ -s "$f" ] || fail "$(basename "$f") is empty: cannot judge secrets in logs"; done
echo "it_security: ok ($checks checks)"
