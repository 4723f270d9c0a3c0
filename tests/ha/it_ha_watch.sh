#!/usr/bin/env bash
# A standby's copy follows the leader through an etcd watch, and catches up
# after the watch's stream is cut (see ha_watch.py).
set -euo pipefail
exec python3 "$WLM_SOURCE_DIR/tests/ha/ha_watch.py"
