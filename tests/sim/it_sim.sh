#!/usr/bin/env bash
# wlm-sim end to end: flags, a short experiment 1 twice with the same seed
# (byte-identical CSV), the SVG plot, experiments 2 and 3 in short form.
set -euo pipefail
sim=${WLM_BIN_DIR:?}/wlm-sim
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$sim" --help | grep -q -- "--experiment" || fail "--help does not list --experiment"
"$sim" --version | grep -q "wlm-sim" || fail "--version"
set +e
"$sim" --bogus 2>"$tmp/err"; rc=$?
set -e
[ "$rc" = 2 ] || fail "unknown flag exited $rc, want 2"
grep -q "bogus" "$tmp/err" || fail "unknown flag error does not name it"
set +e
"$sim" --policy lifo 2>"$tmp/err"; rc=$?
set -e
[ "$rc" = 2 ] && grep -q "policy" "$tmp/err" || fail "bad --policy not rejected clearly"

short=(--experiment exp1 --seeds 2 --jobs 40 --ia-min 10 --ia-max 22 --ia-step 12 --seed 5)
"$sim" "${short[@]}" --out "$tmp/a" >"$tmp/a.txt"
"$sim" "${short[@]}" --out "$tmp/b" >"$tmp/b.txt"
cmp "$tmp/a-runs.csv" "$tmp/b-runs.csv" || fail "same seed gave different runs CSV"
cmp "$tmp/a-summary.csv" "$tmp/b-summary.csv" || fail "same seed gave different summary CSV"
cmp "$tmp/a.svg" "$tmp/b.svg" || fail "same seed gave different SVG"
# 4 policies x 2 points x 2 seeds + header
[ "$(wc -l <"$tmp/a-runs.csv")" = 17 ] || fail "runs CSV has $(wc -l <"$tmp/a-runs.csv") lines"
grep -q "^edf,10," "$tmp/a-summary.csv" || fail "summary lacks edf row"
grep -q "<svg" "$tmp/a.svg" && grep -q "apc-noknobs" "$tmp/a.svg" || fail "SVG plot incomplete"
grep -q "missing their goal" "$tmp/a.txt" || fail "no table printed"
"$sim" "${short[@]}" --seed 6 --out "$tmp/c" >/dev/null
! cmp -s "$tmp/a-runs.csv" "$tmp/c-runs.csv" || fail "different seeds gave identical runs"

"$sim" --experiment exp2 --seeds 1 --exp2-nodes 4 --exp2-ia-min 60 --out "$tmp/e2" >"$tmp/e2.txt"
for p in always-on utilsum wlm; do
    grep -q "^$p,energy_day_kwh" "$tmp/e2-summary.csv" || fail "exp2 lacks $p"
done
"$sim" --experiment exp3 --seeds 3 --out "$tmp/e3" >"$tmp/e3.txt"
grep -q "^three-band," "$tmp/e3-summary.csv" && grep -q "^wlm," "$tmp/e3-summary.csv" ||
    fail "exp3 summary incomplete"

"$sim" --experiment run --policy edf --jobs 20 --mean-ia-min 30 --out "$tmp/r" >"$tmp/r.txt"
grep -q "policy=edf" "$tmp/r.txt" || fail "run summary line"
[ "$(wc -l <"$tmp/r.csv")" = 21 ] || fail "run CSV lines"
echo "ok"
