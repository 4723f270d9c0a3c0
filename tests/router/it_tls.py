#!/usr/bin/env python3
"""TLS termination in wlm-router over real sockets (loopback).

Certificates are made here with the openssl CLI. Checks what a user would
notice: ALPN picks h2 (and h2 requests work over TLS) or http/1.1; SNI picks
the application's certificate, else the default; TLS 1.2 at least with an
AEAD suite; sessions resume (tickets) across 2 workers; a silent client is
dropped after the handshake timeout; a bad certificate or a key that does
not match is refused with the file named (at start, on PUT /admin/config and
on SIGHUP) and the old certificate keeps serving; certificates reload on
SIGHUP and on PUT /admin/config without dropping an open connection; bodies
stream through TLS.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

from rtlib import BIN, procs, check, run, free_port, wait_port

MIB = 1 << 20


def mkcert(d, name, cn, ec=False):
    key, crt = f"{d}/{name}.key", f"{d}/{name}.crt"
    alg = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec else ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *alg, "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}"],
                   check=True, capture_output=True)
    return crt, key


def client_ctx(alpn=None, maxv=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maxv:
        ctx.maximum_version = maxv
    return ctx


def tls_connect(port, sni="shop.test", alpn=None, maxv=None, session=None, ctx=None):
    ctx = ctx or client_ctx(alpn, maxv)
    raw = socket.create_connection(("127.0.0.1", port), 10)
    return ctx.wrap_socket(raw, server_hostname=sni, session=session)


def peer_cn(s):
    der = s.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                         capture_output=True).stdout.decode()
    return out.strip().split("CN", 1)[-1].lstrip(" =")


def h1_get(s, path, host="shop.test", close=False):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{'Connection: close' if close else ''}"
              f"\r\n\r\n".encode())
    return h1_get_response(s)


def h1_get_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            return None, b""
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
    while len(body) < n:
        body += s.recv(65536)
    return head.split(b"\r\n")[0].decode(), body


def h2_get(s, path, authority="shop.test"):
    """One GET on stream 1 over an established connection (h2 via ALPN)."""
    def lit(idx, value):
        v = value.encode()
        return bytes([idx, len(v)]) + v
    frame = lambda t, f, sid, p: len(p).to_bytes(3, "big") + bytes([t, f]) + sid.to_bytes(4, "big") + p
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") +
              frame(1, 0x5, 1, b"\x82\x87" + lit(4, path) + lit(1, authority)))  # GET, https
    buf, status200, body = b"", False, b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            b = s.recv(65536)
            if not b:
                return status200, body
            buf += b
        n = int.from_bytes(buf[:3], "big")
        t, f, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
        payload, buf = buf[9:9 + n], buf[9 + n:]
        if t == 4 and not f & 1:
            s.sendall(frame(4, 1, 0, b""))
        if sid == 1 and t == 1:
            status200 = payload[:1] == b"\x88"
        if sid == 1 and t == 0:
            body += payload
        if sid == 1 and t in (0, 1) and f & 1:
            return status200, body


def admin(aport, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{aport}{path}", method=method,
                                 data=body.encode() if body else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    d = tempfile.mkdtemp(prefix="it_tls_")
    dcrt, dkey = mkcert(d, "default", "default.test")
    scrt, skey = mkcert(d, "shop", "shop.test", ec=True)
    ncrt, nkey = mkcert(d, "shopnew", "shop-new.test")
    bad = f"{d}/garbage.crt"
    with open(bad, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    be = subprocess.Popen([f"{BIN}/rt_backend", "--port", "0", "--name", "b"], stdout=subprocess.PIPE)
    procs.append(be)
    bport = int(be.stdout.readline())

    live_crt, live_key = f"{d}/live.crt", f"{d}/live.key"
    shutil.copy(scrt, live_crt)
    shutil.copy(skey, live_key)

    def config(crt=live_crt, key=live_key):
        return json.dumps({"apps": [
            {"name": "shop", "hosts": ["shop.test"], "tls": {"cert": crt, "key": key},
             "instances": [{"url": f"http://127.0.0.1:{bport}"}]},
            {"name": "any", "instances": [{"url": f"http://127.0.0.1:{bport}"}]}]})
    cfgfile = f"{d}/router.json"
    with open(cfgfile, "w") as f:
        f.write(config())

    # --- a bad default certificate: refused at start, file named
    out = subprocess.run([f"{BIN}/wlm-router", "--config", cfgfile, "--listen", "127.0.0.1:0",
                          "--admin", "off", "--tls-listen", "127.0.0.1:0", "--tls-cert", bad,
                          "--tls-key", dkey], capture_output=True, text=True, timeout=20)
    check(out.returncode == 2 and bad in out.stderr, f"bad --tls-cert refused at start naming the file: {out.stderr.strip()[:120]}")
    out = subprocess.run([f"{BIN}/wlm-router", "--config", cfgfile, "--listen", "127.0.0.1:0",
                          "--admin", "off", "--tls-listen", "127.0.0.1:0", "--tls-cert", dcrt,
                          "--tls-key", skey], capture_output=True, text=True, timeout=20)
    check(out.returncode == 2 and skey in out.stderr and "match" in out.stderr,
          "key that does not match the certificate refused at start")

    port, tport, aport = free_port(), free_port(), free_port()
    rlog = open(f"{d}/router.log", "w")
    r = subprocess.Popen([f"{BIN}/wlm-router", "--config", cfgfile, "--listen", f"127.0.0.1:{port}",
                          "--admin", f"127.0.0.1:{aport}", "--token", "", "--workers", "2",
                          "--tls-listen", f"127.0.0.1:{tport}", "--tls-cert", dcrt, "--tls-key", dkey,
                          "--tls-handshake-timeout-ms", "500", "--max-body-bytes", str(64 * MIB)],
                         stderr=rlog)
    procs.append(r)
    wait_port(tport)
    wait_port(aport)

    # --- ALPN
    s = tls_connect(tport, alpn=["h2", "http/1.1"])
    check(s.selected_alpn_protocol() == "h2", "ALPN: h2 chosen when offered")
    ok, body = h2_get(s, "/alpn-h2")
    check(ok and body == b"hello from backend\n", "h2 over TLS reaches the HTTP/2 path")
    s.close()
    s = tls_connect(tport, alpn=["http/1.1"])
    check(s.selected_alpn_protocol() == "http/1.1", "ALPN: http/1.1 when only it is offered")
    st, body = h1_get(s, "/alpn-h1")
    check(st == "HTTP/1.1 200 OK" and body == b"hello from backend\n", "HTTP/1.1 over TLS")
    s.close()
    s = tls_connect(tport)
    st, body = h1_get(s, "/no-alpn")
    check(s.selected_alpn_protocol() is None and st == "HTTP/1.1 200 OK", "no ALPN: HTTP/1.1 works")
    s.close()
    out = subprocess.run(["nghttp", "-v", f"https://127.0.0.1:{tport}/nghttp"], capture_output=True,
                         text=True, timeout=20)
    check(out.returncode == 0 and "hello from backend" in out.stdout, "nghttp over TLS (h2)")

    # --- SNI and versions
    s = tls_connect(tport, sni="shop.test")
    check(peer_cn(s) == "shop.test", "SNI shop.test gets the application's certificate")
    check(s.version() in ("TLSv1.2", "TLSv1.3"), f"TLS version {s.version()}")
    s.close()
    s = tls_connect(tport, sni="unknown.test")
    check(peer_cn(s) == "default.test", "unknown SNI gets the default certificate")
    s.close()
    s = tls_connect(tport, maxv=ssl.TLSVersion.TLSv1_2)
    cipher = s.cipher()[0]
    check(s.version() == "TLSv1.2" and "ECDHE" in cipher and ("GCM" in cipher or "CHACHA" in cipher),
          f"TLS 1.2 client gets a forward-secret AEAD suite ({cipher})")
    s.close()
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tport}", "-tls1_1"],
                         input="", capture_output=True, text=True, timeout=20)
    check("Protocol  : TLSv1.1" not in out.stdout and "New, (NONE)" in out.stdout + out.stderr
          or out.returncode != 0, "TLS 1.1 refused")

    # --- session resumption (tickets) across 2 workers
    ctx = client_ctx(maxv=ssl.TLSVersion.TLSv1_2)
    s = tls_connect(tport, ctx=ctx)
    sess = s.session
    s.close()
    reused = 0
    for _ in range(6):
        s = tls_connect(tport, ctx=ctx, session=sess)
        reused += s.session_reused
        s.close()
    check(reused == 6, f"TLS sessions resume across workers ({reused}/6)")
    # a config push that names the same, unchanged files keeps the tickets valid
    st, _ = admin(aport, "PUT", "/admin/config", config())
    s = tls_connect(tport, ctx=ctx, session=sess)
    check(st == 200 and s.session_reused, "sessions still resume after a config push with the same certificate files")
    s.close()

    # --- handshake timeout
    c = socket.create_connection(("127.0.0.1", tport), 5)
    t0 = time.time()
    c.settimeout(5)
    try:
        got = c.recv(100)
    except (socket.timeout, ConnectionResetError):
        got = None
    c.close()
    dt = time.time() - t0
    check(got == b"" and 0.3 < dt < 3, f"silent TLS client dropped after the handshake timeout ({dt:.2f} s)")

    # --- bad app certificate on PUT /admin/config: refused, file named, old cert serves
    st, body = admin(aport, "PUT", "/admin/config", config(crt=bad))
    check(st == 400 and bad in body.decode(), f"PUT with a bad certificate -> 400 naming it: {body.decode().strip()[:140]}")
    st, body = admin(aport, "PUT", "/admin/config", config(crt=scrt, key=nkey))
    check(st == 400 and nkey in body.decode(), "PUT with a key not matching -> 400 naming it")
    s = tls_connect(tport, sni="shop.test")
    check(peer_cn(s) == "shop.test" and h1_get(s, "/after-bad")[0] == "HTTP/1.1 200 OK",
          "old certificate keeps serving after a refused config")
    s.close()

    # --- reload on SIGHUP without dropping an open connection
    keep = tls_connect(tport, sni="shop.test")
    check(h1_get(keep, "/before")[0] == "HTTP/1.1 200 OK", "keep-alive TLS connection open")
    shutil.copy(ncrt, live_crt)
    shutil.copy(nkey, live_key)
    r.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    s = tls_connect(tport, sni="shop.test")
    check(peer_cn(s) == "shop-new.test", "SIGHUP: new connections get the new certificate")
    s.close()
    check(h1_get(keep, "/after-reload")[0] == "HTTP/1.1 200 OK", "open connection kept across the reload")
    keep.close()
    # SIGHUP with a broken certificate file: refused, logged with the file, old kept
    with open(live_crt, "w") as f:
        f.write("garbage\n")
    r.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    s = tls_connect(tport, sni="shop.test")
    check(peer_cn(s) == "shop-new.test", "SIGHUP with a broken certificate keeps the old one")
    s.close()
    rlog.flush()
    with open(f"{d}/router.log") as f:
        log = f.read()
    check("reload refused" in log and live_crt in log, "refused reload logged naming the file")
    # PUT /admin/config naming new files
    st, _ = admin(aport, "PUT", "/admin/config", config(crt=scrt, key=skey))
    s = tls_connect(tport, sni="shop.test")
    check(st == 200 and peer_cn(s) == "shop.test", "PUT /admin/config naming new files switches the certificate")
    s.close()

    # --- TLS on both workers, many connections
    okc = 0
    for i in range(20):
        s = tls_connect(tport, sni="shop.test", alpn=["h2"] if i % 2 else ["http/1.1"])
        if i % 2:
            okc += h2_get(s, f"/w{i}")[0]
        else:
            okc += h1_get(s, f"/w{i}")[0] == "HTTP/1.1 200 OK"
        s.close()
    check(okc == 20, f"20 TLS connections over 2 workers, h2 and http/1.1 ({okc}/20)")

    # --- a 32 MiB upload streams through TLS to the backend
    s = tls_connect(tport, sni="shop.test")
    blk = bytes(range(256)) * 4096
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: %d\r\n\r\n" % (32 * MIB))
    for _ in range(32):
        s.sendall(blk)
    st, body = h1_get_response(s)
    s.close()
    check(st == "HTTP/1.1 200 OK" and body == b"hello from backend\n", "32 MiB upload through TLS")

    r.terminate()
    rc = r.wait(20)
    rlog.flush()
    with open(f"{d}/router.log") as f:
        log = f.read()
    check(rc == 0 and "Sanitizer" not in log, f"router exits cleanly (rc {rc})")
    shutil.rmtree(d, ignore_errors=True)


run(main, "all TLS checks passed")
