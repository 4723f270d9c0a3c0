#!/usr/bin/env bash
# --max-body-bytes on streamed bodies (see it_limits.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/it_limits.py"
