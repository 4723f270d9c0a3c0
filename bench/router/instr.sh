#!/usr/bin/env bash
# bench/router/instr.sh - user-space instructions per proxied HTTP/1.1
# request in wlm-router, counted by callgrind: deterministic, unlike req/s
# or CPU time on a shared host, so it compares two builds of the router
# exactly (the kernel's part, most of the CPU, is not counted: see
# router/README.md "Where the time goes").
#
# The router (release build) runs under valgrind with instrumentation off;
# after a warm-up it is switched on, h2load --h1 sends exactly N requests
# over 64 keep-alive connections to rt_backend through it, and the router is
# stopped (SIGTERM): the total divided by N is printed, with the top
# functions.
#
# Usage: bench/router/instr.sh [N]     env: BUILD=build-bench-router ROUTER=path/to/wlm-router
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-20000}
build=${BUILD:-$top/build-bench-router}
for t in valgrind callgrind_control callgrind_annotate h2load python3; do
  command -v "$t" >/dev/null || { echo "instr.sh: $t not found (scripts/install-deps bench)" >&2; exit 1; }
done
if [ -z "${ROUTER:-}" ]; then
  echo "building release (no sanitizers) in $build ..." >&2
  cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWLM_SANITIZE=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target wlm-router rt_backend >/dev/null
  ROUTER=$build/bin/wlm-router
fi
backend=$(dirname "$ROUTER")/rt_backend
[ -x "$backend" ] || backend=$build/bin/rt_backend

work=$(mktemp -d /tmp/wlm-bench-instr.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$backend" --port 0 >"$work/be.port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/be.port" ] && break; sleep 0.05; done
BE=$(cat "$work/be.port")
cat >"$work/router.json" <<EOF
{"limit": 1024, "apps": [{"name": "bench", "instances": [{"id": "be", "url": "http://127.0.0.1:$BE"}]}]}
EOF
P=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
  "$ROUTER" --config "$work/router.json" --listen "127.0.0.1:$P" --admin off --workers 1 \
  --log-level warn 2>"$work/router.log" &
RP=$!
pids+=($RP)
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$P") 2>/dev/null && break; sleep 0.1; done
h2load --h1 -n 2000 -c 64 "http://127.0.0.1:$P/" >/dev/null 2>&1 # warm-up: pools, allocator
callgrind_control -i on "$RP" >/dev/null 2>&1
out=$(h2load --h1 -n "$N" -c 64 "http://127.0.0.1:$P/" 2>&1)
ok=$(awk '/^requests:/ {print $8}' <<<"$out")
[ "$ok" = "$N" ] || { echo "instr.sh: only ${ok:-0} of $N requests succeeded" >&2; exit 1; }
kill "$RP"
wait "$RP" 2>/dev/null || true
f=$(ls -S "$work"/cg.out* | head -1)
tot=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "wlm-router: $tot instructions (user space) for $N requests: $((tot / N)) per request"
echo "top functions (share of those instructions):"
callgrind_annotate "$f" 2>/dev/null | awk '/file:function/ {on = 1; next} on && NF && !/^-+$/ {print "  " $0}' | head -15
