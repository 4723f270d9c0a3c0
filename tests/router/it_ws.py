#!/usr/bin/env python3
"""Upgrade/WebSocket pass-through in wlm-router over real sockets (loopback).

A Python WebSocket echo backend (RFC 6455 handshake and framing, stdlib
only). Checks what a user would notice: the handshake is forwarded (the
client's Sec-WebSocket-Accept is right), text and 1 MiB binary messages
echo through the router (plaintext and TLS), tunnels are not held against
the request concurrency limit, apps[].max_tunnels turns the next handshake
away with 503, idle tunnels are closed after apps[].tunnel_idle_ms, a
non-101 answer is an ordinary response, stats count tunnels and their bytes
per flow, and the access log marks the tunnel.
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from rtlib import BIN, procs, check, run, free_port, wait_port

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        k = s.recv(n - len(b))
        if not k:
            raise OSError("closed")
        b += k
    return b


def read_frame(s):
    h = recv_exact(s, 2)
    op, ln, masked = h[0] & 0x0F, h[1] & 0x7F, h[1] & 0x80
    if ln == 126:
        ln = struct.unpack(">H", recv_exact(s, 2))[0]
    elif ln == 127:
        ln = struct.unpack(">Q", recv_exact(s, 8))[0]
    mask = recv_exact(s, 4) if masked else None
    data = recv_exact(s, ln)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return op, data


def frame(op, data, mask=True):
    head = bytes([0x80 | op])
    m = 0x80 if mask else 0
    if len(data) < 126:
        head += bytes([m | len(data)])
    elif len(data) < 65536:
        head += bytes([m | 126]) + struct.pack(">H", len(data))
    else:
        head += bytes([m | 127]) + struct.pack(">Q", len(data))
    if not mask:
        return head + data
    key = os.urandom(4)
    # XOR by whole words (fast enough for 1 MiB in Python)
    n = len(data)
    k = int.from_bytes(key * ((n + 3) // 4), "little")
    d = int.from_bytes(data + b"\0" * ((4 - n % 4) % 4), "little")
    return head + key + (d ^ k).to_bytes(len(key * ((n + 3) // 4)), "little")[:n]


class EchoBackend:
    """WebSocket echo on any path; GET /plain answers 200 without upgrading."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.upgrades = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                k = s.recv(4096)
                if not k:
                    return
                buf += k
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            hdrs = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
                    for ln in lines[1:]}
            if lines[0].split()[1] == "/plain" or hdrs.get("upgrade", "").lower() != "websocket":
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nplain\n")
                s.close()
                return
            acc = base64.b64encode(hashlib.sha1((hdrs["sec-websocket-key"] + GUID).encode()).digest())
            self.upgrades += 1
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            # rest: bytes the client sent right behind its handshake
            s2 = _Prefixed(s, rest)
            while True:
                op, data = read_frame(s2)
                if op == 8:
                    s.sendall(frame(8, data, mask=False))
                    return
                s.sendall(frame(op, data, mask=False))
        except OSError:
            pass
        finally:
            s.close()


class _Prefixed:
    def __init__(self, s, pre):
        self.s, self.pre = s, pre

    def sendall(self, b):
        self.s.sendall(b)

    def recv(self, n):
        if self.pre:
            b, self.pre = self.pre[:n], self.pre[n:]
            return b
        return self.s.recv(n)


def ws_connect(port, path="/chat", host="chat", tls=False, early=b""):
    s = socket.create_connection(("127.0.0.1", port), 10)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        s = ctx.wrap_socket(s, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode() + early)
    buf = b""
    while b"\r\n\r\n" not in buf:
        k = s.recv(4096)
        if not k:
            return s, buf.decode(errors="replace"), False
        buf += k
    head, rest = buf.split(b"\r\n\r\n", 1)
    want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    ok = head.startswith(b"HTTP/1.1 101") and want.encode() in head
    return _Prefixed(s, rest) if rest else s, head.decode(), ok


def stats(aport):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{aport}/admin/stats", timeout=5).read())


def main():
    d = tempfile.mkdtemp(prefix="it_ws_")
    be = EchoBackend()
    crt, key = f"{d}/c.crt", f"{d}/c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=chat"], check=True, capture_output=True)
    cfg = {"limit": 1, "apps": [{"name": "chat", "hosts": ["chat"], "max_tunnels": 3,
                                 "tunnel_idle_ms": 800,
                                 "instances": [{"url": f"http://127.0.0.1:{be.port}"}]}]}
    cfgfile = f"{d}/router.json"
    with open(cfgfile, "w") as f:
        json.dump(cfg, f)
    port, tport, aport = free_port(), free_port(), free_port()
    alog = f"{d}/access.log"
    rlog = open(f"{d}/router.log", "w")
    r = subprocess.Popen([f"{BIN}/wlm-router", "--config", cfgfile, "--listen", f"127.0.0.1:{port}",
                          "--admin", f"127.0.0.1:{aport}", "--token", "", "--tls-listen",
                          f"127.0.0.1:{tport}", "--tls-cert", crt, "--tls-key", key,
                          "--access-log", alog], stderr=rlog)
    procs.append(r)
    wait_port(port)
    wait_port(tport)

    # --- echo through the tunnel
    s, head, ok = ws_connect(port)
    check(ok, "WebSocket handshake forwarded (101 with the right Sec-WebSocket-Accept)")
    s.sendall(frame(1, b"hello through the router"))
    op, data = read_frame(s)
    check(op == 1 and data == b"hello through the router", "text message echoed")
    big = os.urandom(1 << 20)
    s.sendall(frame(2, big))
    op, data = read_frame(s)
    check(op == 2 and data == big, "1 MiB binary message echoed")

    # --- a frame sent right behind the handshake is not lost
    s2, head, ok = ws_connect(port, early=frame(1, b"early"))
    op, data = read_frame(s2)
    check(ok and data == b"early", "bytes sent right behind the handshake reach the backend")

    # --- tunnels are not held against the limit (limit 1, 2 tunnels open)
    out = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/plain",
                                                        headers={"Host": "chat"}), timeout=5)
    check(out.status == 200 and out.read() == b"plain\n",
          "an ordinary request is served with 2 tunnels open and limit 1")

    # --- TLS tunnel
    s3, head, ok = ws_connect(tport, tls=True)
    s3.sendall(frame(1, b"over tls"))
    op, data = read_frame(s3)
    check(ok and data == b"over tls", "WebSocket over TLS echoed")

    # --- max_tunnels 3: the 4th handshake gets 503
    s4, head, ok = ws_connect(port)
    check(not ok and head.startswith("HTTP/1.1 503") and "Retry-After" in head,
          f"max_tunnels 3: 4th handshake -> 503 ({head.splitlines()[0] if head else head})")
    st = stats(aport)["flows"][0]
    check(st["tunnels_open"] == 3 and st["tunnels_total"] == 3,
          f"stats: {st['tunnels_open']} tunnels open, {st['tunnels_total']} in total")


    # --- close from the client: closed both ways, bytes counted
    s.sendall(frame(8, b"\x03\xe8"))
    op, _ = read_frame(s)
    check(op == 8, "close frame echoed")
    for x in (s, s2, s3):
        (x.s if isinstance(x, _Prefixed) else x).close()
    time.sleep(0.3)
    st = stats(aport)["flows"][0]
    check(st["tunnels_open"] == 0 and st["tunnel_bytes_in"] > (1 << 20) and
          st["tunnel_bytes_out"] > (1 << 20),
          f"after close: open {st['tunnels_open']}, bytes in {st['tunnel_bytes_in']} out {st['tunnel_bytes_out']}")

    # --- a non-101 answer to an Upgrade is an ordinary response
    s5, head, ok = ws_connect(port, path="/plain")
    check(not ok and head.startswith("HTTP/1.1 200"), "upgrade refused by the upstream: its 200 passes")

    # --- idle tunnel closed after tunnel_idle_ms (800 ms)
    s6, head, ok = ws_connect(port)
    t0 = time.time()
    raw = s6.s if isinstance(s6, _Prefixed) else s6
    raw.settimeout(5)
    try:
        got = raw.recv(10)
    except OSError:
        got = None
    dt = time.time() - t0
    check(ok and got == b"" and 0.5 < dt < 3, f"idle tunnel closed after {dt:.2f} s")
    raw.close()

    with open(alog) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    t = [x for x in lines if x["tunnel"]]
    check(len(t) >= 4 and any(x["status"] == 101 and x["bytes_in"] > (1 << 20) for x in t),
          f"access log marks tunnels with status 101 and their bytes ({len(t)} lines)")
    check(sum(1 for x in t if x["tls"] in ("TLSv1.2", "TLSv1.3") and x["alpn"] == "http/1.1") == 1
          and sum(1 for x in t if x["tls"] == "") == len(t) - 1,
          "access log: TLS version and ALPN for the TLS tunnel, empty for plaintext ones")

    r.terminate()
    rc = r.wait(20)
    rlog.flush()
    with open(f"{d}/router.log") as f:
        log = f.read()
    check(rc == 0 and "Sanitizer" not in log, f"router exits cleanly (rc {rc})")


run(main, "all WebSocket checks passed")
