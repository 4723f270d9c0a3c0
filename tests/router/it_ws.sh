#!/usr/bin/env bash
# Upgrade/WebSocket tunnels through wlm-router on loopback (see it_ws.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/it_ws.py"
