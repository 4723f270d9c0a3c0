#!/usr/bin/env python3
"""TLS cost on the control plane: one wlm-controller over HTTPS and one over
plain HTTP (same binary, same machine), the same client for both.

Prints, for GET /v1/whoami with a bearer token (the authenticator and a
token lookup run on every request):
  - a request on a fresh connection (TCP + TLS handshake + request), median
    and p90 over N requests;
  - a request on a kept-alive connection, median and p90;
  - the handshake's share: fresh TLS minus fresh plain.
Usage: bench/tls/bench_tls.py [--bin DIR] [-n N]   (default build/release/bin)
The client is Python's http.client/ssl: absolute figures include its own
overhead, the differences are what TLS adds.
"""
import argparse
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def q(xs, f):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(f * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(top, "build/release/bin"))
    ap.add_argument("-n", type=int, default=300)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="wlm-bench-tls-")
    lib = os.path.join(top, "scripts/lib.sh")
    subprocess.run(["bash", "-c", '. "%s"; wlm_make_ca "%s"; wlm_make_cert "%s" srv '
                    '"IP:127.0.0.1"' % (lib, d, d)], check=True)
    tok = "bench-" + os.urandom(8).hex()
    procs = []
    ports = {}
    try:
        for mode in ("plain", "tls"):
            port = free_port()
            args = [a.bin + "/wlm-controller", "--listen-port", str(port), "--db",
                    "%s/%s.db" % (d, mode), "--log-level", "warn"]
            if mode == "tls":
                args += ["--tls-cert", d + "/srv.pem", "--tls-key", d + "/srv.key"]
            procs.append(subprocess.Popen(args, env=dict(os.environ, WLM_TOKEN=tok)))
            ports[mode] = port
        time.sleep(1.5)
        ctx = ssl.create_default_context(cafile=d + "/ca.pem")
        hdr = {"Authorization": "Bearer " + tok}

        def conn(mode):
            if mode == "tls":
                return http.client.HTTPSConnection("127.0.0.1", ports[mode], context=ctx)
            return http.client.HTTPConnection("127.0.0.1", ports[mode])

        res = {}
        for mode in ("plain", "tls"):
            fresh, alive = [], []
            for _ in range(a.n):
                t0 = time.perf_counter()
                c = conn(mode)
                c.request("GET", "/v1/whoami", headers=hdr)
                r = c.getresponse()
                r.read()
                fresh.append(time.perf_counter() - t0)
                c.close()
                assert r.status == 200, r.status
            c = conn(mode)
            for _ in range(a.n):
                t0 = time.perf_counter()
                c.request("GET", "/v1/whoami", headers=hdr)
                r = c.getresponse()
                r.read()
                alive.append(time.perf_counter() - t0)
            c.close()
            res[mode] = (fresh, alive)
            print("%-5s fresh connection: median %.3f ms  p90 %.3f ms | kept alive: median %.3f ms"
                  "  p90 %.3f ms  (n=%d)" % (mode, statistics.median(fresh) * 1e3,
                                              q(fresh, 0.9) * 1e3, statistics.median(alive) * 1e3,
                                              q(alive, 0.9) * 1e3, a.n))
        print("TLS handshake (fresh TLS - fresh plain, medians): %.3f ms; per request on a "
              "kept-alive connection: +%.3f ms" % (
                  (statistics.median(res["tls"][0]) - statistics.median(res["plain"][0])) * 1e3,
                  (statistics.median(res["tls"][1]) - statistics.median(res["plain"][1])) * 1e3))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    sys.exit(main())
