#!/usr/bin/env bash
# Identities and roles on the controller (issue 17): see it_roles.py.
set -euo pipefail
exec python3 "$WLM_SOURCE_DIR/tests/security/it_roles.py"
