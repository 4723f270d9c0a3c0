#!/usr/bin/env bash
# Streaming bodies through wlm-router on loopback (see it_stream.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/it_stream.py"
