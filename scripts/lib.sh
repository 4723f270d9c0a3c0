# scripts/lib.sh - shell helpers shared by the demo and the integration tests.
# Source it; it defines functions only.

# A TCP port on 127.0.0.1 that nothing listens on right now.
wlm_free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# wlm_wait_http URL [SECONDS]: wait until URL answers 200.
wlm_wait_http() {
  local url=$1 limit=${2:-20} i=0
  while [ "$i" -lt $((limit * 10)) ]; do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
    i=$((i + 1))
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# wlm_test_node_xml FILE CORES MHZ MEMORY_MB: a libvirt test-driver node.
wlm_test_node_xml() {
  local file=$1 cores=$2 mhz=$3 mem=$4
  cat >"$file" <<XML
<node>
  <cpu>
    <mhz>$mhz</mhz>
    <model>x86_64</model>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>$cores</cores>
    <threads>1</threads>
    <active>$cores</active>
  </cpu>
  <memory>$((mem * 1024))</memory>
</node>
XML
}

# wlm_kill_tree PID...: TERM, then KILL whatever is left after 5 s.
wlm_kill_tree() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

# wlm_rm_cgroups NAME...: remove the agent cgroups NAME (e.g. wlm-n1, or a glob) from
# every hierarchy, children first. An agent killed with -9 leaves its own
# behind; only empty ones go (rmdir), so nothing running is touched.
wlm_rm_cgroups() {
  local n cg
  for n in "$@"; do
    for cg in /sys/fs/cgroup/*/$n; do # $n may be a pattern
      [ -d "$cg" ] || continue
      find "$cg" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
      rmdir "$cg" 2>/dev/null || true
    done
  done
}

# wlm_make_ca DIR [NAME]: a local certificate authority (DIR/ca.pem, DIR/ca.key)
# made with the openssl command line, for TLS on the control plane.
wlm_make_ca() {
  local dir=$1 name=${2:-wlm local CA}
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$name" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >/dev/null 2>&1
  chmod 600 "$dir/ca.key"
}

# wlm_make_cert DIR NAME SAN: DIR/NAME.pem + DIR/NAME.key signed by DIR/ca.*,
# for the subject alternative names SAN ("IP:127.0.0.1,DNS:localhost").
wlm_make_cert() {
  local dir=$1 name=$2 san=$3
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" >/dev/null 2>&1
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/$name.ext" -out "$dir/$name.pem" >/dev/null 2>&1
  chmod 600 "$dir/$name.key"
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}
