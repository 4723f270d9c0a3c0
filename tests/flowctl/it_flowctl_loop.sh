#!/usr/bin/env bash
# Closed flow-control loop on real processes (see it_flowctl_loop.c).
set -euo pipefail
bin=${WLM_BIN_DIR:?WLM_BIN_DIR not set}
for b in wlm-router wlm-sampleapp it_flowctl_loop; do
    [[ -x $bin/$b ]] || { echo "it_flowctl_loop: missing $bin/$b" >&2; exit 1; }
done
exec "$bin/it_flowctl_loop" "$@"
