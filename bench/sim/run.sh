#!/usr/bin/env bash
# Run wlm-sim's three experiments at full size and print their tables.
# Usage: bench/sim/run.sh [BIN_DIR] [OUT_DIR]   (env SEEDS=N, default 20)
# CSVs and SVG plots land in OUT_DIR (default ./bench-sim-out).
set -euo pipefail
bin=${1:-build/bin}
out=${2:-bench-sim-out}
seeds=${SEEDS:-20}
sim="$bin/wlm-sim"
[ -x "$sim" ] || { echo "no wlm-sim at $sim (build it first)" >&2; exit 1; }
mkdir -p "$out"
echo "== wlm-sim $("$sim" --version | awk '{print $2}'), $seeds seeds, outputs in $out"
echo
echo "-- Experiment 1a: action durations from docs/sim.md"
"$sim" --experiment exp1 --seeds "$seeds" --out "$out/exp1"
echo
echo "-- Experiment 1b: cost-free actions (as in the design description's simulation)"
"$sim" --experiment exp1 --seeds "$seeds" --no-action-costs --out "$out/exp1-nocost"
echo
echo "-- Experiment 2"
"$sim" --experiment exp2 --seeds "$seeds" --out "$out/exp2"
echo
echo "-- Experiment 3"
"$sim" --experiment exp3 --seeds "$seeds" --out "$out/exp3"
