#!/usr/bin/env bash
# Signals (drain, reload) and the access log of wlm-router (see it_ops.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/it_ops.py"
