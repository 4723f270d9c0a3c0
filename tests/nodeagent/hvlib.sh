# Private libvirtd + QEMU hypervisors for tests (sourced). Each runs in its
# own mount namespace, with its own run/state/cache/log/config dirs bound
# over /run/libvirt, /var/lib/libvirt, ... and its socket in DIR/sock, a
# distinct host_uuid (libvirt refuses to migrate to "the same host") and
# its own migration port range. The system libvirtd is left alone.
#
#   hv_start DIR UUID PORT_MIN   -> sets hv_pid, hv_uri
#   hv_stop DIR PID              -> destroys its domains, ends the daemon

hv_start() {
  local d=$1
  mkdir -p "$d"/{run,lib,cache,log,etc,sock}
  cat >"$d/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$d/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$2"
log_outputs = "3:file:$d/libvirtd.log"
EOF
  # stdio_handler file: no virtlogd needed. No cgroups: both daemons would
  # name a migrating domain's machine cgroup alike. QEMU runs as root with
  # no relabelling, so both daemons can use the agents' files.
  cat >"$d/etc/qemu.conf" <<EOF
stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
migration_port_min = $3
migration_port_max = $(($3 + 31))
EOF
  unshare -m --propagation private sh -c "mount --bind '$d/run' /run/libvirt &&
    mount --bind '$d/lib' /var/lib/libvirt && mount --bind '$d/cache' /var/cache/libvirt &&
    mount --bind '$d/log' /var/log/libvirt && mount --bind '$d/etc' /etc/libvirt &&
    exec libvirtd -p '$d/libvirtd.pid'" >"$d/stderr" 2>&1 &
  hv_pid=$!
  hv_uri="qemu+unix:///system?socket=$d/sock/libvirt-sock"
  local _
  for _ in $(seq 300); do
    [ -S "$d/sock/libvirt-sock" ] && virsh -c "$hv_uri" version >/dev/null 2>&1 && return 0
    kill -0 "$hv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "hv_start: libvirtd in $d did not come up:" >&2
  grep -E ' error ' "$d/libvirtd.log" 2>/dev/null | tail -5 >&2
  return 1
}

hv_stop() {
  local d=$1 pid=$2 dom
  local uri="qemu+unix:///system?socket=$d/sock/libvirt-sock"
  for dom in $(virsh -c "$uri" list --name 2>/dev/null); do
    virsh -c "$uri" destroy "$dom" >/dev/null 2>&1 || true
  done
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
