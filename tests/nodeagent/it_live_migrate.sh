#!/usr/bin/env bash
# Live migration between two real hypervisors on one machine: two private
# libvirtd + QEMU (TCG) instances (tests/nodeagent/hvlib.sh), one agent on
# each. A job VM that counts migrates live from A to B while its counter
# keeps going; afterwards exactly one domain exists (on B), A's VM-ID
# repository says "migrated" and B's has the job running (adopted). Then it
# moves back with live migration forced to fail (a destination URI that does
# not answer): the agent falls back to suspend + restore through shared
# storage, and the counter still continues. Then agent A is killed -9 during
# a suspend, and during a live migration. Prints the downtime libvirt
# measured and the longest gap between counter lines seen from outside.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
. "$WLM_SOURCE_DIR/tests/nodeagent/hvlib.sh"
bin=$WLM_BIN_DIR
if [ "$(id -u)" -ne 0 ]; then
  echo "it_live_migrate: needs root to run libvirtd (CI runs as root)" >&2
  exit 1
fi
"$WLM_SOURCE_DIR/scripts/install-deps" build vm
dir=$(mktemp -d /tmp/wlm-it-mig-XXXXXX)
chmod 755 "$dir" # QEMU reads the kernel/initrd and writes the console here
tag=mg$$
pids=()
hvs=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}" 2>/dev/null
  local i
  for i in "${hvs[@]}"; do hv_stop "${i%%:*}" "${i##*:}"; done
  [ -n "${WLM_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$dir"/*.log "$dir"/a/jobs/*/console.log; do [ -f "$f" ] && { echo "== $f"; tail -12 "$f"; }; done >&2
  for h in hva hvb; do grep -E ' error ' "$dir/$h/libvirtd.log" 2>/dev/null | grep -v 'dnsmasq\|DBus\|dmi\|udev' | tail -5; done >&2
  exit 1
}

base=$((40000 + ($$ % 200) * 64)) # migration ports: 32 per hypervisor
hv_start "$dir/hva" "$(cat /proc/sys/kernel/random/uuid)" "$base" || fail "hypervisor A"
hvs+=("$dir/hva:$hv_pid")
uri_a=$hv_uri
hv_start "$dir/hvb" "$(cat /proc/sys/kernel/random/uuid)" $((base + 32)) || fail "hypervisor B"
hvs+=("$dir/hvb:$hv_pid")
uri_b=$hv_uri
echo "ok: two hypervisors ($uri_a, $uri_b)"

export WLM_TOKEN=mig-secret
cport=$(wlm_free_port)
# Job VMs get a disk image from each agent's pool (no warm pool). Both
# hypervisors see the same filesystem, so the images are shared storage
# (--images-shared); without it libvirt refuses to migrate a disk on a local
# filesystem live ("Migration without shared storage is unsafe") and the
# agent falls back to suspend + restore.
start_agent() { # NAME URI
  local seen
  seen=$(grep -c 'node agent listening' "$dir/$1.log" 2>/dev/null || true)
  "$bin/wlm-nodeagent" --name "$1-$tag" --controller "http://127.0.0.1:$cport" \
    --libvirt-uri "$2" --listen-port 0 --state-dir "$dir/$1" --shared-dir "$dir/shared" \
    --vm-memory-mb 96 --pool-size 0 --pool-max 2 --images-shared true --heartbeat-ms 300 >>"$dir/$1.log" 2>&1 &
  pids+=($!)
  local url="" _
  for _ in $(seq 300); do
    if [ "$(grep -c 'node agent listening' "$dir/$1.log" 2>/dev/null || true)" -gt "${seen:-0}" ]; then
      url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/$1.log" | tail -1 | cut -d= -f2 || true)
      break
    fi
    sleep 0.1
  done
  [ -n "$url" ] || fail "agent $1 did not start"
  eval "url_$1=$url"
}
api() { curl -sS -H "Authorization: Bearer $WLM_TOKEN" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
act() { # URL BODY -> final action JSON
  local id code
  id=$(echo "$2" | field 'd["id"]')
  code=$(api -o "$dir/post" -w '%{http_code}' -d "$2" "$1/v1/actions")
  [ "$code" = 202 ] || fail "POST $2 -> $code $(cat "$dir/post")"
  for _ in $(seq 2400); do
    api "$1/v1/actions/$id" >"$dir/act"
    st=$(field 'd["status"]' <"$dir/act")
    [ "$st" = running ] || [ "$st" = accepted ] || { cat "$dir/act"; return 0; }
    sleep 0.1
  done
  fail "action $id did not finish"
}
counts() { grep -ao 'count [0-9]*' "$1" 2>/dev/null | awk '{print $2}' || true; }
last_count() { counts "$1" | tail -1; }
wait_count() { # FILE MIN SECONDS
  for _ in $(seq $(($3 * 10))); do
    n=$(last_count "$1")
    [ -n "$n" ] && [ "$n" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "no 'count $2' in $1 within $3 s"
}
domains() { virsh -c "$1" list --name 2>/dev/null | grep -c "^wlm-$tag" || true; }
# Longest time the counter did not move, sampled every 50 ms while $1 runs.
sample_gaps() { # FILE OUT
  local last="" t0 now n
  t0=$(date +%s.%N)
  while [ ! -e "$dir/stop-sampling" ]; do
    n=$(last_count "$1")
    now=$(date +%s.%N)
    if [ "$n" != "$last" ]; then echo "$now $n" >>"$2"; last=$n; fi
    sleep 0.05
  done
}
max_gap() { awk 'NR>1 {g=$1-p; if (g>m) m=g} {p=$1} END {printf "%.2f", m}' "$1"; }

start_agent a "$uri_a"
start_agent b "$uri_b"
job=$tag-count
con=$dir/a/jobs/$job/console.log
r=$(act "$url_a" "{\"id\":\"s1\",\"kind\":\"start\",\"job\":\"$job\",\"memory_mb\":96,\"command\":\"i=0; while true; do i=\$((i+1)); echo count \$i; sleep 0.2; done\"}")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "start: $r"
wait_count "$con" 5 120
echo "ok: job VM counts on A"

# 1. Live A -> B.
rm -f "$dir/stop-sampling"
sample_gaps "$con" "$dir/gaps1" &
sampler=$!
before=$(last_count "$con")
r=$(act "$url_a" "{\"id\":\"m1\",\"kind\":\"migrate\",\"job\":\"$job\",\"target\":\"$url_b\",\"dest_uri\":\"$uri_b\"}")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "live migrate: $r"
[ "$(echo "$r" | field 'd["result"]["mode"]')" = live ] || fail "not live: $r"
wait_count "$con" $((before + 10)) 60
touch "$dir/stop-sampling"
wait "$sampler" 2>/dev/null || true
[ "$(domains "$uri_a")" = 0 ] || fail "a domain remains on A after the live migration"
[ "$(domains "$uri_b")" = 1 ] || fail "B has $(domains "$uri_b") domains of the job"
[ "$(api "$url_a/v1/jobs/$job" | field 'd["state"]')" = migrated ] || fail "A's repository: $(api "$url_a/v1/jobs/$job")"
[ "$(api "$url_b/v1/jobs/$job" | field 'd["state"]')" = running ] || fail "B's repository: $(api "$url_b/v1/jobs/$job")"
out_b=$(api "$url_b/v1/jobs/$job" | field 'd["output"]')
grep -q "count $((before + 5))" <<<"$out_b" || fail "B does not show the job's output"
[ "$(counts "$con" | grep -cx 1)" = 1 ] || fail "the counter restarted"
down=$(echo "$r" | field 'd["result"]["downtime_ms"]')
secs=$(echo "$r" | field 'd["result"]["seconds"]')
gap1=$(max_gap "$dir/gaps1")
echo "ok: live migration A -> B in ${secs} s, downtime ${down} ms (libvirt); longest counter gap seen ${gap1} s (lines every 0.2 s); one domain, repository followed"

# 2. Back B -> A, live migration forced to fail: suspend + restore through shared storage.
rm -f "$dir/stop-sampling"
sample_gaps "$con" "$dir/gaps2" &
sampler=$!
before=$(last_count "$con")
r=$(act "$url_b" "{\"id\":\"m2\",\"kind\":\"migrate\",\"job\":\"$job\",\"target\":\"$url_a\",\"dest_uri\":\"qemu+unix:///system?socket=$dir/no-such-sock\"}")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "fallback migrate: $r"
[ "$(echo "$r" | field 'd["result"]["mode"]')" = suspend-copy-restore ] || fail "no fallback: $r"
[ -n "$(echo "$r" | field 'd["result"].get("live_error", "")')" ] || fail "the fallback does not say why: $r"
wait_count "$con" $((before + 10)) 90
touch "$dir/stop-sampling"
wait "$sampler" 2>/dev/null || true
[ "$(domains "$uri_b")" = 0 ] || fail "a domain remains on B after the fallback"
[ "$(domains "$uri_a")" = 1 ] || fail "A has $(domains "$uri_a") domains of the job"
[ "$(api "$url_b/v1/jobs/$job" | field 'd["state"]')" = migrated ] || fail "B's repository after the fallback"
[ "$(api "$url_a/v1/jobs/$job" | field 'd["state"]')" = running ] || fail "A's repository after the fallback"
[ "$(counts "$con" | grep -cx 1)" = 1 ] || fail "the counter restarted after the fallback"
[ ! -e "$dir/shared/$job.save" ] || fail "the save file was not consumed"
secs2=$(echo "$r" | field 'd["result"]["seconds"]')
gap2=$(max_gap "$dir/gaps2")
echo "ok: forced fallback B -> A (suspend + restore via shared storage) in ${secs2} s; longest counter gap ${gap2} s"

# 3. kill -9 of agent A while a suspend runs on the real hypervisor, restarted
# at once: libvirt finishes the save without it; the restarted agent waits
# for that job, finds the domain gone and the save file there, records the
# job suspended (not failed) and settles the suspend as succeeded; a retried
# id gets that; a restore continues the job.
before=$(last_count "$con")
code=$(api -o "$dir/post" -w '%{http_code}' -d "{\"id\":\"k1\",\"kind\":\"suspend\",\"job\":\"$job\"}" "$url_a/v1/actions")
[ "$code" = 202 ] || fail "suspend: $code $(cat "$dir/post")"
sleep 0.3
kill -9 "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
still=$(domains "$uri_a") # 1 while libvirt is still saving
start_agent a "$uri_a"     # at once: recovery waits for libvirt's save job
pids[0]=${pids[${#pids[@]}-1]}
r=$(api "$url_a/v1/actions/k1")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "interrupted suspend after restart: $r"
[ "$(echo "$r" | field 'd.get("recovered")')" = True ] || fail "not marked recovered: $r"
[ "$(api "$url_a/v1/jobs/$job" | field 'd["state"]')" = suspended ] || fail "job after restart: $(api "$url_a/v1/jobs/$job")"
code=$(api -o "$dir/post" -w '%{http_code}' -d "{\"id\":\"k1\",\"kind\":\"suspend\",\"job\":\"$job\"}" "$url_a/v1/actions")
[ "$code" = 200 ] || fail "retried suspend id gave $code"
r=$(act "$url_a" "{\"id\":\"k2\",\"kind\":\"restore\",\"job\":\"$job\"}")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "restore after the interrupted suspend: $r"
wait_count "$con" $((before + 10)) 90
[ "$(counts "$con" | grep -cx 1)" = 1 ] || fail "the counter restarted after the interrupted suspend"
grep -q "recover: waiting for libvirt's job" "$dir/a.log" && waited=yes || waited=no
echo "ok: suspend cut off by kill -9 settled from the save file after the restart (domain still there at the restart: $still, waited for libvirt's save: $waited); the job continues"

# 4. kill -9 of agent A during a live migration, restarted at once. The
# agent drives libvirt's migration phases, so where the kill lands decides
# what libvirt leaves: early, it cancels and the guest goes on at A; at the
# switchover the guest may be left running on B with A's copy paused for a
# confirm that never comes, or an unfinished incoming copy on B. Whatever
# it is, the restarted agent leaves exactly one copy, running, the action's
# outcome says where (succeeded: B, which adopted it; failed: A), and the
# counter goes on. Three times: killed 0.5 s in, the moment the source's
# copy pauses for the switchover, and 0.15 s after that.
cut_migrate() { # ID WHEN(early|switchover|late) FROM_URL FROM_URI TO_URL TO_URI FROM_IDX FROM_NAME
  local id=$1 when=$2 fu=$3 furi=$4 tu=$5 turi=$6 idx=$7 name=$8 st="" r code before n_f n_t
  before=$(last_count "$con")
  code=$(api -o "$dir/post" -w '%{http_code}' -d "{\"id\":\"$id\",\"kind\":\"migrate\",\"job\":\"$job\",\"target\":\"$tu\",\"dest_uri\":\"$turi\"}" "$fu/v1/actions")
  [ "$code" = 202 ] || fail "migrate: $code $(cat "$dir/post")"
  if [ "$when" = early ]; then
    sleep 0.5
  else
    for _ in $(seq 3000); do
      st=$(virsh -c "$furi" domstate "wlm-$job" 2>/dev/null || true)
      [ "${st%%$'\n'*}" = running ] || break
    done
  fi
  [ "$when" = late ] && sleep 0.15 # past the switchover: libvirt is finishing on the destination
  kill -9 "${pids[$idx]}"
  wait "${pids[$idx]}" 2>/dev/null || true
  start_agent "$name" "$furi"
  pids[idx]=${pids[${#pids[@]}-1]}
  fu=$(eval echo "\$url_$name")
  for _ in $(seq 600); do
    r=$(api "$fu/v1/actions/$id")
    case "$(echo "$r" | field 'd["status"]')" in succeeded | failed) break ;; esac
    sleep 0.1
  done
  echo "migrate cut off ($when): $(echo "$r" | field 'd["status"]') $(echo "$r" | field 'd.get("error","")') $(echo "$r" | field 'd.get("detail","")')"
  for _ in $(seq 100); do
    n_f=$(domains "$furi")
    n_t=$(domains "$turi")
    [ $((n_f + n_t)) = 1 ] && break
    sleep 0.1
  done
  [ $((n_f + n_t)) = 1 ] || fail "$n_f domain(s) on the source and $n_t on the destination after the cut-off migration ($when)"
  if [ "$(echo "$r" | field 'd["status"]')" = succeeded ]; then
    [ "$n_t" = 1 ] || fail "the action succeeded but the job is not on the destination"
    [ "$(virsh -c "$turi" domstate "wlm-$job" 2>/dev/null | head -1 || true)" = running ] || fail "job not running on the destination"
    [ "$(api "$tu/v1/jobs/$job" | field 'd["state"]')" = running ] || fail "the destination did not adopt the job: $(api "$tu/v1/jobs/$job")"
    [ "$(api "$fu/v1/jobs/$job" | field 'd["state"]')" = migrated ] || fail "the source's repository after the cut-off migration"
    where=destination
  else
    [ "$n_f" = 1 ] || fail "the action failed but the job is not on the source"
    [ "$(virsh -c "$furi" domstate "wlm-$job" 2>/dev/null | head -1 || true)" = running ] || fail "job not running on the source: $(virsh -c "$furi" domstate "wlm-$job" 2>&1)"
    [ "$(api "$fu/v1/jobs/$job" | field 'd["state"]')" = running ] || fail "the source's repository after the cut-off migration"
    where=source
  fi
  wait_count "$con" $((before + 10)) 60
  echo "ok: live migration cut off by kill -9 ($when${st:+, source ${st%%$'\n'*}}): one domain, running, on the $where; the job goes on"
}
cut_migrate k3 early "$url_a" "$uri_a" "$url_b" "$uri_b" 0 a
for k in "k4 switchover" "k5 late"; do
  if [ "$(api "$url_a/v1/jobs/$job" | field 'd.get("state")')" = running ]; then
    cut_migrate $k "$url_a" "$uri_a" "$url_b" "$uri_b" 0 a
  else
    cut_migrate $k "$url_b" "$uri_b" "$url_a" "$uri_a" 1 b
  fi
done
last=$url_b
[ "$(api "$url_a/v1/jobs/$job" | field 'd.get("state")')" = running ] && last=$url_a

r=$(act "$last" "{\"id\":\"d1\",\"kind\":\"destroy\",\"job\":\"$job\"}")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "destroy: $r"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
if grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$dir"/*.log; then fail "sanitizer report"; fi
echo "it_live_migrate: ok"
