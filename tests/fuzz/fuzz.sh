#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz with clang (the project compiler
# may be gcc) and run them briefly against their committed seed corpora.
#
#   fuzz.sh build                 compile common, jobsched, placement and router
#                                 sources with -fsanitize=fuzzer-no-link,address,undefined
#                                 and link every fuzz_*.c into $WLM_BUILD_DIR/fuzz/
#   fuzz.sh run TARGET [SECONDS]  run one target (default 12 s) on a scratch copy
#                                 of tests/fuzz/corpus/TARGET (the committed corpus is
#                                 never modified); prints executions, exec/s, coverage
#   fuzz.sh all [SECONDS]         build, then run every target
#
# A crash, leak or sanitizer report makes the run fail; the reproducer is left
# in $WLM_BUILD_DIR/fuzz/artifacts/. Keep it as a regression case under
# tests/fuzz/corpus/TARGET/ once fixed. Env: WLM_SOURCE_DIR, WLM_BUILD_DIR, CLANG.
set -euo pipefail
src=${WLM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
out=${WLM_BUILD_DIR:-$src/build}/fuzz
cc=${CLANG:-/usr/bin/clang}
targets="fuzz_jobspec fuzz_snapshot fuzz_config fuzz_http1 fuzz_h2"

build() {
  [ -x "$cc" ] || { echo "fuzz: $cc not found (Debian packages clang libclang-rt-14-dev)" >&2; exit 1; }
  mkdir -p "$out/obj"
  local flags=(-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -std=gnu11 -D_GNU_SOURCE -DWLM_VERSION='"fuzz"' -w
    -I"$src/common" -I"$src/jobsched" -I"$src/placement" -I"$src/router")
  # shellcheck disable=SC2207
  flags+=($(pkg-config --cflags libuv jansson libnghttp2 sqlite3 openssl))
  local objs=() jobs=0 f o
  # Whole libraries (as their CMakeLists glob them), minus the daemons' main.c.
  for f in "$src"/common/*.c "$src"/jobsched/*.c "$src"/placement/*.c "$src"/router/*.c; do
    [ "$(basename "$f")" = main.c ] && continue
    o="$out/obj/$(basename "$(dirname "$f")")_$(basename "$f" .c).o"
    objs+=("$o")
    # Rebuild when the source or any header of the tree is newer.
    if [ ! -f "$o" ] || [ -n "$(find "$f" "$src"/common/*.h "$src"/jobsched/*.h "$src"/placement/*.h \
           "$src"/router/*.h -newer "$o" 2>/dev/null | head -1)" ]; then
      "$cc" "${flags[@]}" -c "$f" -o "$o" &
      jobs=$((jobs + 1))
      if [ "$jobs" -ge 2 ]; then wait -n; jobs=$((jobs - 1)); fi
    fi
  done
  while [ "$jobs" -gt 0 ]; do wait -n; jobs=$((jobs - 1)); done
  rm -f "$out/libwlmfuzz.a"
  ar rcs "$out/libwlmfuzz.a" "${objs[@]}"
  local libs=(-lhttp_parser -lglpk -lm -lpthread)
  # shellcheck disable=SC2207
  libs+=($(pkg-config --libs libuv jansson libnghttp2 sqlite3 openssl))
  for t in $targets; do
    "$cc" "${flags[@]/fuzzer-no-link/fuzzer}" "$src/tests/fuzz/$t.c" "$out/libwlmfuzz.a" "${libs[@]}" \
      -o "$out/$t"
  done
  echo "fuzz: built $targets in $out"
}

run() {
  local t=$1 secs=${2:-12}
  [ -x "$out/$t" ] || build
  local work="$out/work/$t"
  rm -rf "$work"
  mkdir -p "$work" "$out/artifacts"
  cp "$src/tests/fuzz/corpus/$t"/* "$work"/
  local log="$out/$t.log"
  set +e
  # detect_leaks per input; -rss_limit keeps a runaway input from eating the shared machine.
  "$out/$t" -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$work" >"$log" 2>&1
  local rc=$?
  set -e
  local execs rate cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log"
    echo "FAIL $t: libFuzzer exit $rc (reproducer in $out/artifacts/)" >&2
    return 1
  fi
  printf 'fuzz %-14s %6ss  inputs=%-9s exec/s=%-7s coverage=%s corpus=%s\n' \
    "$t" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$(ls "$work" | wc -l)"
}

case "${1:-all}" in
  build) build ;;
  run) shift; run "$@" ;;
  all) build; for t in $targets; do run "$t" "${2:-12}"; done ;;
  *) echo "usage: fuzz.sh build | run TARGET [SECONDS] | all [SECONDS]" >&2; exit 2 ;;
esac
