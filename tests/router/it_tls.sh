#!/usr/bin/env bash
# TLS termination in wlm-router on loopback (see it_tls.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/it_tls.py"
