#!/usr/bin/env bash
# Job start through wlm-nodeagent on a real libvirtd + QEMU: from POSTing the
# start action to the job's first output line in its console log, warm pool
# (a parked VM resumed and handed the job) against cold boot, median and
# worst of N each; memory per parked VM and the time to refill one.
# Not a test: it prints figures. Cleans up on exit, SIGINT and SIGTERM.
# Usage: bench/vm-ops/warm_vs_cold.sh [BIN_DIR] [RUNS]   (default build/release/bin, 10)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/scripts/lib.sh"
bin=${1:-$top/build/release/bin}
runs=${2:-10}
[ -x "$bin/wlm-nodeagent" ] || { echo "warm_vs_cold: no $bin/wlm-nodeagent (build it first)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "warm_vs_cold: needs root (libvirtd)" >&2; exit 2; }
"$top/scripts/start-libvirt"
export LIBVIRT_DEFAULT_URI=qemu:///system WLM_TOKEN=bench-$$
dir=$(mktemp -d /tmp/wlm-bench-wc-XXXXXX)
chmod 755 "$dir"
tag=wc$$
pid=
cleanup() {
  trap - INT TERM EXIT
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  for d in $(virsh list --name 2>/dev/null | grep -E "^wlm(pool)?-$tag" || true); do virsh destroy "$d" >/dev/null 2>&1 || true; done
  for p in $(virsh pool-list --name 2>/dev/null | grep -- "$tag" || true); do virsh pool-destroy "$p" >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cport=$(wlm_free_port)
start_agent() { # POOL_SIZE
  : >"$dir/agent.log"
  "$bin/wlm-nodeagent" --name "$tag" --controller "http://127.0.0.1:$cport" --libvirt-uri qemu:///system \
    --listen-port 0 --state-dir "$dir/state" --vm-memory-mb 128 --pool-size "$1" --heartbeat-ms 1000 \
    >>"$dir/agent.log" 2>&1 &
  pid=$!
  url=
  for _ in $(seq 150); do
    url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/agent.log" | tail -1 | cut -d= -f2 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "warm_vs_cold: agent did not start" >&2; exit 1; }
}
stop_agent() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
# One start: POST, then poll the console for the first output line; prints
# seconds and the path the agent took.
one() { # JOB
  python3 - "$url" "$1" "$dir/state/jobs/$1/console.log" <<'PY'
import json, os, sys, time, urllib.request
url, job, console = sys.argv[1:]
hdr = {"Authorization": "Bearer " + os.environ["WLM_TOKEN"], "Content-Type": "application/json"}
body = json.dumps({"id": "s-" + job, "kind": "start", "job": job, "command": "echo first-output"}).encode()
t0 = time.monotonic()
urllib.request.urlopen(urllib.request.Request(url + "/v1/actions", body, hdr)).read()
while time.monotonic() - t0 < 300:
    try:
        if b"first-output" in open(console, "rb").read():
            break
    except OSError:
        pass
    time.sleep(0.005)
dt = time.monotonic() - t0
for _ in range(3000):
    a = json.load(urllib.request.urlopen(urllib.request.Request(url + "/v1/actions/s-" + job, None, hdr)))
    if a["status"] not in ("accepted", "running"):
        break
    time.sleep(0.05)
print("%.3f %s" % (dt, a.get("result", {}).get("path", a.get("detail", "?"))))
PY
}
node() { curl -s -H "Authorization: Bearer $WLM_TOKEN" "$url/v1/node"; }
parked() { node | python3 -c 'import json,sys; print(json.load(sys.stdin)["pool"].get("parked",0))'; }
wait_parked() {
  for _ in $(seq 1500); do [ "$(parked)" -ge 1 ] && return 0; sleep 0.2; done
  echo "warm_vs_cold: pool did not refill" >&2; exit 1
}
stats() { # label file
  python3 - "$1" "$2" <<'PY'
import statistics, sys
v = sorted(float(l.split()[0]) for l in open(sys.argv[2]))
print("%-34s median %6.3f s  worst %6.3f s  (%d runs)" % (sys.argv[1], statistics.median(v), v[-1], len(v)))
PY
}

start_agent 0
for i in $(seq "$runs"); do one "$tag-cold-$i" | tee -a "$dir/cold"; done >/dev/null
stop_agent
start_agent 1
: >"$dir/refill"
for i in $(seq "$runs"); do
  wait_parked
  node | python3 -c 'import json,sys; p=json.load(sys.stdin)["pool"]; print(p["refill_seconds"], p["parked_rss_mb"])' >>"$dir/refill"
  one "$tag-warm-$i" >>"$dir/warm"
done
grep -v " pool$" "$dir/warm" && echo "warm_vs_cold: some warm starts did not take the pool path" >&2
echo
echo "Job start to first output through wlm-nodeagent (qemu:///system, TCG, 128 MiB guest)"
stats "cold boot" "$dir/cold"
stats "warm pool (paused VM resumed)" "$dir/warm"
python3 - "$dir/cold" "$dir/warm" "$dir/refill" <<'PY'
import statistics, sys
c = statistics.median(float(l.split()[0]) for l in open(sys.argv[1]))
w = statistics.median(float(l.split()[0]) for l in open(sys.argv[2]))
r = [l.split() for l in open(sys.argv[3])]
print("warm is %.1fx faster than cold (medians)" % (c / w))
print("refill one parked VM (boot to waiting init + pause): median %.2f s" % statistics.median(float(x[0]) for x in r))
print("memory per parked VM (QEMU resident): median %.0f MiB" % statistics.median(float(x[1]) for x in r))
PY
