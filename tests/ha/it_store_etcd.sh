#!/usr/bin/env bash
# The etcd store (watched copy, atomic commits) against a one-member
# etcd started here.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
command -v etcd >/dev/null || { echo "FAIL: etcd not found (scripts/install-deps)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-it-stetcd-XXXXXX)
epid=
cleanup() { [ -n "$epid" ] && wlm_kill_tree "$epid"; rm -rf "$dir"; }
trap cleanup EXIT
ec=$(wlm_free_port); ep=$(wlm_free_port)
etcd --name t --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
  --initial-cluster "t=http://127.0.0.1:$ep" >"$dir/etcd.log" 2>&1 &
epid=$!
wlm_wait_http "http://127.0.0.1:$ec/health" 30 || { echo "FAIL: etcd did not start" >&2; exit 1; }
WLM_TEST_ETCD=127.0.0.1:$ec "$WLM_BIN_DIR/test_store_etcd"
