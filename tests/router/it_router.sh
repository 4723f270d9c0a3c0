#!/usr/bin/env bash
# Integration test of wlm-router on loopback (see it_router.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/it_router.py"
