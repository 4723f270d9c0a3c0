#!/usr/bin/env bash
# Installing like a real service (issue 19, item 11): `cmake --install` into
# a temporary prefix puts the binaries, the dashboard, the example configs
# under share/wlm and systemd units for the controller, the router and the
# node agent there; the units name the installed binaries and pass
# `systemd-analyze verify` where that tool exists; the installed binaries
# answer --help and the controller starts from the example config.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-install-XXXXXX)
pid=""
trap '[ -n "$pid" ] && wlm_kill_tree "$pid"; rm -rf "$dir"' EXIT
prefix=$dir/prefix
cmake --install "$WLM_BUILD_DIR" --prefix "$prefix" >"$dir/install.log" 2>&1 \
  || { cat "$dir/install.log" >&2; fail "cmake --install failed"; }
for b in wlm wlm-controller wlm-nodeagent wlm-router wlm-sampleapp; do
  [ -x "$prefix/bin/$b" ] || fail "bin/$b not installed"
  "$prefix/bin/$b" --help >/dev/null 2>&1 || fail "installed $b --help failed"
done
for f in index.html app.js curves.js style.css; do
  [ -s "$prefix/share/wlm/dashboard/$f" ] || fail "dashboard/$f not installed"
done
for f in config/controller.json config/router.json config/nodeagent.json config/wlm.env demo/shop.json; do
  [ -s "$prefix/share/wlm/examples/$f" ] || fail "share/wlm/examples/$f not installed"
done
units=()
for u in wlm-controller wlm-router wlm-nodeagent; do
  f=$prefix/lib/systemd/system/$u.service
  [ -s "$f" ] || fail "$u.service not installed"
  grep -q "^ExecStart=$prefix/bin/$u " "$f" || fail "$u.service does not start $prefix/bin/$u: $(grep ExecStart "$f")"
  grep -q "^Restart=on-failure" "$f" || fail "$u.service has no Restart=on-failure"
  grep -q "/etc/wlm/" "$f" || fail "$u.service reads nothing from /etc/wlm"
  grep -q "@" "$f" && fail "$u.service has an unsubstituted @VAR@: $(grep @ "$f")"
  units+=("$f")
done
grep -q "^NoNewPrivileges=yes" "$prefix/lib/systemd/system/wlm-controller.service" || fail "controller unit not hardened"
grep -q "^ProtectSystem=strict" "$prefix/lib/systemd/system/wlm-router.service" || fail "router unit not hardened"
if command -v systemd-analyze >/dev/null; then
  # verify loads the units as systemd would: unknown keys, bad values and a
  # missing ExecStart binary are errors.
  if ! systemd-analyze verify "${units[@]}" >"$dir/verify.log" 2>&1; then
    cat "$dir/verify.log" >&2
    fail "systemd-analyze verify rejected the units"
  fi
  if grep -E "Unknown (key|section)|Failed to parse|not executable|is not absolute" "$dir/verify.log"; then
    fail "systemd-analyze verify complained (above)"
  fi
  echo "systemd-analyze verify: ok"
else
  fail "systemd-analyze not found (scripts/install-deps test installs systemd)"
fi
# The example controller config is a valid one.
port=$(wlm_free_port)
"$prefix/bin/wlm-controller" --config "$prefix/share/wlm/examples/config/controller.json" \
  --listen-host 127.0.0.1 --listen-port "$port" --db "$dir/c.db" --token install-test \
  >"$dir/controller.log" 2>&1 &
pid=$!
wlm_wait_http "http://127.0.0.1:$port/healthz" 30 || { cat "$dir/controller.log" >&2; fail "controller did not start from the example config"; }
curl -sf "http://127.0.0.1:$port/dashboard/" | grep -q "<title>wlm" || fail "installed controller serves no dashboard"
echo "it_operator_install: ok"
