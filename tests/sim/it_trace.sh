#!/usr/bin/env bash
# wlm-sim on job traces (SWF) end to end: --help, a bad line stops the run
# with the file and line named and no output written, experiment 1 on part
# of the sample trace (one summary row per policy, skipped jobs reported,
# byte-identical twice), one run with its per-job CSV.
set -euo pipefail
sim=${WLM_BIN_DIR:?}/wlm-sim
src=${WLM_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$sim" --help | grep -q -- "--trace-classes" || fail "--help does not list --trace-classes"

printf '; x\n1 0 0 60 1 -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n2 9 0 60 one -1 -1 1 -1 -1 1 1 1 1 1 1 -1 -1\n' \
    >"$tmp/bad.swf"
set +e
"$sim" --experiment exp1 --trace "$tmp/bad.swf" --out "$tmp/bad" >"$tmp/out" 2>"$tmp/err"; rc=$?
set -e
[ "$rc" != 0 ] || fail "bad trace exited 0"
grep -q "bad.swf:3: field 5 (allocated processors): 'one' is not a number" "$tmp/err" ||
    fail "bad trace error: $(cat "$tmp/err")"
! ls "$tmp"/bad-* >/dev/null 2>&1 || fail "bad trace left output files"
set +e
"$sim" --experiment exp2 --trace "$tmp/bad.swf" 2>"$tmp/err"; rc=$?
set -e
[ "$rc" = 2 ] && grep -q "exp1 or run" "$tmp/err" || fail "--trace with exp2 not rejected"

# the first 60 jobs of the sample (its header is 18 lines)
head -n 78 "$src/examples/traces/sample.swf" >"$tmp/s60.swf"
cl=(--nodes 4 --cores 8 --mem-mb 16384)
"$sim" --experiment exp1 --trace "$tmp/s60.swf" "${cl[@]}" --out "$tmp/a" >"$tmp/a.txt" 2>"$tmp/a.err"
"$sim" --experiment exp1 --trace "$tmp/s60.swf" "${cl[@]}" --seed 9 --out "$tmp/b" >/dev/null 2>&1
cmp "$tmp/a-summary.csv" "$tmp/b-summary.csv" || fail "trace runs differ (nothing is random)"
[ "$(wc -l <"$tmp/a-summary.csv")" = 5 ] || fail "summary has $(wc -l <"$tmp/a-summary.csv") lines"
for p in fcfs edf apc apc-noknobs; do
    grep -q "^$p,5[0-9]," "$tmp/a-summary.csv" || fail "summary lacks $p"
done
grep -q "wider than a node" "$tmp/a.err" || fail "skipped jobs not reported"
grep -q "skipped: [1-9][0-9]* wider than a node" "$tmp/a.txt" || fail "table lacks the skip count"
n=$(grep -c "^fcfs," "$tmp/a-runs.csv")
[ "$n" = 1 ] || fail "runs CSV has $n fcfs rows"

# --trace-classes: everything platinum misses more than everything bronze
"$sim" --experiment exp1 --trace "$tmp/s60.swf" "${cl[@]}" --trace-classes '*=platinum,1=platinum,2=platinum,3=platinum,4=platinum' \
    --out "$tmp/p" >/dev/null 2>&1
"$sim" --experiment exp1 --trace "$tmp/s60.swf" "${cl[@]}" --trace-classes '*=bronze,1=bronze,2=bronze,3=bronze,4=bronze' \
    --out "$tmp/z" >/dev/null 2>&1
pm=$(awk -F, '$1=="fcfs"{print $3}' "$tmp/p-summary.csv")
zm=$(awk -F, '$1=="fcfs"{print $3}' "$tmp/z-summary.csv")
awk -v a="$pm" -v b="$zm" 'BEGIN{exit !(a > b)}' || fail "platinum ($pm%) should miss more than bronze ($zm%)"

"$sim" --experiment run --policy edf --trace "$tmp/s60.swf" "${cl[@]}" --out "$tmp/r" >"$tmp/r.txt" 2>/dev/null
grep -q "policy=edf .* dep_rounds=[1-9]" "$tmp/r.txt" || fail "run summary line: $(cat "$tmp/r.txt")"
head -1 "$tmp/r.csv" | grep -q ",missed,swf_job$" || fail "run CSV lacks the SWF job number"
# row of SWF job 60 (the last line of the cut trace) names it
tail -1 "$tmp/r.csv" | grep -q ",60$" || fail "last run CSV row is not SWF job 60"
jobs=$(awk -F, '$1=="edf"{print $2}' "$tmp/a-summary.csv")
[ "$(wc -l <"$tmp/r.csv")" = $((jobs + 1)) ] || fail "run CSV lines"
echo "ok"
