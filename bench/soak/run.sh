#!/usr/bin/env bash
# Soak through wlm-router at a multiple of capacity (issue 10, "Load").
#
#   bench/soak/run.sh [--minutes N] [--overload X] [--goal-ms MS] [--build DIR]
#
# One wlm-sampleapp backend (1 worker, 10 ms of CPU per request: capacity
# about 100 req/s) behind wlm-router (limit 4, queue of 16 per flow: the excess gets an immediate 503);
# wlm-loadgen offers X times capacity (default 3) for N minutes (default 10).
# Every 10 s it samples the router's resident memory (VmRSS) and open file
# descriptors, and times a few probe requests with curl to see how fast a
# rejected request gets its 503. At the end: a table of the samples, whether
# RSS stays bounded (second half's peak within 10 % + 4 MiB of the first
# half's) and no fd is left open once the load stops, the p99 of admitted requests against the goal (from
# wlm-loadgen's per-period p99 and the router's own histogram), and the time
# to 503. Loopback only; stops by itself. Not a test: prints figures.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/scripts/lib.sh"
minutes=10 overload=3 goal_ms=1000 build=${BUILD:-$top/build}
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --overload) overload=$2; shift 2 ;;
    --goal-ms) goal_ms=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $minutes in '' | *[!0-9.]*) echo "run.sh: --minutes must be a number" >&2; exit 2 ;; esac
bin=$build/bin
for b in wlm-router wlm-sampleapp wlm-loadgen; do
  [ -x "$bin/$b" ] || { echo "run.sh: $bin/$b missing: cmake --build $build --target $b" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "run.sh: curl is needed" >&2; exit 1; }

dir=$(mktemp -d /tmp/wlm-soak-XXXXXX)
pids=()
cleanup() { [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}"; rm -rf "$dir"; }
trap cleanup EXIT

cpu_ms=10
capacity=$(awk -v c=$cpu_ms 'BEGIN { printf "%.0f", 1000 / c }')
rate=$(awk -v c="$capacity" -v x="$overload" 'BEGIN { printf "%.0f", c * x }')
secs=$(awk -v m="$minutes" 'BEGIN { printf "%.0f", m * 60 }')
token=soak-token

"$bin/wlm-sampleapp" --port 0 --port-file "$dir/app.port" --cpu-ms $cpu_ms --workers 1 \
  >"$dir/app.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$dir/app.port" ] && break; sleep 0.1; done
[ -s "$dir/app.port" ] || { echo "run.sh: sampleapp did not start" >&2; cat "$dir/app.log" >&2; exit 1; }
aport=$(cat "$dir/app.port")
cat >"$dir/router.json" <<JSON
{"limit": 4, "upstream_timeout_ms": 10000, "apps": [{"name": "shop",
  "classes": [{"name": "web", "max_queue": 16, "max_wait_ms": 1000}],
  "instances": [{"url": "http://127.0.0.1:$aport"}]}]}
JSON
rport=$(wlm_free_port)
adport=$(wlm_free_port)
"$bin/wlm-router" --config "$dir/router.json" --listen "127.0.0.1:$rport" --admin "127.0.0.1:$adport" \
  --token $token --log-level warn >"$dir/router.log" 2>&1 &
rpid=$!
pids+=($rpid)
wlm_wait_http "http://127.0.0.1:$adport/healthz" 20 || { cat "$dir/router.log" >&2; exit 1; }

fds0=$(ls "/proc/$rpid/fd" | wc -l)
rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$rpid/status")
echo "soak: ${minutes} min, offered ${rate} req/s = ${overload}x capacity (${capacity} req/s: 1 worker x ${cpu_ms} ms CPU)"
echo "soak: router pid $rpid, data 127.0.0.1:$rport, goal p99 ${goal_ms} ms for admitted requests"
"$bin/wlm-loadgen" --target "127.0.0.1:$rport" --stream "/shop@$rate" --duration "$secs" --report 10 \
  >"$dir/loadgen.out" 2>&1 &
lpid=$!
pids+=($lpid)

# samples: t rss_kib fds threads probes_503 mean_503_ms max_503_ms
: >"$dir/samples"
: >"$dir/probe503"
t0=$(date +%s)
while kill -0 "$lpid" 2>/dev/null; do
  sleep 10
  kill -0 "$lpid" 2>/dev/null || break
  kill -0 "$rpid" 2>/dev/null || { echo "run.sh: the router died" >&2; tail "$dir/router.log" >&2; exit 1; }
  t=$(($(date +%s) - t0))
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$rpid/status")
  fds=$(ls "/proc/$rpid/fd" | wc -l)
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$rpid/status")
  # Probes: 5 requests on fresh connections; the 503s among them are timed.
  : >"$dir/probe"
  for _ in 1 2 3 4 5; do
    curl -s -o /dev/null --max-time 15 -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$rport/shop" \
      >>"$dir/probe" || true
  done
  awk '$1 == 503 {print $2 * 1000}' "$dir/probe" >>"$dir/probe503"
  n503=$(awk '$1 == 503' "$dir/probe" | wc -l)
  echo "$t $rss $fds $thr $n503" >>"$dir/samples"
done
wait "$lpid" || true
stats=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$adport/admin/stats")
rss_end=$(awk '/^VmRSS:/ {print $2}' "/proc/$rpid/status")
fds_end=$(ls "/proc/$rpid/fd" | wc -l)

echo
printf '%6s %10s %5s %8s %12s\n' "t(s)" "RSS(KiB)" "fds" "threads" "probe 503s"
awk '{ printf "%6d %10d %5d %8d %10d/5\n", $1, $2, $3, $4, $5 }' "$dir/samples"
echo
awk '
  { t[NR] = $1; r[NR] = $2; f[NR] = $3 }
  END {
    h = int(NR / 2); if (h < 1) h = 1
    for (i = 1; i <= NR; i++) {
      if (i <= h) { if (r[i] > r1) r1 = r[i]; if (f[i] > f1) f1 = f[i] }
      else { if (r[i] > r2) r2 = r[i]; if (f[i] > f2) f2 = f[i] }
    }
    okr = (r2 <= r1 * 1.10 + 4096); okf = (f2 <= f1 + 16)
    printf "RSS: peak first half %d KiB, second half %d KiB -> %s\n", r1, r2, okr ? "bounded" : "GROWING"
    printf "fds: peak first half %d, second half %d -> %s (fds = open client connections, see below)\n", f1, f2, okf ? "bounded" : "more connections"
  }' "$dir/samples"
# Open fds follow the client connections open at the moment (wlm-loadgen opens
# one more whenever all of its connections are busy), so the leak check is
# the count once the load has stopped against the count before it started,
# plus the pooled keep-alive connections to the backend (at most limit = 4).
echo "router before load: RSS ${rss0} KiB, ${fds0} fds; after load: RSS ${rss_end} KiB, ${fds_end} fds -> $(
  [ "$fds_end" -le $((fds0 + 4 + 2)) ] && echo "no fd leaked (<= 4 pooled upstream connections)" || echo "FDS LEAKED")"

# Admitted requests: wlm-loadgen prints a p99 per 10 s period.
grep '^t=' "$dir/loadgen.out" | awk '{ for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1) }' |
  sort -n >"$dir/p99s" || true
awk -v g="$goal_ms" '
  { n++; v[n] = $1; if ($1 <= g) ok++ }
  END {
    if (n == 0) { print "admitted p99: wlm-loadgen printed no period"; exit }
    printf "admitted p99 per 10 s period (loadgen): median %.1f ms, worst %.1f ms; %d/%d periods within the %d ms goal\n", v[int((n + 1) / 2)], v[n], ok, n, g
  }' "$dir/p99s"
grep '^total' "$dir/loadgen.out" | sed 's/^/loadgen: /'
python3 - "$stats" "$goal_ms" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); goal = float(sys.argv[2])
for f in s.get("flows", []):
    r = f.get("response", {})
    print("router %s: arrivals %s admitted %s rejected %s expired %s completed %s errors %s; "
          "response p50 %s ms p99 %s ms (goal %g ms: %s)" % (
          f.get("flow"), f.get("arrivals"), f.get("admitted"), f.get("rejected"), f.get("expired"),
          f.get("completed"), f.get("errors"), r.get("p50_ms"), r.get("p99_ms"), goal,
          "met" if (r.get("p99_ms") or 0) <= goal else "MISSED"))
PY
sort -n "$dir/probe503" | awk '
  { v[NR] = $1; s += $1 }
  END {
    if (NR == 0) { print "time to 503: no probe was rejected"; exit }
    printf "time to 503 (curl probes on fresh connections, n=%d): median %.1f ms, p90 %.1f ms, max %.1f ms\n",
      NR, v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.999)], v[NR]
  }'
