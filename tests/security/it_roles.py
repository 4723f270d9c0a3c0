#!/usr/bin/env python3
"""Identities and roles on the controller's API (issue 17, item 1).

A real wlm-controller on loopback, a token per role, and:
  - the role matrix: every control endpoint x every role gives 2xx when the
    role may call it and 403 when it may not; no token and a wrong token give
    401;
  - submitters see only their own jobs (list, show, cancel: others' are 404);
  - an agent token speaks for its node only (heartbeat, registration, reads
    and action completions for another node are refused);
  - a revoked token is refused on the very next request;
  - every control action and every refusal is in the audit log, which only
    admin may read; the audit log and the controller's log never hold a
    secret;
  - the CLI: wlm token create/list/revoke/whoami, and wlm job list shows the
    owner.
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ["WLM_BIN_DIR"]
BOOT = "boot-" + os.urandom(8).hex()
checks = 0
failures = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(port, method, path, token=None, body=None, read=True):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body) if not isinstance(body, str) else body
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    if not read:  # a stream (SSE): the status is enough
        st = r.status
        c.close()
        return st, None
    raw = r.read()
    c.close()
    try:
        v = json.loads(raw) if raw else None
    except ValueError:
        v = raw.decode(errors="replace")
    return r.status, v


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def main():
    d = tempfile.mkdtemp(prefix="wlm-it-roles-")
    port = free_port()
    log = open(os.path.join(d, "controller.log"), "w")
    env = dict(os.environ, WLM_TOKEN=BOOT)
    ctl = subprocess.Popen([BIN + "/wlm-controller", "--listen-port", str(port), "--db",
                            d + "/c.db", "--placement-period-ms", "600000", "--log-level",
                            "debug"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(200):
            try:
                if call(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        run(port, d)
    finally:
        ctl.terminate()
        try:
            ctl.wait(10)
        except subprocess.TimeoutExpired:
            ctl.kill()
        log.close()
        logtext = open(os.path.join(d, "controller.log")).read()
        for name, tok in SECRETS.items():
            check(tok[20:] not in logtext, "secret of token %s in the controller log" % name)
        if failures:
            print(logtext[-4000:], file=sys.stderr)
        shutil.rmtree(d, ignore_errors=True)
    print("it_roles: %d checks, %d failed" % (checks, len(failures)))
    sys.exit(1 if failures else 0)


SECRETS = {}


def mk(port, role, name, node=None):
    b = {"role": role, "name": name}
    if node:
        b["node"] = node
    st, v = call(port, "POST", "/v1/tokens", BOOT, b)
    assert st == 201, (st, v)
    assert v["token"].startswith("wlm_") and v["role"] == role
    SECRETS[name] = v["token"]
    return v["token"]


NODE = {"cores": 4, "mhz": 2000, "memory_mb": 4096, "agent_url": "http://127.0.0.1:1"}
APP = {"name": "shop", "command": "true {port}", "memory_mb": 64, "min_instances": 0,
       "classes": [{"name": "gold", "goal_ms": 100}]}


def run(port, d):
    tok = {
        "admin": mk(port, "admin", "root2"),
        "operator": mk(port, "operator", "ops"),
        "submitter": mk(port, "submitter", "alice"),
        "agent": mk(port, "agent", "agent-n1", "n1"),
        "router": mk(port, "router", "edge"),
    }
    bob = mk(port, "submitter", "bob")
    agent2 = mk(port, "agent", "agent-n2", "n2")
    # The bootstrap token is admin, as before roles existed.
    st, v = call(port, "GET", "/v1/whoami", BOOT)
    check(st == 200 and v["role"] == "admin" and v["name"] == "bootstrap", "bootstrap whoami %s" % v)
    for n in ("n1", "n2"):
        st, _ = call(port, "POST", "/v1/nodes", BOOT, dict(NODE, name=n))
        check(st in (200, 201), "register %s as bootstrap: %d" % (n, st))
    st, v = call(port, "POST", "/v1/jobs", tok["submitter"], {"command": "x", "work_seconds": 100})
    alice_job = v["jobs"][0]["id"]

    def new_alice_job():
        return call(port, "POST", "/v1/jobs", tok["submitter"],
                    {"command": "y", "work_seconds": 100})[1]["jobs"][0]["id"]

    def deployed_app():
        call(port, "POST", "/v1/apps", BOOT, APP)
        return "/v1/apps/shop"

    def spare_node():
        call(port, "POST", "/v1/nodes", BOOT, dict(NODE, name="spare"))
        return "/v1/nodes/spare"

    def spare_token():
        st, v = call(port, "POST", "/v1/tokens", BOOT, {"role": "submitter", "name": "tmp"})
        return "/v1/tokens/" + v["id"]

    A, O, S, G, R = "admin", "operator", "submitter", "agent", "router"
    # (method, path or a function making it, body, roles allowed, stream)
    matrix = [
        ("GET", "/v1/nodes", None, {A, O}),
        ("POST", "/v1/nodes", dict(NODE, name="n1"), {A, G}),
        ("GET", "/v1/nodes/n1", None, {A, O, G}),
        ("DELETE", spare_node, None, {A}),
        ("POST", "/v1/nodes/n1/heartbeat", {"usage": {}}, {A, G}),
        ("POST", "/v1/actions/none-such/complete", {"status": "succeeded"}, {A, G}),
        ("POST", "/v1/apps", APP, {A, O}),
        ("GET", "/v1/apps", None, {A, O}),
        ("GET", "/v1/apps/shop", None, {A, O}),
        ("DELETE", deployed_app, None, {A, O}),
        ("POST", "/v1/jobs", {"command": "z", "work_seconds": 50}, {A, O, S}),
        ("GET", "/v1/jobs", None, {A, O, S}),
        ("GET", "/v1/jobs/%d" % alice_job, None, {A, O, S}),
        ("DELETE", lambda: "/v1/jobs/%d" % new_alice_job(), None, {A, O, S}),
        ("GET", "/v1/jobs/%d/utility" % alice_job, None, {A, O, S}),
        ("POST", "/v1/jobs/%d/usage" % alice_job, {"done_mcycles": 1}, {A, O}),
        ("GET", "/v1/jobqueue/hypothetical", None, {A, O}),
        ("GET", "/v1/jobprofiles", None, {A, O}),
        ("GET", "/v1/placement", None, {A, O}),
        ("GET", "/v1/placement/snapshot", None, {A, O}),
        ("GET", "/v1/summary", None, {A, O}),
        ("GET", "/v1/utilities", None, {A, O}),
        ("GET", "/v1/flows", None, {A, O}),
        ("GET", "/v1/events", None, {A, O}, True),
        ("GET", "/v1/router/config", None, {A, R}),
        ("GET", "/v1/energy", None, {A, O}),
        ("GET", "/v1/energy/jobs/%d" % alice_job, None, {A, O, S}),
        ("GET", "/v1/energy/apps/shop", None, {A, O}),
        ("GET", "/v1/power", None, {A, O}),
        ("PUT", "/v1/power", {"budget_w": None}, {A, O}),
        ("PUT", "/v1/nodes/n1/power", {"budget_w": None}, {A}),
        ("GET", "/v1/whoami", None, {A, O, S, G, R}),
        ("POST", "/v1/tokens", {"role": "submitter", "name": "x"}, {A}),
        ("GET", "/v1/tokens", None, {A}),
        ("DELETE", spare_token, None, {A}),
        ("GET", "/v1/audit", None, {A}),
    ]
    cells = 0
    for row in matrix:
        method, path, body, allowed = row[:4]
        stream = len(row) > 4
        for role in (A, O, S, G, R):
            p = path() if callable(path) else path
            st, v = call(port, method, p, tok[role], body, read=not stream)
            cells += 1
            if role in allowed:
                check(200 <= st < 300, "%s %s as %s: want 2xx, got %d %s" % (method, p, role, st, v))
            else:
                check(st == 403 and v is None or st == 403 and v.get("error") == "forbidden",
                      "%s %s as %s: want 403, got %d %s" % (method, p, role, st, v))
        p = path() if callable(path) else path
        for bad in (None, "wrong", "wlm_0123456789abcdef_" + "0" * 64):
            st, v = call(port, method, p, bad, body, read=not stream)
            check(st == 401, "%s %s with token %r: want 401, got %d" % (method, p, bad, st))
    print("role matrix: %d endpoints x 5 roles = %d cells, plus 3 bad credentials each"
          % (len(matrix), cells))

    # Submitters: others' jobs do not exist for them.
    st, v = call(port, "GET", "/v1/jobs", bob)
    check(st == 200 and all(j["owner"] == "bob" for j in v["jobs"]), "bob lists only his jobs")
    check(v["total"] == 0, "bob sees none of alice's jobs: %s" % v)
    st, _ = call(port, "GET", "/v1/jobs/%d" % alice_job, bob)
    check(st == 404, "bob GET alice's job: want 404, got %d" % st)
    st, _ = call(port, "DELETE", "/v1/jobs/%d" % alice_job, bob)
    check(st == 404, "bob DELETE alice's job: want 404, got %d" % st)
    st, _ = call(port, "GET", "/v1/energy/jobs/%d" % alice_job, bob)
    check(st == 404, "bob GET alice's job energy: want 404, got %d" % st)
    st, v = call(port, "GET", "/v1/jobs/%d" % alice_job, tok["submitter"])
    check(st == 200 and v["state"] != "CANCELLED" and v["owner"] == "alice",
          "alice's job untouched by bob: %s" % v)
    st, v = call(port, "POST", "/v1/jobs", bob, {"command": "b", "work_seconds": 5, "owner": "alice"})
    bob_job = v["jobs"][0]["id"]
    st, v = call(port, "GET", "/v1/jobs/%d" % bob_job, BOOT)
    check(v["owner"] == "bob", "the owner comes from the token, not the body: %s" % v.get("owner"))
    st, v = call(port, "GET", "/v1/jobs", tok["operator"])
    owners = {j["owner"] for j in v["jobs"]}
    check({"alice", "bob"} <= owners, "operator sees every owner's jobs: %s" % owners)

    # Agents: one node each.
    hb = {"usage": {}}
    for method, path, body in (("POST", "/v1/nodes/n2/heartbeat", hb),
                               ("POST", "/v1/nodes", dict(NODE, name="n2")),
                               ("GET", "/v1/nodes/n2", None)):
        st, v = call(port, method, path, tok["agent"], body)
        check(st == 403 and "speaks for node 'n1'" in (v or {}).get("detail", ""),
              "agent n1 %s %s: want 403, got %d %s" % (method, path, st, v))
    st, _ = call(port, "POST", "/v1/nodes/n2/heartbeat", agent2, hb)
    check(st == 200, "agent n2 heartbeats for n2: %d" % st)

    # Revocation takes effect on the next request.
    st, _ = call(port, "GET", "/v1/apps", tok["operator"])
    check(st == 200, "operator works before revocation")
    st, v = call(port, "DELETE", "/v1/tokens/ops", BOOT)
    check(st == 200 and v.get("revoked_at"), "revoke ops: %d %s" % (st, v))
    st, v = call(port, "GET", "/v1/apps", tok["operator"])
    check(st == 401, "revoked operator token: want 401, got %d" % st)
    st, _ = call(port, "GET", "/v1/jobs", tok["submitter"])
    check(st == 200, "other tokens still work after a revocation")
    st, v = call(port, "GET", "/v1/tokens", BOOT)
    ops = [t for t in v["tokens"] if t["name"] == "ops"][0]
    check(ops["revoked_at"] is not None and "token" not in ops and "hash" not in ops,
          "token list shows revocation, no secrets: %s" % ops)

    # The audit log: who, what, when, result.
    st, v = call(port, "GET", "/v1/audit?limit=10000", BOOT)
    check(st == 200, "audit as admin")
    ents = v["entries"]

    def has(pred, what):
        check(any(pred(e) for e in ents), "audit entry: " + what)

    has(lambda e: e["principal"] == "bootstrap" and e["method"] == "POST" and
        e["path"] == "/v1/tokens" and e["status"] == 201, "token creation by bootstrap")
    has(lambda e: e["principal"] == "alice" and e["path"] == "/v1/jobs" and e["status"] == 201
        and e.get("detail") == "jobs=%d" % alice_job, "job submission by alice, naming the job")
    has(lambda e: e["principal"] == "bootstrap" and e["path"] == "/v1/tokens" and
        "name=ops role=operator" in e.get("detail", ""), "token creation names the token")
    has(lambda e: e["principal"] == "agent-n1" and e["node"] == "n1" and
        e["path"] == "/v1/nodes/n2/heartbeat" and e["result"] == "forbidden",
        "agent n1's spoofed heartbeat refused")
    has(lambda e: e["principal"] == "bob" and e["method"] == "DELETE" and e["status"] == 404,
        "bob's refused cancel")
    has(lambda e: e["path"] == "/v1/tokens/ops" and e["method"] == "DELETE" and e["status"] == 200,
        "revocation of ops")
    has(lambda e: e["principal"].startswith("token:") and e["status"] == 401 and
        e["path"] == "/v1/apps", "the revoked token's refused request, named by its id: %s"
        % [e for e in ents if e["status"] == 401][:3])
    has(lambda e: e["principal"] == "edge" and e["status"] == 403, "router refused elsewhere")
    check(all("time" in e and e["t"] > 0 for e in ents), "every entry has a time")
    check(not any(e["path"] == "/v1/nodes/n2/heartbeat" and e["status"] == 200 for e in ents),
          "accepted heartbeats (telemetry) are not audited")
    text = json.dumps(ents)
    check(not any(t[21:] in text for t in SECRETS.values()), "no secret in the audit log")
    for role in ("submitter", "agent", "router"):
        st, _ = call(port, "GET", "/v1/audit", tok[role])
        check(st == 403, "audit as %s: want 403, got %d" % (role, st))

    # The CLI.
    ctl = "http://127.0.0.1:%d" % port

    def wlm(*args, token=BOOT):
        env = dict(os.environ, WLM_CONTROLLER=ctl, WLM_TOKEN=token)
        return subprocess.run([BIN + "/wlm"] + list(args), capture_output=True, text=True,
                              env=env, timeout=30)

    r = wlm("token", "create", "--role", "submitter", "--name", "carol")
    carol = r.stdout.strip()
    check(r.returncode == 0 and carol.startswith("wlm_") and "shown only once" in r.stderr,
          "wlm token create: %s %s" % (r.stdout, r.stderr))
    SECRETS["carol"] = carol or "x" * 90
    r = wlm("token", "whoami", token=carol)
    check(r.returncode == 0 and "carol (role submitter)" in r.stdout, "whoami: %s" % r.stdout)
    r = wlm("job", "submit", "--name", "carols", "--", "true", token=carol)
    r = wlm("job", "list", token=carol)
    check(r.returncode == 0 and "OWNER" in r.stdout and "carol" in r.stdout and "alice" not in r.stdout,
          "wlm job list as carol shows her jobs with the owner: %s %s" % (r.stdout, r.stderr))
    r = wlm("job", "list")
    check("alice" in r.stdout and "carol" in r.stdout, "wlm job list as admin shows owners")
    r = wlm("token", "list")
    check(r.returncode == 0 and "carol" in r.stdout and "submitter" in r.stdout and carol[21:] not in r.stdout,
          "wlm token list: %s" % r.stdout)
    r = wlm("nodes", token=carol)
    check(r.returncode == 1 and "403" in r.stderr and "submitter" in r.stderr,
          "wlm nodes as a submitter: clear refusal: %s" % r.stderr)
    r = wlm("token", "revoke", "carol")
    check(r.returncode == 0 and "revoked" in r.stdout, "wlm token revoke: %s %s" % (r.stdout, r.stderr))
    r = wlm("token", "whoami", token=carol)
    check(r.returncode == 1, "revoked carol refused by the CLI")
    r = wlm("token", "create", "--role", "agent")
    check(r.returncode == 1 and "node" in r.stderr, "agent token without --node refused: %s" % r.stderr)
    r = wlm("token", "create", "--role", "root")
    check(r.returncode == 1 and "unknown role" in r.stderr, "unknown role refused: %s" % r.stderr)


if __name__ == "__main__":
    main()
