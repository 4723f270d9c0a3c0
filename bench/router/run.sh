#!/usr/bin/env bash
# bench/router/run.sh - wlm-router against nginx and HAProxy, and its fairness.
#
# Throughput: one fixed-response backend (rt_backend), wrk over HTTP/1.1
# keep-alive and h2load over h2c (prior knowledge), then the same over TLS
# (wrk https = HTTP/1.1; h2load https = h2 by ALPN; one self-signed RSA-2048
# certificate made here, shared by all three), direct and through nginx
# (proxy_pass + upstream keepalive), HAProxy (http-reuse always) and
# wlm-router; each proxy runs ONE worker pinned to the same core
# (PROXY_CPU), backend and load generator share the other (LOAD_CPU). Runs
# are interleaved and repeated; the median run (by req/s) is reported.
# Then wlm-router with 2 workers (not pinned) against its 1-worker run.
#
# Fairness: three flows with weights 1:2:4 and per-request CPU costs
# 300/600/150 us (config cost = the same numbers), all saturated, through one
# single-threaded backend (one CPU); the CPU each flow received is measured
# by the backend. Share vs weight share, and Jain's index of share/weight.
#
# Usage: bench/router/run.sh   env: DUR=5 REPEAT=3 CONNS=64 BUILD=build-bench-router
#        ONLY=fair (skip the throughput table)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$top/build-bench-router}
DUR=${DUR:-5}
REPEAT=${REPEAT:-3}
CONNS=${CONNS:-64}
ncpu=$(nproc)
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-$((ncpu > 1 ? 1 : 0))}
for t in wrk h2load nginx haproxy taskset python3 openssl; do
  command -v "$t" >/dev/null || { echo "run.sh: $t not found (scripts/install-deps bench)" >&2; exit 1; }
done

echo "building release (no sanitizers) in $build ..." >&2
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWLM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j"$ncpu" --target wlm-router rt_backend >/dev/null
bin=$build/bin

work=$(mktemp -d /tmp/wlm-bench-router.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "run.sh: port $1 never opened" >&2; exit 1
}

# ---------------------------------------------------------------- servers
taskset -c "$LOAD_CPU" "$bin/rt_backend" --port 0 >"$work/be.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/be.port" ] && break; sleep 0.05; done
BE=$(cat "$work/be.port")

# All ports picked while holding every socket, so they are distinct.
read -r NG1 NG2 HA1 HA2 RT FR FA NGS HAS RTS RT2 RTS2 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(12)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
mkdir -p "$work/ngx/logs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 \
  -subj "/CN=bench.test" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
cat >"$work/ngx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/ngx/nginx.pid;
error_log $work/ngx/error.log crit;
events { worker_connections 8192; }
http {
  access_log off;
  upstream be { server 127.0.0.1:$BE; keepalive 256; keepalive_requests 1000000; }
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NG1;
    listen 127.0.0.1:$NG2 http2;
    listen 127.0.0.1:$NGS ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 256;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -c "$work/ngx/nginx.conf" -p "$work/ngx" 2>/dev/null &
NGPID=$!
pids+=($NGPID)

cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA1
  bind 127.0.0.1:$HA2 proto h2
  bind 127.0.0.1:$HAS ssl crt $work/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$BE maxconn 1024
EOF
taskset -c "$PROXY_CPU" haproxy -f "$work/haproxy.cfg" -db 2>/dev/null &
HAPID=$!
pids+=($HAPID)

cat >"$work/router.json" <<EOF
{"limit": 1024, "apps": [{"name": "bench", "instances": [{"id": "be", "url": "http://127.0.0.1:$BE"}]}]}
EOF
start_router() {
  taskset -c "$PROXY_CPU" "$bin/wlm-router" --config "$work/router.json" --listen "127.0.0.1:$RT" \
    --tls-listen "127.0.0.1:$RTS" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
    --admin off --workers 1 --log-level info 2>>"$work/router.log" &
  RTPID=$!
  pids+=($RTPID)
}
# Shared hosts: something outside this script may kill processes (the router
# logs the signal and the sender's pid); restart and say so rather than
# reporting a dead router as slow.
ensure_router() {
  if ! kill -0 "$RTPID" 2>/dev/null; then
    echo "warning: wlm-router was stopped: $(grep stopped "$work/router.log" | tail -1); restarting" >&2
    start_router
    wait_port "$RT"
  fi
}
start_router
for p in "$BE" "$NG1" "$NG2" "$HA1" "$HA2" "$RT" "$NGS" "$HAS" "$RTS"; do wait_port "$p"; done

# ---------------------------------------------------------------- runs
# CPU time (user + system, clock ticks) of a target's processes: on a shared
# host, CPU per request is steadier than req/s (which depends on how much of
# its core the proxy got).
cpu_of() { # name -> ticks
  local ps=()
  case "$1" in
    nginx) ps=("$NGPID" $(pgrep -P "$NGPID" 2>/dev/null)) ;;
    haproxy) ps=("$HAPID") ;;
    wlm-router|wlm-router-1w) ps=("$RTPID") ;;
    wlm-router-2w) ps=("$RT2PID") ;;
    *) echo 0; return ;;
  esac
  local t=0 p
  for p in "${ps[@]}"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
# Busy ticks of the load generator's and backend's core: behind a proxy that
# keeps up, this core is the ceiling (wrk and the backend share it).
load_ticks() { awk -v c="cpu$LOAD_CPU" '$1 == c {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
per_req() { # ticks requests -> microseconds per request
  awk -v c="$1" -v n="${2:-0}" -v hz="$HZ" 'BEGIN{printf "%.2f", n ? c * 1e6 / hz / n : 0}'
}
# Each run appends "target proto rps p50_ms p99_ms" to $work/runs.
to_ms() { # wrk latency "123.45us" / "1.23ms" / "1.2s" -> ms
  awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else {sub(/s$/,"",v); print v*1000} }'
}
run_wrk() { # name port [scheme]
  local out scheme=${3:-http} proto=http/1.1
  [ "$scheme" = https ] && proto=https/1.1
  local c0 c1 l0 l1 n
  c0=$(cpu_of "$1")
  l0=$(load_ticks)
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$scheme://127.0.0.1:$2/" 2>&1) || true
  c1=$(cpu_of "$1")
  l1=$(load_ticks)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  local rps p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  [ -n "$bad" ] && echo "warning: $1 had $bad non-2xx responses" >&2
  [ -z "$rps" ] && { echo "warning: $1 $proto run failed: $(head -c 200 <<<"$out")" >&2; return 0; }
  echo "$1 $proto $rps $(to_ms "$p50") $(to_ms "$p99") $(per_req $((c1 - c0)) "$n") $(per_req $((l1 - l0)) "$n")" >>"$work/runs"
}
run_h2() { # name port [scheme]
  local out line rps p50 sd p99 failed scheme=${3:-http} proto=h2c
  [ "$scheme" = https ] && proto=h2-tls
  local c0 c1 l0 l1 n
  c0=$(cpu_of "$1")
  l0=$(load_ticks)
  out=$(taskset -c "$LOAD_CPU" h2load -c 16 -m 16 -D "$DUR" "$scheme://127.0.0.1:$2/" 2>&1) || true
  c1=$(cpu_of "$1")
  l1=$(load_ticks)
  n=$(awk '/^requests:/ {print $8}' <<<"$out")
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  [ -z "$rps" ] && { echo "warning: $1 $proto run failed: $(head -c 200 <<<"$out")" >&2; return 0; }
  # h2load reports min/max/mean/sd, no percentiles: p50 ~ mean, p99 ~ mean + 2.33 sd.
  line=$(grep '^time for request:' <<<"$out")
  p50=$(to_ms "$(awk '{print $6}' <<<"$line")")
  sd=$(to_ms "$(awk '{print $7}' <<<"$line")")
  p99=$(awk -v m="$p50" -v s="$sd" 'BEGIN{printf "%.3f", m + 2.33*s}')
  failed=$(awk '/^requests:/ {print $10}' <<<"$out")
  [ "${failed:-0}" != "0" ] && echo "warning: $1 h2 had $failed failed requests" >&2
  echo "$1 $proto $rps $p50 $p99 $(per_req $((c1 - c0)) "$n") $(per_req $((l1 - l0)) "$n")" >>"$work/runs"
}

if [ "${ONLY:-all}" != fair ]; then
echo "running: ${REPEAT}x interleaved, ${DUR}s each, wrk -c$CONNS, h2load -c16 -m16; proxy cpu $PROXY_CPU, load+backend cpu $LOAD_CPU" >&2
: >"$work/runs"
for i in $(seq "$REPEAT"); do
  run_wrk direct "$BE"
  run_wrk nginx "$NG1"
  run_wrk haproxy "$HA1"
  ensure_router
  run_wrk wlm-router "$RT"
  run_h2 nginx "$NG2"
  run_h2 haproxy "$HA2"
  ensure_router
  run_h2 wlm-router "$RT"
  run_wrk nginx "$NGS" https
  run_wrk haproxy "$HAS" https
  ensure_router
  run_wrk wlm-router "$RTS" https
  run_h2 nginx "$NGS" https
  run_h2 haproxy "$HAS" https
  ensure_router
  run_h2 wlm-router "$RTS" https
done

# Two workers (SO_REUSEPORT), not pinned: the scheduler spreads them over both
# cores, which the load generator and backend also use.
"$bin/wlm-router" --config "$work/router.json" --listen "127.0.0.1:$RT2" \
  --tls-listen "127.0.0.1:$RTS2" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  --admin off --workers 2 --log-level warn 2>>"$work/router.log" &
RT2PID=$!
pids+=($RT2PID)
wait_port "$RT2"
wait_port "$RTS2"
for i in $(seq "$REPEAT"); do
  run_wrk wlm-router-1w "$RT"
  run_wrk wlm-router-2w "$RT2"
  run_wrk wlm-router-1w "$RTS" https
  run_wrk wlm-router-2w "$RTS2" https
done

python3 - "$work/runs" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    t, proto, rps, p50, p99, cpu, load = line.split()
    rows.setdefault((t, proto), []).append((float(rps), float(p50), float(p99), float(cpu), float(load)))
def med(k):
    runs = sorted(rows[k])
    return runs[len(runs) // 2]
print()
print("Throughput (median of runs; one proxy worker on one core)")
print(f"{'target':<11} {'proto':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9} {'vs haproxy':>11}"
      f" {'CPU us/req':>11} {'CPU vs ngx':>10} {'CPU vs hap':>10} {'load us/req':>12}")
def cpu_med(k):
    v = sorted(x[3] for x in rows[k])
    return v[len(v) // 2]
def cratio(k, other, proto):  # > 1: the other spends more CPU per request
    if (other, proto) not in rows or not cpu_med(k):
        return "n/a"
    return f"{cpu_med((other, proto)) / cpu_med(k):.2f}"
def ratio(rps, other, proto):
    return f"{rps / med((other, proto))[0]:.2f}" if (other, proto) in rows else "n/a"
for proto in ("http/1.1", "h2c", "https/1.1", "h2-tls"):
    if proto == "https/1.1":
        print()
        print("HTTPS (same certificate for all; TLS terminated by the proxy, plaintext to the backend)")
    for t in ("direct", "nginx", "haproxy", "wlm-router"):
        if (t, proto) not in rows:
            continue
        rps, p50, p99, _, _ = med((t, proto))
        vn = ratio(rps, "nginx", proto)
        vh = ratio(rps, "haproxy", proto)
        c = cpu_med((t, proto))
        cn = cratio((t, proto), "nginx", proto) if t != "direct" else "-"
        ch = cratio((t, proto), "haproxy", proto) if t != "direct" else "-"
        cs = f"{c:.1f}" if t != "direct" else "-"
        ld = sorted(x[4] for x in rows[(t, proto)])[len(rows[(t, proto)]) // 2]
        print(f"{t:<11} {proto:<9} {rps:>9.0f} {p50:>8.3f} {p99:>8.3f} {vn:>9} {vh:>11} {cs:>11} {cn:>10} {ch:>10} {ld:>12.1f}")
    if ("direct", proto) in rows:
        # The load side (wrk + backend) has one core: when it is ~100 % busy
        # behind a proxy, it, not the proxy, set that proxy's req/s.
        busy = []
        for t in ("nginx", "haproxy", "wlm-router"):
            if (t, proto) in rows:
                rps, _, _, cpu, ld = med((t, proto))
                busy.append(f"{t} {100 * cpu * rps / 1e6:.0f} % / {100 * ld * rps / 1e6:.0f} %")
        print(f"(core busy, proxy / load generator + backend: {', '.join(busy)}; "
              f"direct, no proxy: {med(('direct', proto))[0]:.0f} req/s)")
print("(h2 latency: p50 = mean, p99 ~ mean + 2.33 sd, h2load reports no percentiles)")
print("(CPU us/req: the proxy's user+system time per request, median of runs; CPU vs X > 1 = X spends more;")
print(" load us/req: busy time of the load generator's and backend's core per request)")
print()
print("Workers: wlm-router 1 worker (pinned) vs 2 workers (unpinned), wrk")
for proto in ("http/1.1", "https/1.1"):
    if ("wlm-router-1w", proto) in rows and ("wlm-router-2w", proto) in rows:
        a, b = med(("wlm-router-1w", proto))[:3], med(("wlm-router-2w", proto))[:3]
        print(f"{proto:<10} 1 worker {a[0]:>9.0f} req/s p99 {a[2]:.3f} ms   2 workers {b[0]:>9.0f} req/s "
              f"p99 {b[2]:.3f} ms   x{b[0] / a[0]:.2f}")
load = open("/proc/loadavg").read().split()[:3]
print(f"(machine load average during the run: {' '.join(load)}; other work on the host skews all rows alike)")
PY

fi # ONLY

# ---------------------------------------------------------------- fairness
taskset -c "$LOAD_CPU" "$bin/rt_backend" --port 0 >"$work/fbe.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/fbe.port" ] && break; sleep 0.05; done
FBE=$(cat "$work/fbe.port")
cat >"$work/fair.json" <<EOF
{"limit": 2, "apps": [{"name": "fair", "classes": [
  {"name": "w1", "weight": 1, "cost": 300, "max_queue": 10000, "max_wait_ms": 600000, "match": {"header": "X-Class: w1"}},
  {"name": "w2", "weight": 2, "cost": 600, "max_queue": 10000, "max_wait_ms": 600000, "match": {"header": "X-Class: w2"}},
  {"name": "w4", "weight": 4, "cost": 150, "max_queue": 10000, "max_wait_ms": 600000, "match": {"header": "X-Class: w4"}}],
  "instances": [{"id": "one-cpu", "url": "http://127.0.0.1:$FBE"}]}]}
EOF
taskset -c "$PROXY_CPU" "$bin/wlm-router" --config "$work/fair.json" --listen "127.0.0.1:$FR" \
  --admin "127.0.0.1:$FA" --log-level error &
pids+=($!)
wait_port "$FR"
FDUR=$((DUR * 2))
wrks=()
for spec in "w1 300" "w2 600" "w4 150"; do
  set -- $spec
  taskset -c "$PROXY_CPU" wrk -t1 -c256 -d"${FDUR}s" -H "X-Class: $1" -H "X-Tag: $1" \
    -H "X-Spin-Us: $2" "http://127.0.0.1:$FR/" >"$work/fair.$1" 2>&1 &
  wrks+=($!)
done
# Measure only the saturated middle: reset the backend's counters after 1 s
# and read them before the load stops.
sleep 1
curl -s "http://127.0.0.1:$FBE/__reset" >/dev/null
sleep $((FDUR - 2))
curl -s "http://127.0.0.1:$FBE/__stats" >"$work/fair.stats"
wait "${wrks[@]}" || true
python3 - "$work/fair.stats" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["spin_us"]
w = {"w1": 1, "w2": 2, "w4": 4}
tot = sum(d.get(k, 0) for k in w)
print()
print("Fairness: 3 saturated flows, weights 1:2:4, CPU per request 300/600/150 us, limit 2")
print(f"{'flow':<6} {'weight':>6} {'CPU share':>10} {'weight share':>13} {'error':>7}")
norm = []
for k in ("w1", "w2", "w4"):
    share = d.get(k, 0) / tot if tot else 0
    ws = w[k] / 7
    norm.append(share / ws)
    print(f"{k:<6} {w[k]:>6} {share:>10.3f} {ws:>13.3f} {100*(share-ws):>+6.1f}%")
jain = sum(norm) ** 2 / (len(norm) * sum(x * x for x in norm))
print(f"Jain's index of CPU share / weight share: {jain:.4f}  (1 = exactly weighted)")
print(f"max |share - weight share| = {max(abs(n*w[k]/7 - w[k]/7) for n,k in zip(norm,('w1','w2','w4')))*100:.1f} points")
PY
