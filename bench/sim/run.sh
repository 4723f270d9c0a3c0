#!/usr/bin/env bash
# Run wlm-sim's three experiments at full size and print their tables.
# Usage: bench/sim/run.sh [BIN_DIR] [OUT_DIR]   (env SEEDS=N, default 20)
# CSVs and SVG plots land in OUT_DIR (default ./bench-sim-out). A release
# build takes about two minutes for everything.
set -euo pipefail
bin=${1:-build/bin}
out=${2:-bench-sim-out}
seeds=${SEEDS:-20}
sim="$bin/wlm-sim"
[ -x "$sim" ] || { echo "no wlm-sim at $sim (build it first)" >&2; exit 1; }
mkdir -p "$out"
echo "== wlm-sim $("$sim" --version | awk '{print $2}'), $seeds seeds, outputs in $out"
run() { echo; echo "-- $1"; shift; "$sim" --seeds "$seeds" "$@"; }
run "Experiment 1a: defaults (action durations from docs/sim.md, job utility clamped at -1)" \
    --experiment exp1 --out "$out/exp1"
run "Experiment 1b: job utility curves not clamped (floor -1000)" \
    --experiment exp1 --job-utility-floor -1000 --out "$out/exp1-floor"
run "Experiment 1c: cost-free actions (as in the design description's simulation)" \
    --experiment exp1 --no-action-costs --out "$out/exp1-nocost"
run "Experiment 2a: placement by the production APC core" \
    --experiment exp2 --exp2-policy apc --out "$out/exp2"
run "Experiment 2b: placement by the simulator's whole-core APC heuristic" \
    --experiment exp2 --exp2-policy apc-whole --out "$out/exp2-whole"
run "Experiment 3" --experiment exp3 --out "$out/exp3"
