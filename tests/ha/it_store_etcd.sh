#!/usr/bin/env bash
# The etcd store (watched copy, atomic commits) against two one-member etcds
# started here: one with --max-txn-ops raised (as wlm's docs and tests run
# it), one with etcd's defaults (128 operations per transaction).
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
command -v etcd >/dev/null || { echo "FAIL: etcd not found (scripts/install-deps)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-it-stetcd-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do wlm_kill_tree "$p"; done; rm -rf "$dir"; }
trap cleanup EXIT
start_etcd() { # NAME CLIENT_PORT PEER_PORT [etcd flags...]
  local name=$1 ec=$2 ep=$3
  shift 3
  etcd --name "$name" --data-dir "$dir/$name" --listen-client-urls "http://127.0.0.1:$ec" \
    --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
    --initial-cluster "$name=http://127.0.0.1:$ep" "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  wlm_wait_http "http://127.0.0.1:$ec/health" 30 || { echo "FAIL: etcd $name did not start" >&2; exit 1; }
}
ec=$(wlm_free_port); ep=$(wlm_free_port)
start_etcd raised "$ec" "$ep" --max-txn-ops 10000
dc=$(wlm_free_port); dp=$(wlm_free_port)
start_etcd default "$dc" "$dp"
WLM_TEST_ETCD=127.0.0.1:$ec WLM_TEST_ETCD_DEFAULT=127.0.0.1:$dc "$WLM_BIN_DIR/test_store_etcd"
