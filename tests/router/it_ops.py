#!/usr/bin/env python3
"""Operations of wlm-router over real sockets (loopback): SIGTERM drains
(no request in flight lost, new connections refused, exit when done, or at
--drain-timeout), SIGHUP reloads the config file (a bad file is refused and
named, the old config stays), and --access-log writes one JSON line per
request with the documented fields.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from rtlib import BIN, procs, check, run, free_port, wait_port


def backend(delay_ms):
    p = subprocess.Popen([f"{BIN}/rt_backend", "--port", "0", "--delay-ms", str(delay_ms)],
                         stdout=subprocess.PIPE)
    procs.append(p)
    return int(p.stdout.readline())


def get(port, path, keep=None):
    """GET over a fresh connection (or `keep`, a list holding one open socket)."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf or not buf.endswith(b"\n"):
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    return buf.split(b"\r\n", 1)[0].decode()


def router(d, cfg, *extra):
    port, aport = free_port(), free_port()
    cfgfile = f"{d}/router.json"
    with open(cfgfile, "w") as f:
        f.write(json.dumps(cfg))
    log = open(f"{d}/router.log", "a")
    r = subprocess.Popen([f"{BIN}/wlm-router", "--config", cfgfile, "--listen", f"127.0.0.1:{port}",
                          "--admin", f"127.0.0.1:{aport}", "--token", "", *extra], stderr=log)
    procs.append(r)
    wait_port(port)
    wait_port(aport)
    return r, port, aport, cfgfile


def main():
    d = tempfile.mkdtemp(prefix="it_ops_")
    slow = backend(800)
    cfg = {"limit": 64, "apps": [{"name": "shop", "instances": [{"url": f"http://127.0.0.1:{slow}"}]}]}
    alog = f"{d}/access.log"
    r, port, aport, cfgfile = router(d, cfg, "--workers", "2", "--access-log", alog,
                                     "--drain-timeout", "5000")

    # --- SIGHUP reloads the config file; a bad file is refused and named
    cfg["limit"] = 7
    with open(cfgfile, "w") as f:
        f.write(json.dumps(cfg))
    r.send_signal(signal.SIGHUP)
    time.sleep(0.4)
    got = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{aport}/admin/config", timeout=5).read())
    check(got.get("limit") == 7, "SIGHUP: the config file is read again")
    with open(cfgfile, "w") as f:
        f.write('{"limit": 0}')
    r.send_signal(signal.SIGHUP)
    time.sleep(0.4)
    got = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{aport}/admin/config", timeout=5).read())
    with open(f"{d}/router.log") as f:
        log = f.read()
    check(got.get("limit") == 7 and "reload refused" in log and "limit" in log,
          "SIGHUP with a bad file: refused (field named), old config kept")
    st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{aport}/admin/stats", timeout=5).read())
    check(st["limit"] == 7, "the reloaded limit is in force")

    # --- SIGTERM with requests in flight: none lost
    results = []

    def one(i):
        try:
            results.append(get(port, f"/drain{i}"))
        except OSError as e:
            results.append(repr(e))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in ths:
        t.start()
    h2 = subprocess.Popen(["nghttp", "-n", "-m", "3", f"http://127.0.0.1:{port}/h2drain"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    t0 = time.time()
    r.send_signal(signal.SIGTERM)
    time.sleep(0.15)
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        refused = False
    except OSError:
        refused = True
    for t in ths:
        t.join()
    out, err = h2.communicate(timeout=20)
    rc = r.wait(10)
    dt = time.time() - t0
    check(refused, "after SIGTERM new connections are refused")
    check(results.count("HTTP/1.1 200 OK") == 10, f"10 HTTP/1.1 requests in flight all answered: {results}")
    check(h2.returncode == 0 and "HTTP/2 error" not in err,
          f"3 h2 streams in flight finished (nghttp rc {h2.returncode})")
    check(rc == 0 and dt < 3, f"router exited (rc {rc}) {dt:.2f} s after SIGTERM, once the work was done")

    # --- the access log: one JSON line per request, all fields
    with open(alog) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    drained = [x for x in lines if x["path"].startswith("/drain")]
    want = {"time", "request_id", "flow", "method", "path", "status", "bytes_in", "bytes_out",
            "queue_wait_ms", "upstream_ms", "tls", "alpn"}
    check(len(drained) == 10 and all(want <= set(x) for x in drained),
          f"access log: a JSON line per request with {sorted(want)}")
    x = drained[0]
    check(x["flow"] == "shop/default" and x["method"] == "GET" and x["status"] == 200 and
          x["bytes_out"] == len("hello from backend\n") and x["upstream_ms"] >= 700,
          f"access log line content: {x}")
    check(len([x for x in lines if x["path"] == "/h2drain"]) == 3, "h2 requests logged too")

    # --- drain timeout: a request that takes too long does not hold the exit
    stuck = backend(5000)
    cfg = {"apps": [{"name": "shop", "instances": [{"url": f"http://127.0.0.1:{stuck}"}]}]}
    r, port, aport, cfgfile = router(d, cfg, "--drain-timeout", "400")
    th = threading.Thread(target=one, args=(99,))
    th.start()
    time.sleep(0.3)
    t0 = time.time()
    r.send_signal(signal.SIGTERM)
    rc = r.wait(10)
    dt = time.time() - t0
    th.join()
    check(rc == 0 and 0.3 < dt < 2.0, f"--drain-timeout 400: exit after {dt:.2f} s with a 5 s request in flight")
    # --- SIGINT stops at once
    r, port, aport, cfgfile = router(d, cfg)
    t0 = time.time()
    r.send_signal(signal.SIGINT)
    rc = r.wait(10)
    check(rc == 0 and time.time() - t0 < 1.5, "SIGINT stops at once")
    with open(f"{d}/router.log") as f:
        log = f.read()
    check("Sanitizer" not in log, "no sanitizer report")


run(main, "all operations checks passed")
