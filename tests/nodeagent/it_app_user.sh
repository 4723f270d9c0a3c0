#!/usr/bin/env bash
# Least privilege for app instances: an instance runs as the unprivileged
# wlm-app user (or the user its app names), with its supplementary groups
# dropped, no_new_privs set, in its own cgroup, in a private working
# directory outside the state dir, with no fd of the agent's open; it cannot
# write the agent's state even where it can read it. A user that does not
# exist or is malformed is refused with a message naming it.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
if [ "$(id -u)" -ne 0 ]; then
  echo "it_app_user: needs root (CI runs as root): only root can switch users" >&2
  exit 1
fi
getent passwd wlm-app >/dev/null || { echo "it_app_user: no wlm-app user (scripts/install-deps creates it)" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-it-appuser-XXXXXX)
# Readable and traversable by everyone, so "cannot write" is the permissions'
# doing, not an unreachable path.
chmod 755 "$dir"
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && wlm_kill_tree "${pids[@]}" 2>/dev/null
  wlm_rm_cgroups "wlm-au$$"
  [ -n "${WLM_KEEP_TMP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  tail -20 "$dir/agent.log" >&2
  exit 1
}
export WLM_TOKEN=appuser-secret
wlm_test_node_xml "$dir/n1.xml" 4 2400 8192
state=$dir/state
mkdir -p "$state"
chmod 755 "$state"
"$bin/wlm-nodeagent" --name "au$$" --controller "http://127.0.0.1:$(wlm_free_port)" \
  --libvirt-uri "test://$dir/n1.xml" --listen-port 0 --state-dir "$state" --app-dir "$dir/apps" \
  --heartbeat-ms 300 >"$dir/agent.log" 2>&1 &
pids+=($!)
url=""
for _ in $(seq 100); do
  url=$(grep -o 'url=http://127.0.0.1:[0-9]*' "$dir/agent.log" 2>/dev/null | head -1 | cut -d= -f2 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || fail "agent did not start"
api() { curl -sS -H "Authorization: Bearer $WLM_TOKEN" "$@"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
act() { # BODY -> final action JSON
  local id code
  id=$(echo "$1" | field 'd["id"]')
  code=$(api -o "$dir/resp" -w '%{http_code}' -d "$1" "$url/v1/actions")
  [ "$code" = 202 ] || { echo "HTTP $code $(cat "$dir/resp")"; return 0; }
  for _ in $(seq 100); do
    api "$url/v1/actions/$id" >"$dir/act"
    st=$(field 'd["status"]' <"$dir/act")
    [ "$st" = running ] || { cat "$dir/act"; return 0; }
    sleep 0.1
  done
  fail "action $id did not finish"
}

# The instance reports who it is and tries to write the agent's state.
probe='id -u >report; id -g >>report; id -G >>report; pwd >>report;
grep NoNewPrivs /proc/self/status >>report; ls /proc/self/fd | wc -l >>report;
for f in STATE/evil STATE/vmrepo.db STATE/jobs/evil; do
  if (echo x >>"$f") 2>/dev/null; then echo "wrote $f" >>report; else echo "refused $f" >>report; fi
done; echo done >>report; sleep 1000'
probe=${probe//STATE/$state}
body=$(python3 -c 'import json,sys; print(json.dumps({"id":"p1","kind":"app_start","instance":"probe","command":sys.argv[1],"port":1}))' "$probe")
r=$(act "$body")
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "app_start: $r"
[ "$(echo "$r" | field 'd["result"]["user"]')" = wlm-app ] || fail "result user: $r"
wd=$(echo "$r" | field 'd["result"]["workdir"]')
pid=$(echo "$r" | field 'd["result"]["pid"]')
[ "$wd" = "$dir/apps/probe" ] || fail "workdir $wd"
for _ in $(seq 100); do grep -q '^done$' "$wd/report" 2>/dev/null && break; sleep 0.1; done
grep -q '^done$' "$wd/report" || fail "the probe did not finish: $(cat "$wd/report" 2>&1)"
uid=$(id -u wlm-app)
gid=$(id -g wlm-app)
mapfile -t rep <"$wd/report"
[ "${rep[0]}" = "$uid" ] || fail "instance uid ${rep[0]}, want $uid (wlm-app)"
[ "${rep[1]}" = "$gid" ] || fail "instance gid ${rep[1]}, want $gid"
[ "${rep[2]}" = "$gid" ] || fail "supplementary groups not dropped: '${rep[2]}'"
[ "${rep[3]}" = "$wd" ] || fail "working directory ${rep[3]}, want $wd"
[[ "${rep[4]}" =~ NoNewPrivs:[[:space:]]*1 ]] || fail "no_new_privs not set: ${rep[4]}"
# ls itself holds one fd for the directory: 0, 1, 2 and that one.
[ "${rep[5]}" -le 4 ] || fail "the instance inherited fds: ${rep[5]} open"
grep -q '^wrote' "$wd/report" && fail "the instance wrote the agent's state: $(grep '^wrote' "$wd/report")"
[ "$(grep -c '^refused' "$wd/report")" = 3 ] || fail "report: $(cat "$wd/report")"
[ ! -e "$state/evil" ] || fail "$state/evil exists"
[ "$(stat -c %U "$wd")" = wlm-app ] && [ "$(stat -c %a "$wd")" = 700 ] || fail "workdir not private: $(stat -c '%U %a' "$wd")"
[ "$(stat -c %U "$wd/stdout.log")" = wlm-app ] || fail "log not written as the user"
case "$wd" in "$state"/*) fail "the working directory is inside the state dir" ;; esac
# Seen from outside: real, effective and saved ids are the user's.
grep -Eq "^Uid:[[:space:]]+$uid[[:space:]]+$uid[[:space:]]+$uid" "/proc/$pid/status" || fail "Uid: $(grep Uid "/proc/$pid/status")"
cap_mode=$(api "$url/v1/node" | field 'd["cpu_cap_mode"]')
if [ "$cap_mode" != uncapped ]; then
  grep -q "/wlm-au$$/probe" "/proc/$pid/cgroup" || fail "not in its own cgroup: $(cat "/proc/$pid/cgroup")"
fi
echo "ok: instance runs as wlm-app ($uid:$gid, no groups, no_new_privs, own cgroup: $cap_mode), private dir $wd, cannot write the state dir"

# An app that names its user gets it.
r=$(act '{"id":"p2","kind":"app_start","instance":"nob","command":"id -un >me; sleep 1000","port":2,"user":"nobody"}')
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "app_start as nobody: $r"
for _ in $(seq 50); do [ -s "$dir/apps/nob/me" ] && break; sleep 0.1; done
[ "$(cat "$dir/apps/nob/me")" = nobody ] || fail "ran as $(cat "$dir/apps/nob/me" 2>&1)"
echo "ok: apps[].user is honoured (nobody)"

# Unknown and malformed users: refused, with the field named, nothing started.
r=$(act '{"id":"p3","kind":"app_start","instance":"x1","command":"sleep 1000","port":3,"user":"no-such-user-wlm"}')
[ "$(echo "$r" | field 'd["status"]')" = failed ] || fail "unknown user accepted: $r"
case "$r" in *"user 'no-such-user-wlm' does not exist"*) ;; *) fail "unclear error: $r" ;; esac
r=$(act '{"id":"p4","kind":"app_start","instance":"x2","command":"sleep 1000","port":4,"user":"Root!"}')
case "$r" in "HTTP 400"*user*) ;; *) fail "malformed user not refused with 400: $r" ;; esac
[ "$(api "$url/v1/node" | python3 -c 'import json,sys; print(len([i for i in json.load(sys.stdin)["instances"] if i["instance"] in ("x1","x2")]))')" = 0 ] ||
  fail "a refused instance is listed"
echo "ok: unknown and malformed users refused"

# A stopped instance's private directory goes with it (emptied as its user).
ln -s "$state" "$dir/apps/probe/link-to-state" 2>/dev/null || true
r=$(act '{"id":"p5","kind":"app_stop","instance":"probe"}')
[ "$(echo "$r" | field 'd["status"]')" = succeeded ] || fail "app_stop: $r"
[ ! -e "$dir/apps/probe" ] || fail "the instance directory survived its app_stop: $(ls -la "$dir/apps/probe")"
[ -e "$state/vmrepo.db" ] || fail "removing the instance directory followed a link into the state dir"
echo "ok: app_stop removes the instance's directory, without following its links"
echo "it_app_user: ok"
