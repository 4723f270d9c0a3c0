#!/usr/bin/env bash
# Durability of job submissions: a burst of 1,000 submissions (8 clients in
# parallel) against wlm-controller, kill -9 in the middle of it, restart.
# Every acknowledged (201) job must be there after the restart, exactly once;
# retrying the unacknowledged ones with the same idempotency key must not
# duplicate anything: in the end there are exactly 1,000 jobs.
set -euo pipefail
. "$WLM_SOURCE_DIR/scripts/lib.sh"
bin=$WLM_BIN_DIR
[ -x "$bin/wlm-controller" ] || { echo "FAIL: $bin/wlm-controller not built" >&2; exit 1; }
dir=$(mktemp -d /tmp/wlm-it-durability-XXXXXX)
cpid=
cleanup() { [ -n "$cpid" ] && wlm_kill_tree "$cpid"; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -30 "$dir/controller.log" >&2 || true; exit 1; }

port=$(wlm_free_port)
token=it-durability
url=http://127.0.0.1:$port
start_controller() {
  "$bin/wlm-controller" --listen-port "$port" --db "$dir/c.db" --token "$token" \
    >>"$dir/controller.log" 2>&1 &
  cpid=$!
  disown "$cpid" # its kill -9 is the point of the test: no "Killed" job notice
  wlm_wait_http "$url/healthz" 30 || fail "controller did not start"
}
start_controller
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url/v1/jobs")
[ "$code" = 200 ] || fail "GET /v1/jobs answered $code: the controller does not serve the job API"

# Phase 1: the burst. The client kills the controller (kill -9) once 300
# submissions have been acknowledged, and records every acknowledgement.
python3 - "$url" "$token" "$cpid" "$dir/acked.json" <<'PY' || fail "burst client failed"
import http.client, json, os, signal, sys, threading
url, token, pid, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = url.split("//")[1].split(":")
N, KILL_AT, CLIENTS = 1000, 300, 8
acked, lock, killed = {}, threading.Lock(), [False]
def submit(i):
    # Half carry the key in the body, half in the Idempotency-Key header.
    body = {"name": "dur-%d" % i, "command": "/bin/true", "work_seconds": 5}
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    if i % 2:
        body["submit_id"] = "dur-%d" % i
    else:
        headers["Idempotency-Key"] = "dur-%d" % i
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        c.request("POST", "/v1/jobs", json.dumps(body), headers)
        r = c.getresponse()
        data = r.read()
        if r.status == 201:
            return json.loads(data)["jobs"][0]["id"]
        if r.status != 200:
            print("unexpected status", r.status, data[:200], file=sys.stderr)
    except Exception:
        pass  # the controller is gone: not acknowledged
    finally:
        c.close()
    return None
def worker(k):
    for i in range(k, N, CLIENTS):
        jid = submit(i)
        with lock:
            if jid is not None:
                acked["dur-%d" % i] = jid
            if len(acked) >= KILL_AT and not killed[0]:
                os.kill(pid, signal.SIGKILL)
                killed[0] = True
ts = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENTS)]
for t in ts: t.start()
for t in ts: t.join()
json.dump(acked, open(out, "w"))
print("acknowledged before/around the kill:", len(acked))
assert killed[0], "never reached the kill point"
assert KILL_AT <= len(acked) < N, "kill did not land mid-burst (%d acked)" % len(acked)
PY
for _ in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
cpid=

# Phase 2: restart, check, retry the rest with the same keys, check again.
start_controller
python3 - "$url" "$token" "$dir/acked.json" <<'PY' || fail "durability check failed"
import http.client, json, sys, collections
url, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = url.split("//")[1].split(":")
H = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
def call(method, p, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request(method, p, json.dumps(body) if body is not None else None, headers or H)
    r = c.getresponse()
    d = r.read()
    c.close()
    return r.status, json.loads(d) if d else None
def stored():
    st, v = call("GET", "/v1/jobs?limit=1000000")
    assert st == 200, st
    return v["jobs"]
acked = json.load(open(path))
jobs = stored()
ids = collections.Counter(j["id"] for j in jobs)
by_name = collections.Counter(j["name"] for j in jobs)
dups = [n for n, c in by_name.items() if c > 1]
assert not dups, "submitted once, stored twice: %s" % dups[:5]
missing = [k for k, jid in acked.items() if ids.get(jid) != 1]
assert not missing, "acknowledged but lost after kill -9: %s" % missing[:5]
names = {j["id"]: j["name"] for j in jobs}
wrong = [k for k, jid in acked.items() if names.get(jid) != k]
assert not wrong, "acknowledged id holds another job: %s" % wrong[:5]
print("after restart: %d stored, all %d acknowledged present once" % (len(jobs), len(acked)))
# Retry everything (acknowledged or not) with the same keys.
created = duplicate = 0
for i in range(1000):
    body = {"name": "dur-%d" % i, "command": "/bin/true", "work_seconds": 5}
    h = dict(H)
    if i % 2:
        body["submit_id"] = "dur-%d" % i
    else:
        h["Idempotency-Key"] = "dur-%d" % i
    st, v = call("POST", "/v1/jobs", body, h)
    assert st in (200, 201), (st, v)
    jid = v["jobs"][0]["id"]
    if "dur-%d" % i in acked:
        assert st == 200 and jid == acked["dur-%d" % i], ("retry of an acknowledged job", i, st, jid)
    created += st == 201
    duplicate += st == 200
jobs = stored()
names = collections.Counter(j["name"] for j in jobs)
assert len(jobs) == 1000 and all(names["dur-%d" % i] == 1 for i in range(1000)), \
    "after retries: %d jobs, duplicates %s" % (len(jobs), [n for n, c in names.items() if c > 1][:5])
print("retries: %d created, %d recognised as already stored; 1000 jobs, none twice" % (created, duplicate))
PY
echo "PASS: it_durability"
