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
run "Experiment 1a: defaults (action durations from docs/sim.md)" \
    --experiment exp1 --out "$out/exp1"
run "Experiment 1b: cost-free actions (as in the design description's simulation)" \
    --experiment exp1 --no-action-costs --out "$out/exp1-nocost"
run "Experiment 1c: another cluster (8 nodes x 4 cores, arrivals up to 8x as often)" \
    --experiment exp1 --nodes 8 --cores 4 --ia-min 1 --ia-max 4 --ia-step 1 --out "$out/exp1-8x4"
run "Experiment 2: one day of web load and jobs, placement by the core" \
    --experiment exp2 --exp2-policy apc --out "$out/exp2"
run "Experiment 3" --experiment exp3 --out "$out/exp3"
