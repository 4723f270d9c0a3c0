#!/usr/bin/env bash
# wlm job submit is idempotent across a failover by default (see ha_submit.py).
set -euo pipefail
exec python3 "$WLM_SOURCE_DIR/tests/ha/ha_submit.py"
