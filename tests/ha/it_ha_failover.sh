#!/usr/bin/env bash
# Controllers on a three-member etcd cluster: kill -9 of the leader during a
# burst, etcd members lost and back, a stopped leader that wakes up (see
# ha_failover.py).
set -euo pipefail
exec python3 "$WLM_SOURCE_DIR/tests/ha/ha_failover.py"
