#!/usr/bin/env bash
# Job VMs on a real libvirtd + QEMU (TCG): a job boots and its output and exit
# status come back; pause/resume; a CPU cap is set and read back; kill -9 the
# agent mid-job, restart it, and reconcile keeps the domain; suspend on node
# A -> restore on node B (migrate) and the job continues counting.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
if [ "$(id -u)" -ne 0 ]; then
  echo "it_real_vm: needs root to run libvirtd (CI runs as root)" >&2
  exit 1
fi
"$WLM_SOURCE_DIR/scripts/start-libvirt"
export LIBVIRT_DEFAULT_URI=qemu:///system

dir=$(mktemp -d /tmp/wlm-it-vm-XXXXXX)
chmod 755 "$dir" # QEMU runs as libvirt-qemu and reads kernel/initrd/console here
tag=it$$
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"
  for d in $(virsh list --name 2>/dev/null | grep "^wlm-$tag" || true); do virsh destroy "$d" >/dev/null 2>&1 || true; done
  for p in $(virsh pool-list --name 2>/dev/null | grep -- "-$tag" || true); do virsh pool-destroy "$p" >/dev/null 2>&1 || true; done
  [ -n "${WLM_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "agents: a=${url_a:-} b=${url_b:-}; listening: $(ss -ltn 2>/dev/null | awk 'NR>1 {print $4}' | tr '\n' ' ')" >&2
  for f in "$dir"/*.log "$dir"/*/jobs/*/console.log; do [ -f "$f" ] && { echo "== $f"; tail -15 "$f"; }; done >&2
  exit 1
}

# Agent b uses the script's initramfs; agent a builds its default one.
"$WLM_SOURCE_DIR/scripts/build-initramfs" "$dir/initramfs.cpio.gz"
export WLM_TOKEN=vm-secret
cport=$(wlm_free_port) # nothing listens: agents retry registration quietly

start_agent() { # NAME
  "$bin/wlm-nodeagent" --name "$1-$tag" --controller "http://127.0.0.1:$cport" \
    --libvirt-uri qemu:///system --listen-port 0 --state-dir "$dir/$1" --shared-dir "$dir/shared" \
    $([ "$1" = b ] && echo --initramfs "$dir/initramfs.cpio.gz") --vm-memory-mb 128 --pool-size 0 --pool-max 4 \
    --heartbeat-ms 300 >>"$dir/$1.log" 2>&1 &
  pids+=($!)
  eval "pid_$1=$!"
  local url=""
  for _ in $(seq 100); do
    url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/$1.log" | tail -1 | cut -d= -f2 || true)
    if [ -n "$url" ] && [ "$(grep -c 'node agent listening' "$dir/$1.log")" -ge "${2:-1}" ]; then break; fi
    sleep 0.1
  done
  [ -n "$url" ] || fail "agent $1 did not start"
  eval "url_$1=$url"
}
# Transport failures are retried (a busy CI machine can run short of
# ephemeral ports); POSTs are safe to repeat because action ids are idempotent.
api() {
  local i rc
  for i in $(seq 30); do
    rc=0
    curl -sS -H "Authorization: Bearer $WLM_TOKEN" "$@" || rc=$?
    [ $rc -eq 7 ] || return $rc # 7: could not connect
    echo "api: connect failed (try $i): $(ss -ltn 2>/dev/null | grep -c LISTEN) listeners" >&2
    sleep 0.5
  done
  return 7
}
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
act() { # URL JSON -> final action JSON
  local url=$1 body=$2 id
  id=$(echo "$body" | field 'd["id"]')
  code=$(api -o "$dir/post" -w '%{http_code}' -d "$body" "$url/v1/actions")
  [ "$code" = 202 ] || [ "$code" = 200 ] || fail "POST $body -> $code $(cat "$dir/post")"
  for _ in $(seq 3000); do # a cold start now waits until the guest's init runs the job
    api "$url/v1/actions/$id" >"$dir/act"
    st=$(field 'd["status"]' <"$dir/act")
    [ "$st" = running ] || [ "$st" = accepted ] || { cat "$dir/act"; return 0; }
    sleep 0.1
  done
  fail "action $id did not finish"
}
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
counts() { grep -o 'count [0-9]*' "$1" 2>/dev/null | awk '{print $2}' || true; }
wait_count() { # FILE MIN SECONDS
  for _ in $(seq $(($3 * 10))); do
    n=$(counts "$1" | tail -1)
    [ -n "$n" ] && [ "$n" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "no 'count $2' in $1 within $3 s"
}

start_agent a
start_agent b

# 1. A job boots, prints, exits 3: output and exit status come back.
r=$(act "$url_a" "{\"id\":\"h1\",\"kind\":\"start\",\"job\":\"$tag-hello\",\"command\":\"echo hello from \$(hostname); exit 3\"}")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "start: $r"
has "$(echo "$r" | field 'd["result"]["image"]')" img- || fail "job did not get a pool image: $r"
for _ in $(seq 1800); do # TCG boots slowly when CI runs tests in parallel
  api "$url_a/v1/jobs/$tag-hello" >"$dir/job"
  st=$(field 'd["state"]' <"$dir/job")
  [ "$st" = running ] || break
  sleep 0.1
done
[ "$st" = failed ] || fail "hello job state $st (want failed: exit 3)"
[ "$(field 'd["exit_status"]' <"$dir/job")" = 3 ] || fail "exit status: $(cat "$dir/job")"
has "$(field 'd["output"]' <"$dir/job")" "hello from $tag-hello" || fail "output: $(cat "$dir/job")"
echo "ok: job output and exit status"

# 2. A counting job: pause stops it, resume continues it.
con_a="$dir/a/jobs/$tag-count/console.log"
act "$url_a" "{\"id\":\"c1\",\"kind\":\"start\",\"job\":\"$tag-count\",\"command\":\"i=0; while true; do i=\$((i+1)); echo count \$i; sleep 0.2; done\"}" >/dev/null
wait_count "$con_a" 3 180
has "$(act "$url_a" '{"id":"p1","kind":"pause","job":"'$tag-count'"}')" succeeded || fail "pause"
[ "$(virsh domstate "wlm-$tag-count")" = paused ] || fail "domain not paused"
n1=$(counts "$con_a" | tail -1); sleep 1; n2=$(counts "$con_a" | tail -1)
[ "$n1" = "$n2" ] || fail "counter moved while paused ($n1 -> $n2)"
has "$(act "$url_a" '{"id":"r1","kind":"resume","job":"'$tag-count'"}')" succeeded || fail "resume"
wait_count "$con_a" $((n2 + 2)) 30
echo "ok: pause/resume"

# 3. CPU cap set and read back.
r=$(act "$url_a" '{"id":"z1","kind":"resize","job":"'$tag-count'","cpu_shares":512,"vcpu_quota":20000,"vcpu_period":100000}')
[ "$(echo "$r" | field 'd["result"]["vcpu_quota"]')" = 20000 ] || fail "vcpu_quota not read back: $r"
[ "$(echo "$r" | field 'd["result"]["cpu_shares"]')" = 512 ] || fail "cpu_shares not read back: $r"
si=$(virsh schedinfo "wlm-$tag-count" 2>&1)
[[ "$si" =~ vcpu_quota\ *:\ 20000 ]] || fail "libvirt does not show the quota: $si"
echo "ok: CPU cap"

# 4. kill -9 the agent mid-job; the restarted agent adopts the domain.
uuid=$(virsh domuuid "wlm-$tag-count")
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
start_agent a 2
grep -q "reconcile: adopted running job job=$tag-count " "$dir/a.log" || fail "reconcile did not adopt"
[ "$(virsh domuuid "wlm-$tag-count")" = "$uuid" ] || fail "domain was replaced"
[ "$(api "$url_a/v1/jobs/$tag-count" | field 'd["state"]')" = running ] || fail "job not running after reconcile"
code=$(api -o /dev/null -w '%{http_code}' -d '{"id":"c2","kind":"start","job":"'$tag-count'","command":"x"}' "$url_a/v1/actions")
[ "$code" = 409 ] || fail "second start of an adopted job gave $code"
echo "ok: reconcile after kill -9"

# 5. Migrate A -> B by suspend/copy/restore: the counter goes on on B.
last_a=$(counts "$con_a" | tail -1)
r=$(act "$url_a" '{"id":"m1","kind":"migrate","job":"'$tag-count'","target":"'$url_b'"}')
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "migrate: $r"
con_b="$dir/b/jobs/$tag-count/console.log"
wait_count "$con_b" $((last_a + 2)) 120
first_b=$(counts "$con_b" | head -1)
[ "$first_b" -gt 1 ] || fail "job restarted on B (first count $first_b)"
[ "$(api "$url_b/v1/jobs/$tag-count" | field 'd["state"]')" = running ] || fail "B does not run the job"
echo "ok: suspend on A -> restore on B continues (A last $last_a, B first $first_b)"

has "$(act "$url_b" '{"id":"d1","kind":"destroy","job":"'$tag-count'"}')" succeeded || fail "destroy"
has "$(virsh list --name)" "wlm-$tag-count" && fail "domain survived destroy"
# Clean shutdown, and no sanitizer report in any agent log.
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
if grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$dir"/*.log; then fail "sanitizer report in agent logs"; fi
echo "it_real_vm: ok"
