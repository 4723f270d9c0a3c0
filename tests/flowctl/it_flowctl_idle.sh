#!/usr/bin/env bash
# Recovery after idle: see it_flowctl_idle.c.
set -euo pipefail
bin=${WLM_BIN_DIR:?WLM_BIN_DIR not set}
for b in wlm-router wlm-sampleapp it_flowctl_idle; do
    [[ -x $bin/$b ]] || { echo "it_flowctl_idle: missing $bin/$b" >&2; exit 1; }
done
exec "$bin/it_flowctl_idle"
