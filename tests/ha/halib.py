"""halib - etcd members and wlm-controllers on loopback for the HA tests and
benchmarks (stdlib only). Every process gets free ports and its own data
directory under one scratch directory."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("WLM_BIN_DIR", "")
TOKEN = "ha-test-token"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Cluster:
    """n etcd members and m controllers."""

    def __init__(self, name, members=3, controllers=2, lease_ttl=3, extra=()):
        if not shutil.which("etcd"):
            sys.exit("FAIL: etcd not found (scripts/install-deps installs etcd-server)")
        self.dir = tempfile.mkdtemp(prefix="wlm-%s-" % name)
        self.procs = []
        self.lease_ttl = lease_ttl
        self.extra = list(extra)
        self.members = []
        for i in range(members):
            self.members.append({"name": "e%d" % i, "client": free_port(), "peer": free_port(),
                                 "data": os.path.join(self.dir, "e%d" % i), "proc": None})
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (m["name"], m["peer"])
                                for m in self.members)
        for i in range(members):
            self.start_member(i)
        self.endpoints = ",".join("127.0.0.1:%d" % m["client"] for m in self.members)
        self.wait_etcd()
        self.ctls = []
        for i in range(controllers):
            self.ctls.append({"port": free_port(), "proc": None, "i": i,
                              "log": os.path.join(self.dir, "c%d.log" % i)})
        self.urls = ["http://127.0.0.1:%d" % c["port"] for c in self.ctls]

    # ---- etcd
    def start_member(self, i):
        m = self.members[i]
        log = open(os.path.join(self.dir, "%s.log" % m["name"]), "ab")
        m["proc"] = subprocess.Popen(
            ["etcd", "--name", m["name"], "--data-dir", m["data"],
             "--listen-client-urls", "http://127.0.0.1:%d" % m["client"],
             "--advertise-client-urls", "http://127.0.0.1:%d" % m["client"],
             "--listen-peer-urls", "http://127.0.0.1:%d" % m["peer"],
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % m["peer"],
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", os.path.basename(self.dir),
             "--heartbeat-interval", "100", "--election-timeout", "1000",
             # a request's writes in one transaction (docs/ha.md)
             "--max-txn-ops", "10000", "--max-request-bytes", "10485760",
             "--logger", "zap", "--log-outputs", "stderr"],
            stdout=log, stderr=log, start_new_session=True)

    def kill_member(self, i, sig=signal.SIGKILL):
        p = self.members[i]["proc"]
        p.send_signal(sig)
        if sig == signal.SIGKILL:
            p.wait()

    def etcd_healthy(self, i):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.members[i]["client"], timeout=1)
            c.request("GET", "/health")
            r = c.getresponse()
            ok = r.status == 200 and json.loads(r.read()).get("health") == "true"
            c.close()
            return ok
        except Exception:
            return False

    def wait_etcd(self, limit=30, which=None):
        end = time.time() + limit
        which = range(len(self.members)) if which is None else which
        while time.time() < end:
            if all(self.etcd_healthy(i) for i in which):
                return
            time.sleep(0.2)
        raise AssertionError("etcd members did not become healthy")

    # ---- controllers
    def start_ctl(self, i, *args):
        c = self.ctls[i]
        log = open(c["log"], "ab")
        c["proc"] = subprocess.Popen(
            [os.path.join(BIN, "wlm-controller"), "--store", "etcd://" + self.endpoints,
             "--listen-port", str(c["port"]), "--token", TOKEN,
             "--db", os.path.join(self.dir, "c%d.db" % i), "--lease-ttl-s", str(self.lease_ttl)]
            + self.extra + list(args),
            stdout=log, stderr=log, start_new_session=True,
            env=dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                     ":detect_leaks=0"))
        return c["proc"]

    def role(self, i, timeout=0.5):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.ctls[i]["port"], timeout=timeout)
            c.request("GET", "/healthz")
            r = c.getresponse()
            d = json.loads(r.read())
            c.close()
            return d.get("role")
        except Exception:
            return None

    def leader(self):
        for i in range(len(self.ctls)):
            if self.ctls[i]["proc"] and self.ctls[i]["proc"].poll() is None and \
                    self.role(i) == "leader":
                return i
        return None

    def wait_leader(self, limit=15, exclude=None):
        end = time.time() + limit
        while time.time() < end:
            for i in range(len(self.ctls)):
                if i != exclude and self.ctls[i]["proc"] and self.role(i, 0.3) == "leader":
                    return i
            time.sleep(0.05)
        raise AssertionError("no leader within %ss" % limit)

    def wait_standby(self, i, limit=15):
        end = time.time() + limit
        while time.time() < end:
            if self.role(i) == "standby":
                return
            time.sleep(0.1)
        raise AssertionError("controller %d did not become a standby" % i)

    def stop(self):
        for c in self.ctls:
            p = c["proc"]
            if p and p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                except OSError:
                    pass
        for m in self.members:
            p = m["proc"]
            if p and p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                except OSError:
                    pass
        for p in [c["proc"] for c in self.ctls] + [m["proc"] for m in self.members]:
            if p:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def cleanup(self, ok):
        self.stop()
        if ok and not os.environ.get("HA_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept", self.dir, file=sys.stderr)
            for f in sorted(os.listdir(self.dir)):
                if f.endswith(".log") and f.startswith("c"):
                    print("== %s (tail)" % f, file=sys.stderr)
                    with open(os.path.join(self.dir, f), errors="replace") as fh:
                        print("".join(fh.readlines()[-25:]), file=sys.stderr)


class Client:
    """A client of several controllers: the one that answered last first;
    on a connection failure or a 503 the next; 307 followed."""

    def __init__(self, urls, token=TOKEN):
        self.hosts = [u.split("//")[1] for u in urls]
        self.cur = 0
        self.token = token
        self.lock = threading.Lock()

    def once(self, hostport, method, path, body=None, headers=None, timeout=5):
        host, port = hostport.split(":")
        h = {"Authorization": "Bearer " + self.token}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            c.request(method, path, None if body is None else json.dumps(body), h)
            r = c.getresponse()
            return r.status, r.read(), r.getheader("Location")
        finally:
            c.close()

    def request(self, method, path, body=None, headers=None, deadline=20, per_try=5,
                retry_503=True):
        """(status, parsed body or None); (0, error text) when nothing answered."""
        end = time.time() + deadline
        with self.lock:
            i = self.cur
        last = (0, "no attempt")
        backoff = 0.05
        while time.time() < end:
            hp = self.hosts[i % len(self.hosts)]
            try:
                st, data, loc = self.once(hp, method, path, body, headers, per_try)
                if st in (307, 308) and loc:
                    hp2 = loc.split("//")[1].split("/")[0]
                    st, data, loc = self.once(hp2, method, path, body, headers, per_try)
                    if hp2 in self.hosts:
                        i = self.hosts.index(hp2)
                try:
                    parsed = json.loads(data) if data else None
                except ValueError:
                    parsed = None
                if (st == 503 and retry_503) or st in (307, 308):
                    # 503: no leader yet; 307 again: the leader just changed
                    last = (st, parsed)
                    i += 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 0.5)
                    continue
                with self.lock:
                    self.cur = i % len(self.hosts)
                return st, parsed
            except (OSError, http.client.HTTPException) as e:
                last = (0, str(e))
                i += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
        return last


def all_jobs(client):
    st, d = client.request("GET", "/v1/jobs?limit=1000000", deadline=30)
    check(st == 200, "GET /v1/jobs answered %s %s" % (st, d))
    return d["jobs"]
