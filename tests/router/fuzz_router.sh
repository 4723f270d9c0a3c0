#!/usr/bin/env bash
# Build the router's libFuzzer target with clang (the main build may use gcc)
# and run it briefly. Usage: fuzz_router.sh [SECONDS]  (default 20)
# Env: WLM_SOURCE_DIR, WLM_BUILD_DIR (set by ctest).
set -euo pipefail
src=${WLM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
out=${WLM_BUILD_DIR:-$src/build}/router-fuzz
secs=${1:-20}
cc=${CLANG:-/usr/bin/clang}
[ -x "$cc" ] || { echo "fuzz_router: $cc not found (Debian package clang)" >&2; exit 1; }
mkdir -p "$out/corpus"
# shellcheck disable=SC2046
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -D_GNU_SOURCE -DWLM_VERSION='"fuzz"' -I"$src/router" -I"$src/common" \
  $(pkg-config --cflags libuv jansson) \
  "$src/tests/router/fuzz_router.c" "$src/router/h1req.c" "$src/router/config.c" \
  "$src/router/sched.c" "$src/router/upfast.c" "$src/router/buf.c" -o "$out/fuzz_router" -lhttp_parser $(pkg-config --libs jansson)
# Seeds: a few valid requests and configs, so the run starts deep.
printf '\x00\x07GET /api/x HTTP/1.1\r\nHost: shop.example\r\nX-Class: gold\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nCookie: tier=silver\r\n\r\n3\r\nabc\r\n0\r\n\r\n' >"$out/corpus/seed1"
printf '\x00\x40GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n' >"$out/corpus/seed2"
printf '\x02\x05POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' >"$out/corpus/seed4"
printf '\x02\x09GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n\x81\x85' >"$out/corpus/seed5"
printf '\x01{"limit":3,"apps":[{"name":"a","hosts":["x"],"classes":[{"name":"c","weight":2,"match":{"cookie":"a=b"}}],"instances":[{"url":"http://127.0.0.1:1"}]}]}' >"$out/corpus/seed3"
printf '\x04HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A:  v \r\nConnection: keep-alive\r\n\r\nhello' >"$out/corpus/seed6"
printf '\x04HTTP/1.1 503 Busy\r\nconnection: close\r\nKeep-Alive: timeout=5\r\ncontent-length: 0\r\n\r\n' >"$out/corpus/seed7"
echo "fuzz_router: running ${secs}s"
"$out/fuzz_router" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 "$out/corpus" 2>&1 |
  tail -n 40
