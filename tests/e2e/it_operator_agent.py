#!/usr/bin/env python3
"""A stand-in node agent for the operator walkthrough (issue 19, item 6): it
registers with the controller, heartbeats like a test-driver agent, and
carries out every action at once, except CPU caps (resize, app_resize),
which it refuses as "unsupported", as the libvirt test driver or an agent
without a cgroup does, and (--full) job starts, which it refuses as an
agent whose image pool is full does. It counts the actions it was sent per kind and
serves the counts at GET /counts.

  it_operator_agent.py --controller URL --token T --name NAME --port-file F
"""
import argparse
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
instances = {}
lock = threading.Lock()


def post(url, token, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--controller", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--full", action="store_true",
                    help="refuse every job start as the image pool does when it is full, "
                         "without reporting the pool in the heartbeat")
    a = ap.parse_args()

    def complete(aid, kind):
        time.sleep(0.05)
        if kind == "start" and a.full:
            body = {"status": "failed", "error": "limit_exceeded",
                    "detail": "image pool is at its maximum of 8 images"}
        elif kind in ("resize", "app_resize"):
            body = {"status": "failed", "error": "unsupported",
                    "detail": kind + ": CPU cap unsupported by this driver"}
        else:
            body = {"status": "succeeded", "result": {}}
        try:
            post(f"{a.controller}/v1/actions/{aid}/complete", a.token, body)
        except Exception:  # noqa: BLE001 - the controller may be gone at the end
            pass

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with lock:
                self.reply(200, dict(counts))

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}")
            kind, aid = body.get("kind", ""), body.get("id", "")
            with lock:
                counts[kind] = counts.get(kind, 0) + 1
                if kind == "app_start":
                    instances[body.get("instance")] = True
                elif kind == "app_stop":
                    instances.pop(body.get("instance"), None)
            self.reply(202, {"id": aid, "status": "accepted"})
            threading.Thread(target=complete, args=(aid, kind), daemon=True).start()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    post(f"{a.controller}/v1/nodes", a.token,
         {"name": a.name, "cores": 4, "mhz": 1000, "memory_mb": 4096,
          "labels": {"pool": "full" if a.full else "ok"},
          "agent_url": f"http://127.0.0.1:{port}"})
    with open(a.port_file, "w") as f:
        f.write(str(port))
    while True:
        with lock:
            procs = [{"instance": i, "state": "running", "cpu_mhz": 0.0} for i in instances]
        try:
            post(f"{a.controller}/v1/nodes/{a.name}/heartbeat", a.token,
                 {"usage": {"domains": [], "processes": procs}, "power": {"state": "on"},
                  "driver": "test"})
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.3)


if __name__ == "__main__":
    main()
