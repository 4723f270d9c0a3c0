#!/usr/bin/env bash
# kill -9 the node agent while a job VM is starting (real libvirtd + QEMU),
# at a few different moments. After the restart: at most one domain for the
# job, the agent's record agrees with libvirt (running only if the domain
# lives), no pool image is leaked (images in use = live job domains), and a
# second start never makes a second domain.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
[ "$(id -u)" -eq 0 ] || { echo "it_kill_starting: needs root for libvirtd" >&2; exit 1; }
"$WLM_SOURCE_DIR/scripts/start-libvirt"
export LIBVIRT_DEFAULT_URI=qemu:///system
dir=$(mktemp -d /tmp/wlm-it-ks-XXXXXX)
chmod 755 "$dir"
tag=ks$$
pid=
cleanup() {
  [ -n "$pid" ] && wlm_kill_tree "$pid"
  for d in $(virsh list --all --name 2>/dev/null | grep "^wlm-$tag" || true); do
    virsh destroy "$d" >/dev/null 2>&1 || true; virsh undefine "$d" >/dev/null 2>&1 || true
  done
  for p in $(virsh pool-list --name 2>/dev/null | grep -- "-$tag" || true); do virsh pool-destroy "$p" >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -20 "$dir/agent.log" >&2; exit 1; }
export WLM_TOKEN=ks-secret
cport=$(wlm_free_port)
url=
start_agent() {
  local before
  before=$(grep -c 'node agent listening' "$dir/agent.log" 2>/dev/null || true)
  "$bin/wlm-nodeagent" --name "n-$tag" --controller "http://127.0.0.1:$cport" --libvirt-uri qemu:///system \
    --listen-port 0 --state-dir "$dir/a" --shared-dir "$dir/shared" --vm-memory-mb 128 \
    --pool-size 0 --pool-max 4 --heartbeat-ms 300 >>"$dir/agent.log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do
    [ "$(grep -c 'node agent listening' "$dir/agent.log" 2>/dev/null || true)" -gt "${before:-0}" ] && break
    sleep 0.1
  done
  url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/agent.log" | tail -1 | cut -d= -f2)
  [ -n "$url" ] || fail "agent did not start"
}
api() { curl -sS --retry 5 --retry-connrefused -H "Authorization: Bearer $WLM_TOKEN" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

start_agent
for delay in 0.05 0.4 1.5; do
  job=$tag-$(echo "$delay" | tr -d .)
  code=$(api -o /dev/null -w '%{http_code}' -d "{\"id\":\"s-$job\",\"kind\":\"start\",\"job\":\"$job\",\"command\":\"sleep 600\"}" "$url/v1/actions")
  [ "$code" = 202 ] || fail "start -> $code"
  sleep "$delay"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  start_agent
  sleep 1
  doms=$(virsh list --name | grep -c "^wlm-$job\$" || true)
  state=$(api "$url/v1/jobs/$job" | field 'd.get("state","none")' 2>/dev/null || echo none)
  [ "$doms" -le 1 ] || fail "killed after ${delay}s: $doms domains for $job"
  if [ "$doms" -eq 1 ]; then
    [ "$state" = running ] || fail "killed after ${delay}s: domain lives but the agent says '$state'"
  else
    [ "$state" != running ] || fail "killed after ${delay}s: no domain but the agent says running"
  fi
  # A second start: refused while the domain lives, and never a second domain.
  api -o /dev/null -d "{\"id\":\"t-$job\",\"kind\":\"start\",\"job\":\"$job\",\"command\":\"sleep 600\"}" "$url/v1/actions" || true
  sleep 2
  [ "$(virsh list --name | grep -c "^wlm-$job\$" || true)" -le 1 ] || fail "second start made a second domain"
  live=$(virsh list --name | grep -c "^wlm-$tag" || true)
  used=$(api "$url/v1/node" | field 'd["pool"]["used"]')
  [ "$used" -le "$live" ] || fail "pool images in use $used > live job domains $live (leak)"
  echo "killed ${delay}s into the start: domains=$doms state=$state; pool used=$used live=$live"
done
echo "it_kill_starting: ok"
