#!/usr/bin/env bash
# Warm pool on a real libvirtd + QEMU (TCG):
#  1. a job from the pool starts, prints (with its environment and progress)
#     and its exit status comes back; the used VM is gone, a fresh one is
#     parked in its place;
#  2. a shape with nothing parked falls back to a cold boot, and says so;
#  3. kill -9 of the agent with a parked VM and a running pool job: after the
#     restart the job is adopted (pause and destroy reach it) and the parked
#     VM too (the next start uses it); a VM caught booting by a kill -9 is
#     destroyed; the pool refills, and a clean stop leaves no pool VM behind;
#  4. a job VM that never reaches its init (a deliberately broken kernel: a
#     multiboot image that spins) is destroyed at the deadline and the start
#     fails naming the cause and the driver; a missing kernel path fails at
#     once naming the path; nothing is left behind either way;
#  5. with no memory headroom nothing is parked (starts boot cold).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
[ "$(id -u)" -eq 0 ] || { echo "it_warm_pool: needs root to run libvirtd (CI runs as root)" >&2; exit 1; }
"$WLM_SOURCE_DIR/scripts/start-libvirt"
export LIBVIRT_DEFAULT_URI=qemu:///system

dir=$(mktemp -d /tmp/wlm-it-wp-XXXXXX)
chmod 755 "$dir"
tag=wp$$
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"
  for d in $(virsh list --name 2>/dev/null | grep -E "^wlm(pool)?-$tag" || true); do virsh destroy "$d" >/dev/null 2>&1 || true; done
  for p in $(virsh pool-list --name 2>/dev/null | grep -- "-$tag" || true); do virsh pool-destroy "$p" >/dev/null 2>&1 || true; done
  [ -n "${WLM_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  virsh list >&2 || true
  for f in "$dir"/*.log "$dir"/*/jobs/*/console.log; do [ -f "$f" ] && { echo "== $f"; tail -15 "$f"; }; done >&2
  exit 1
}
export WLM_TOKEN=wp-secret
cport=$(wlm_free_port)
# A stand-in controller: accepts registrations and keeps each node's last
# heartbeat, to check what the agent reports.
python3 - "$cport" "$dir" <<'PY' >"$dir/controller.log" 2>&1 &
import http.server, json, sys
port, d = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = self.path.split("/")
        if self.path.endswith("/heartbeat"):
            with open("%s/hb-%s.json.tmp" % (d, parts[3]), "wb") as f:
                f.write(body)
            import os
            os.replace("%s/hb-%s.json.tmp" % (d, parts[3]), "%s/hb-%s.json" % (d, parts[3]))
        self.send_response(201 if self.path == "/v1/nodes" else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=($!)

start_agent() { # NAME [extra flags...]
  local name=$1
  shift
  local before
  before=$(grep -c 'node agent listening' "$dir/$name.log" 2>/dev/null || true)
  "$bin/wlm-nodeagent" --name "$tag$name" --controller "http://127.0.0.1:$cport" \
    --libvirt-uri qemu:///system --listen-port 0 --state-dir "$dir/$name" --shared-dir "$dir/shared" \
    --vm-memory-mb 128 --heartbeat-ms 300 "$@" >>"$dir/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
  local url=""
  for _ in $(seq 150); do
    local seen
    seen=$(grep -c 'node agent listening' "$dir/$name.log" 2>/dev/null || true)
    if [ "${seen:-0}" -gt "${before:-0}" ]; then
      url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/$name.log" | tail -1 | cut -d= -f2)
      break
    fi
    sleep 0.1
  done
  [ -n "$url" ] || fail "agent $name did not start"
  eval "url_$name=$url"
}
api() { curl -sS --retry 5 --retry-connrefused -H "Authorization: Bearer $WLM_TOKEN" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
act() { # URL JSON -> final action JSON
  local url=$1 body=$2 id code st
  id=$(echo "$body" | field 'd["id"]')
  code=$(api -o "$dir/post" -w '%{http_code}' -d "$body" "$url/v1/actions")
  [ "$code" = 202 ] || [ "$code" = 200 ] || fail "POST $body -> $code $(cat "$dir/post")"
  for _ in $(seq 3000); do
    api "$url/v1/actions/$id" >"$dir/act"
    st=$(field 'd["status"]' <"$dir/act")
    [ "$st" = running ] || [ "$st" = accepted ] || { cat "$dir/act"; return 0; }
    sleep 0.1
  done
  fail "action $id did not finish"
}
pool() { api "$1/v1/node" | field "d['pool']$2"; }
wait_parked() { # URL N SECONDS
  for _ in $(seq $(($3 * 5))); do
    [ "$(pool "$1" '["parked"]')" -ge "$2" ] && return 0
    sleep 0.2
  done
  fail "the pool of $1 did not reach $2 parked VM(s) within $3 s: $(api "$1/v1/node")"
}
wait_job_end() { # URL JOB SECONDS -> job JSON in $dir/job
  local st
  for _ in $(seq $(($3 * 5))); do
    api "$1/v1/jobs/$2" >"$dir/job"
    st=$(field 'd["state"]' <"$dir/job")
    [ "$st" = running ] || return 0
    sleep 0.2
  done
  fail "job $2 still running after $3 s"
}
pool_doms() { virsh list --name | grep -c "^wlmpool-$tag$1-" || true; }
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }

# ---- 1. A job from the warm pool.
start_agent a --pool-size 1 --pool-max 4
wait_parked "$url_a" 1 240
parked=$(virsh list --name | grep "^wlmpool-${tag}a-")
[ "$(virsh domstate "$parked")" = paused ] || fail "parked VM $parked is not paused"
r=$(act "$url_a" '{"id":"w1","kind":"start","job":"'$tag-one'","command":"echo hello $GREETING from $(hostname); echo WLM-PROGRESS 40; echo WLM-PROGRESS 75; exit 5","env":{"GREETING":"it'"'"'s warm"}}')
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "start: $r"
[ "$(echo "$r" | field 'd["result"]["path"]')" = pool ] || fail "start did not take the pool path: $r"
[ "$(echo "$r" | field 'd["result"]["domain"]')" = "$parked" ] || fail "start did not use the parked VM $parked: $r"
echo "pool start: $(echo "$r" | field 'round(d["seconds"], 3)') s (action), guest started in $(echo "$r" | field 'round(d["result"]["start_seconds"], 3)') s"
wait_job_end "$url_a" "$tag-one" 120
[ "$(field 'd["state"]' <"$dir/job")" = failed ] || fail "job state: $(cat "$dir/job")"
[ "$(field 'd["exit_status"]' <"$dir/job")" = 5 ] || fail "exit status: $(cat "$dir/job")"
has "$(field 'd["output"]' <"$dir/job")" "hello it's warm from $tag-one" || fail "output: $(cat "$dir/job")"
[ "$(field 'd["progress"]' <"$dir/job")" = 0.75 ] || fail "progress: $(cat "$dir/job")"
[ "$(field 'd["progress_source"]' <"$dir/job")" = guest ] || fail "progress source: $(cat "$dir/job")"
for _ in $(seq 50); do virsh list --name | grep -qx "$parked" || break; sleep 0.2; done
virsh list --name | grep -qx "$parked" && fail "the VM that ran the job ($parked) is still there"
wait_parked "$url_a" 1 240
fresh=$(virsh list --name | grep "^wlmpool-${tag}a-")
[ "$fresh" != "$parked" ] || fail "the pool reused the VM that ran a job"
[ "$(pool "$url_a" '["claims"]')" = 1 ] || fail "claims: $(api "$url_a/v1/node")"
echo "ok: warm start, output, env, progress, exit status; used VM $parked gone, $fresh parked"

# ---- 2. Nothing parked for this shape: cold boot, and the result says why.
r=$(act "$url_a" '{"id":"c1","kind":"start","job":"'$tag-cold'","memory_mb":160,"command":"echo cold ok"}')
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "cold start: $r"
[ "$(echo "$r" | field 'd["result"]["path"]')" = cold ] || fail "not a cold start: $r"
has "$(echo "$r" | field 'd["result"]["pool_miss"]')" "no parked VM of shape 1 vCPU / 160 MiB" || fail "pool_miss: $r"
wait_job_end "$url_a" "$tag-cold" 120
[ "$(field 'd["state"]' <"$dir/job")" = finished ] || fail "cold job: $(cat "$dir/job")"
has "$(field 'd["output"]' <"$dir/job")" "cold ok" || fail "cold output: $(cat "$dir/job")"
echo "ok: empty pool falls back to a cold boot"

# ---- 3. kill -9 with a parked VM and a running pool job.
r=$(act "$url_a" '{"id":"k1","kind":"start","job":"'$tag-long'","command":"echo begun; echo WLM-PROGRESS 20; sleep 600"}')
[ "$(echo "$r" | field 'd["result"]["path"]')" = pool ] || fail "long job not from the pool: $r"
jobdom=$(echo "$r" | field 'd["result"]["domain"]')
wait_parked "$url_a" 1 240
# The heartbeat carries the running job's measured progress and the pool's
# reclaimable memory (what the controller's estimator and placement use).
hbq() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$dir/hb-${tag}a.json" "$1"; }
for _ in $(seq 100); do
  [ -f "$dir/hb-${tag}a.json" ] && [ "$(hbq 'd["pool"]["parked"]')" -ge 1 ] &&
    [ "$(hbq '[x.get("progress") for x in d["usage"]["domains"] if x["job"]=="'$tag-long'"]')" = "[0.2]" ] && break
  sleep 0.2
done
[ "$(hbq '[(x.get("progress"), x.get("progress_source"), x["state"]) for x in d["usage"]["domains"] if x["job"]=="'$tag-long'"]')" = "[(0.2, 'guest', 'running')]" ] ||
  fail "heartbeat progress: $(cat "$dir/hb-${tag}a.json")"
[ "$(hbq 'd["pool"]["reclaimable_mb"] > 100 and d["pool"]["reclaimable_mb"] == d["pool"]["memory_mb"]')" = True ] ||
  fail "heartbeat pool memory: $(hbq 'd["pool"]')"
[ "$(hbq 'any(x["job"].startswith("~") or x["job"].startswith("wlmpool") for x in d["usage"]["domains"])')" = False ] ||
  fail "a parked VM shows as a job in the heartbeat"
echo "ok: heartbeat: progress 0.2 (guest) for the running job, pool reclaimable $(hbq 'd["pool"]["reclaimable_mb"]') MiB"
left=$(virsh list --name | grep "^wlmpool-${tag}a-" | grep -vx "$jobdom")
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
start_agent a --pool-size 1 --pool-max 4
grep -q "reconcile: adopted running job job=$tag-long " "$dir/a.log" || fail "the running pool job was not adopted"
grep -q "adopted a parked VM left by a previous run vm=${left#wlmpool-}" "$dir/a.log" || fail "parked VM $left left by the killed agent was not adopted"
[ "$(virsh domstate "$left")" = paused ] || fail "adopted parked VM $left is not paused"
[ "$(pool "$url_a" '["parked"]') $(pool "$url_a" '["booting"]')" = "1 0" ] || fail "pool after adoption: $(api "$url_a/v1/node")"
r=$(act "$url_a" '{"id":"k4","kind":"start","job":"'$tag-again'","command":"echo again"}')
[ "$(echo "$r" | field 'd["result"]["path"]') $(echo "$r" | field 'd["result"]["domain"]')" = "pool $left" ] ||
  fail "a start did not take the adopted parked VM: $r"
# The pool boots a replacement; kill -9 while it boots: a VM caught booting
# is destroyed at the restart, not adopted.
booting_dom=
for _ in $(seq 600); do
  booting_dom=$(virsh list --name | grep "^wlmpool-${tag}a-" | grep -vx "$jobdom" | grep -vx "$left" || true)
  [ -n "$booting_dom" ] && [ "$(pool "$url_a" '["booting"]')" = 1 ] && break
  booting_dom=
  sleep 0.1
done
[ -n "$booting_dom" ] || fail "no replacement VM booting after a claim"
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
start_agent a --pool-size 1 --pool-max 4
grep -q "destroying a VM left by a previous run vm=${booting_dom#wlmpool-}" "$dir/a.log" || fail "VM $booting_dom caught booting was not cleaned"
virsh list --name | grep -qx "$booting_dom" && fail "VM $booting_dom caught booting leaked"
wait_job_end "$url_a" "$tag-again" 120
has "$(field 'd["output"]' <"$dir/job")" "again" || fail "job on the adopted VM: $(cat "$dir/job")"
[ "$(api "$url_a/v1/jobs/$tag-long" | field 'd["state"]')" = running ] || fail "adopted job not running"
has "$(api "$url_a/v1/jobs/$tag-long" | field 'd["output"]')" "begun" || fail "adopted job output"
# Actions reach the adopted job through its claim (the domain keeps its pool name).
has "$(act "$url_a" '{"id":"k2","kind":"pause","job":"'$tag-long'"}')" succeeded || fail "pause of the adopted job"
[ "$(virsh domstate "$jobdom")" = paused ] || fail "adopted job domain $jobdom not paused"
has "$(act "$url_a" '{"id":"k3","kind":"destroy","job":"'$tag-long'"}')" succeeded || fail "destroy of the adopted job"
virsh list --name | grep -qx "$jobdom" && fail "destroyed job domain $jobdom still there"
wait_parked "$url_a" 1 240
[ "$(pool_doms a)" -eq 1 ] || fail "pool VMs after restart: $(pool_doms a), want 1"
kill -TERM "$pid_a"
wait "$pid_a" 2>/dev/null || true
[ "$(pool_doms a)" -eq 0 ] || fail "a clean stop left $(pool_doms a) pool VM(s)"
echo "ok: kill -9: pool job adopted (pause, destroy), parked VM adopted and used, VM caught booting cleaned, pool refilled; clean stop leaves none"

# ---- 4. A kernel that never reaches the init; a kernel path that does not exist.
python3 - "$dir/hang.bin" <<'PY'
import struct, sys
# Multiboot image (a.out kludge): QEMU loads it, and its entry is "jmp ." forever.
magic, flags = 0x1BADB002, 0x00010000
hdr = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xffffffff,
                  0x100000, 0x100000, 0, 0, 0x100020)
open(sys.argv[1], "wb").write(hdr + b"\xeb\xfe" + b"\0" * 30)
PY
start_agent b --pool-size 0 --kernel "$dir/hang.bin" --boot-timeout-s 6
r=$(act "$url_b" '{"id":"h1","kind":"start","job":"'$tag-stuck'","command":"echo never"}')
[ "$(echo "$r" | field 'd["status"]')" = failed ] || fail "stuck start did not fail: $r"
d=$(echo "$r" | field 'd["detail"]')
has "$d" "did not reach its init within 6 s" || fail "stuck start: cause not named: $d"
has "$d" "libvirt qemu:///system, domain type qemu" || fail "stuck start: driver not named: $d"
virsh list --name | grep -q "^wlm-$tag-stuck" && fail "stuck domain left behind"
code=$(api -o /dev/null -w '%{http_code}' "$url_b/v1/jobs/$tag-stuck")
[ "$code" = 404 ] || fail "a failed start left a job record ($code)"
echo "ok: stuck domain destroyed at the deadline: $d"
# The pool meets the same deadline: a hint asks for one VM, the boot fails
# with the cause, and once the hint is withdrawn nothing is left.
act "$url_b" '{"id":"ph1","kind":"pool_hint","shapes":[{"vcpus":1,"memory_mb":128,"starts":1}]}' >/dev/null
for _ in $(seq 300); do [ "$(pool "$url_b" '["failed_boots"]')" -ge 1 ] && break; sleep 0.2; done
has "$(pool "$url_b" '.get("last_error","")')" "did not reach its init within 6 s" || fail "pool boot error: $(api "$url_b/v1/node")"
act "$url_b" '{"id":"ph2","kind":"pool_hint","shapes":[]}' >/dev/null
for _ in $(seq 100); do [ "$(pool "$url_b" '["booting"]')" -eq 0 ] && break; sleep 0.2; done
sleep 0.5
[ "$(pool_doms b)" -eq 0 ] || fail "failed pool boots left $(pool_doms b) domain(s)"
code=$(api -o /dev/null -w '%{http_code}' -d '{"id":"ph3","kind":"pool_hint","shapes":[{"vcpus":0,"memory_mb":128,"starts":1}]}' "$url_b/v1/actions")
[ "$code" = 400 ] || fail "a bad pool_hint gave $code"
kill -TERM "$pid_b"
wait "$pid_b" 2>/dev/null || true
echo "ok: the pool's boots meet the deadline too; a bad hint is refused"

start_agent c --pool-size 0 --kernel /nonexistent/vmlinuz
r=$(act "$url_c" '{"id":"n1","kind":"start","job":"'$tag-nokernel'","command":"echo never"}')
[ "$(echo "$r" | field 'd["status"]')" = failed ] || fail "start with a missing kernel did not fail: $r"
d=$(echo "$r" | field 'd["detail"]')
has "$d" "/nonexistent/vmlinuz" || fail "missing kernel: path not named: $d"
has "$d" "libvirt qemu:///system" || fail "missing kernel: driver not named: $d"
virsh list --name | grep -q "^wlm-$tag-nokernel" && fail "domain left behind"
echo "ok: missing kernel: $d"

# ---- 5. The pool never takes memory the node does not have to spare.
start_agent d --pool-size 2 --pool-reserve-mb 100000000
sleep 3
[ "$(pool "$url_d" '["parked"]') $(pool "$url_d" '["booting"]')" = "0 0" ] || fail "pool booted beyond the memory reserve: $(api "$url_d/v1/node")"
[ "$(pool_doms d)" -eq 0 ] || fail "pool VMs despite no memory headroom"
r=$(act "$url_d" '{"id":"d1","kind":"start","job":"'$tag-d1'","command":"echo no room to park"}')
[ "$(echo "$r" | field 'd["result"]["path"]')" = cold ] || fail "start without a pool: $r"
echo "ok: no memory headroom, no parked VMs; starts boot cold"

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
[ "$(virsh list --name | grep -cE "^wlm(pool)?-$tag" || true)" -eq 0 ] || fail "domains left: $(virsh list --name)"
if grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$dir"/*.log; then fail "sanitizer report in agent logs"; fi
echo "it_warm_pool: ok"
