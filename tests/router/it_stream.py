#!/usr/bin/env python3
"""Streaming through wlm-router over real sockets (loopback).

A Python backend (threads) serves large bodies generated on the fly and
swallows large uploads, so nothing but the router can buffer. Checks what a
user would notice: 1 GiB down and 1 GiB up pass with the router's RSS
(/proc/PID/status VmRSS, sampled all along) under 64 MB; the first byte of
a slow response reaches the client before the upstream finishes; chunked
both ways; an HTTP/2 client that does not read (flow-control window closed,
then a huge window but no socket reads) holds the upstream back instead of
filling the router's memory; many concurrent downloads keep RSS bounded; a
client that leaves mid-download frees the upstream; a small POST is still
retried away from a dead instance... (only idempotent ones are).
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib

from rtlib import BIN, failures, procs, check, free_port

GIB = 1 << 30
MIB = 1 << 20
BLOCK = bytes(range(256)) * 1024  # 256 KiB pattern


# ------------------------------------------------------------------ backend

class Backend:
    """GET /big/N[/chunked]: N pattern bytes; GET /slow: a head and 5 bytes,
    then the rest 1.5 s later; POST /sink: reads the body (Content-Length or
    chunked), answers {"bytes":n,"crc":c}. sent[path] counts bytes written."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(256)
        self.port = self.ls.getsockname()[1]
        self.sent = {}
        self.finished = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        f = s.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                hdrs = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
                if method == "POST" and path.startswith("/sink"):
                    self.sink(s, f, hdrs)
                elif path.startswith("/big/"):
                    self.big(s, path, head_only=method == "HEAD")
                elif path == "/slow":
                    self.slow(s)
                else:
                    body = b"hello\n"
                    if "content-length" in hdrs:
                        body = f.read(int(hdrs["content-length"]))
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" %
                              (len(body), body))
        except (OSError, ValueError):
            pass
        finally:
            s.close()

    def big(self, s, path, head_only=False):
        parts = path.split("/")
        n, chunked = int(parts[2]), len(parts) > 3 and parts[3] == "chunked"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % n
        s.sendall(head)
        if head_only:
            return
        left = n
        with self.lock:
            self.sent[path] = 0
            self.finished[path] = None
        while left:
            k = min(left, len(BLOCK))
            if chunked:
                s.sendall(b"%x\r\n" % k + BLOCK[:k] + b"\r\n")
            else:
                s.sendall(BLOCK[:k])
            left -= k
            with self.lock:
                self.sent[path] += k
        if chunked:
            s.sendall(b"0\r\n\r\n")
        with self.lock:
            self.finished[path] = time.time()

    def slow(self, s):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
        time.sleep(1.5)
        s.sendall(b"-rest")
        with self.lock:
            self.finished["/slow"] = time.time()

    def sink(self, s, f, hdrs):
        n, crc = 0, 0
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if size == 0:
                    f.readline()
                    break
                left = size
                while left:
                    b = f.read(min(left, MIB))
                    crc = zlib.crc32(b, crc)
                    n += len(b)
                    left -= len(b)
                f.readline()
        else:
            left = int(hdrs.get("content-length", "0"))
            while left:
                b = f.read(min(left, MIB))
                if not b:
                    return
                crc = zlib.crc32(b, crc)
                n += len(b)
                left -= len(b)
        body = json.dumps({"bytes": n, "crc": crc}).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def pattern_crc(n):
    crc, left = 0, n
    while left:
        k = min(left, len(BLOCK))
        crc = zlib.crc32(BLOCK[:k], crc)
        left -= k
    return crc


# ------------------------------------------------------------------ RSS

def rss_now(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssWatch:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def now(self):
        return rss_now(self.pid)

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def reset(self):
        self.peak = self.now()

    def done(self):
        self.stop = True
        self.t.join()
        return self.peak


# ------------------------------------------------------------------ clients

def read_head(s, buf=b""):
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise OSError("closed before the head")
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode(), rest


def get_stream(port, path, host="shop"):
    """GET path; returns (status line, headers text, body length, crc, seconds to first body byte)."""
    s = socket.create_connection(("127.0.0.1", port), 30)
    t0 = time.time()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head, rest = read_head(s)
    chunked = "transfer-encoding: chunked" in head.lower()
    first = time.time() - t0 if rest else None
    buf = bytearray(MIB)
    n, crc, raw = len(rest), zlib.crc32(rest), bytearray(rest)
    while True:
        k = s.recv_into(buf)
        if k == 0:
            break
        if first is None:
            first = time.time() - t0
        if chunked:
            raw += buf[:k]
        else:
            n += k
            crc = zlib.crc32(memoryview(buf)[:k], crc)
    s.close()
    if chunked:  # decode at the end (only used for modest sizes)
        data, body = bytes(raw), b""
        while True:
            line, data = data.split(b"\r\n", 1)
            size = int(line, 16)
            if size == 0:
                break
            body += data[:size]
            data = data[size + 2:]
        n, crc = len(body), zlib.crc32(body)
    return head.split("\r\n")[0], head, n, crc, first


def post_stream(port, path, n, chunked=False, host="shop"):
    s = socket.create_connection(("127.0.0.1", port), 60)
    te = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {n}"
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{te}\r\nConnection: close\r\n\r\n".encode())
    left = n
    while left:
        k = min(left, len(BLOCK))
        if chunked:
            s.sendall(b"%x\r\n" % k + BLOCK[:k] + b"\r\n")
        else:
            s.sendall(BLOCK[:k])
        left -= k
    if chunked:
        s.sendall(b"0\r\n\r\n")
    head, rest = read_head(s)
    while True:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    s.close()
    return head.split("\r\n")[0], rest


def h2_frame(t, f, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([t, f]) + sid.to_bytes(4, "big") + payload


def h2_open(port, path, window=None):
    """h2c prior knowledge, one GET on stream 1. window: initial stream window
    to announce (None = protocol default 65535) and as much connection window."""
    def lit(idx, value):
        v = value.encode()
        return bytes([idx, len(v)]) + v
    s = socket.create_connection(("127.0.0.1", port), 30)
    settings = b""
    if window:
        settings = (4).to_bytes(2, "big") + window.to_bytes(4, "big")
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, settings)
    if window:
        out += h2_frame(8, 0, 0, (window - 65535).to_bytes(4, "big"))
    out += h2_frame(1, 0x5, 1, b"\x82\x86" + lit(4, path) + lit(1, "shop"))
    s.sendall(out)
    return s


def h2_drain(s, update=True):
    """Read stream 1 to its end, granting window as data arrives; returns
    (body bytes, crc, end seen)."""
    buf, n, crc = b"", 0, 0
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            b = s.recv(MIB)
            if not b:
                return n, crc, False
            buf += b
        ln = int.from_bytes(buf[:3], "big")
        t, f, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
        payload, buf = buf[9:9 + ln], buf[9 + ln:]
        if t == 4 and not f & 1:
            s.sendall(h2_frame(4, 1, 0, b""))
        if t == 0 and sid == 1:
            n += len(payload)
            crc = zlib.crc32(payload, crc)
            if update and payload:
                inc = len(payload).to_bytes(4, "big")
                s.sendall(h2_frame(8, 0, 0, inc) + h2_frame(8, 0, 1, inc))
        if sid == 1 and t in (0, 1) and f & 1:
            return n, crc, True
        if sid == 1 and t == 3:
            return n, crc, False


# ------------------------------------------------------------------ main

def main():
    be = Backend()
    port, aport = free_port(), free_port()
    cfg = {"limit": 128, "upstream_timeout_ms": 3000, "apps": [
        {"name": "shop", "hosts": ["*"],
         "instances": [{"id": "py", "url": f"http://127.0.0.1:{be.port}"}]}]}
    cfgfile = f"/tmp/it_stream_{os.getpid()}.json"
    with open(cfgfile, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    # ASan's quarantine keeps freed blocks (256 MB by default): it would be
    # counted as the router's memory. A small one keeps RSS honest.
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64"
    rlog = open(f"/tmp/it_stream_{os.getpid()}.log", "w")
    r = subprocess.Popen([f"{BIN}/wlm-router", "--config", cfgfile, "--listen",
                          f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{aport}", "--token", "",
                          "--max-body-bytes", str(2 * GIB), "--idle-timeout-ms", "3000"],
                         stderr=rlog, env=env)
    procs.append(r)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    base = rss_now(r.pid)
    print(f"# router RSS at start: {base / MIB:.1f} MB")

    # --- 1 GiB down
    w = RssWatch(r.pid)
    t0 = time.time()
    st, head, n, crc, _ = get_stream(port, f"/big/{GIB}")
    dt = time.time() - t0
    peak = w.done()
    check(st.endswith("200 OK") and n == GIB and crc == pattern_crc(GIB),
          f"1 GiB download intact ({n} bytes, {GIB / dt / MIB:.0f} MB/s)")
    check(f"content-length: {GIB}" in head.lower(), "download keeps the upstream Content-Length")
    check(peak < 64 * MIB, f"router RSS during 1 GiB download: peak {peak / MIB:.1f} MB < 64 MB")

    # --- 1 GiB up
    w = RssWatch(r.pid)
    t0 = time.time()
    st, body = post_stream(port, "/sink", GIB)
    dt = time.time() - t0
    peak = w.done()
    got = json.loads(body) if st.endswith("200 OK") else {}
    check(got.get("bytes") == GIB and got.get("crc") == pattern_crc(GIB),
          f"1 GiB upload intact ({got.get('bytes')} bytes, {GIB / dt / MIB:.0f} MB/s)")
    check(peak < 64 * MIB, f"router RSS during 1 GiB upload: peak {peak / MIB:.1f} MB < 64 MB")

    # --- chunked both ways
    st, head, n, crc, _ = get_stream(port, f"/big/{3 * MIB + 17}/chunked")
    check(st.endswith("200 OK") and n == 3 * MIB + 17 and crc == pattern_crc(3 * MIB + 17) and
          "transfer-encoding: chunked" in head.lower(), "chunked response of unknown length streamed chunked")
    st, body = post_stream(port, "/sink", 5 * MIB + 3, chunked=True)
    got = json.loads(body) if st.endswith("200 OK") else {}
    check(got.get("bytes") == 5 * MIB + 3 and got.get("crc") == pattern_crc(5 * MIB + 3),
          "chunked upload streamed (5 MiB)")

    # --- Expect: 100-continue is answered at once, then the body streams
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000000\r\n"
              b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    s.settimeout(0.8)
    try:
        cont = s.recv(100)
    except socket.timeout:
        cont = b""
    s.settimeout(10)
    s.sendall(BLOCK * 3 + BLOCK[:1000000 - 3 * len(BLOCK)])
    head, rest = read_head(s)
    while True:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    s.close()
    check(cont.startswith(b"HTTP/1.1 100 Continue") and head.startswith("HTTP/1.1 200") and
          json.loads(rest).get("bytes") == 1000000, "Expect: 100-continue answered at once, body streamed")

    # --- HEAD passes the announced length; an HTTP/1.0 client gets a body of
    # unknown length close-delimited (no chunk framing)
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(f"HEAD /big/{5 * MIB} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n".encode())
    head, rest = read_head(s)
    s.close()
    check(f"content-length: {5 * MIB}" in head.lower() and rest == b"",
          "HEAD: the upstream's Content-Length is passed on, no body")
    s = socket.create_connection(("127.0.0.1", port), 30)
    s.sendall(f"GET /big/{2 * MIB + 3}/chunked HTTP/1.0\r\n\r\n".encode())
    head, rest = read_head(s)
    body = bytearray(rest)
    while True:
        b = s.recv(MIB)
        if not b:
            break
        body += b
    s.close()
    check("transfer-encoding" not in head.lower() and len(body) == 2 * MIB + 3 and
          zlib.crc32(body) == pattern_crc(2 * MIB + 3), "HTTP/1.0 client: unknown length sent close-delimited")

    # --- first byte before the upstream finishes
    st, head, n, crc, first = get_stream(port, "/slow")
    check(st.endswith("200 OK") and n == 10 and first is not None and first < 1.0,
          f"first body byte after {first:.3f} s, upstream took 1.5 s")

    # --- h2: client never grants window beyond the default 64 KiB.
    # "sent" also counts the kernel's socket buffers between backend and
    # router (tcp_rmem may grow to 32 MB on a pooled connection), so the bound
    # that matters is the router's RSS; 64 MB of 256 shows the upstream held.
    s = h2_open(port, f"/big/{256 * MIB}")
    time.sleep(1.5)
    sent = be.sent.get(f"/big/{256 * MIB}", 0)
    rss = rss_now(r.pid)
    check(sent < 64 * MIB and rss < 64 * MIB,
          f"h2 closed window: upstream held back after {sent / MIB:.1f} MB of 256 (router RSS {rss / MIB:.1f} MB)")
    s.close()
    # --- h2: huge window, but the client does not read its socket
    w = RssWatch(r.pid)
    path = f"/big/{128 * MIB + 1}"
    s = h2_open(port, path, window=(1 << 31) - 1)
    time.sleep(1.5)
    sent = be.sent.get(path, 0)
    check(sent < 64 * MIB, f"h2 slow reader (open window): upstream held back after {sent / MIB:.1f} MB of 128")
    n, crc, end = h2_drain(s)
    s.close()
    peak = w.done()
    check(end and n == 128 * MIB + 1 and crc == pattern_crc(128 * MIB + 1),
          "h2 slow reader then gets the whole body")
    check(peak < 64 * MIB, f"router RSS with the h2 slow reader: peak {peak / MIB:.1f} MB")
    # --- h2 with window updates as it reads (a normal client)
    s = h2_open(port, f"/big/{20 * MIB}")
    n, crc, end = h2_drain(s)
    s.close()
    check(end and n == 20 * MIB and crc == pattern_crc(20 * MIB), "h2 20 MiB download with window updates")

    # --- h2 upload (nghttp follows the router's flow-control window)
    up = f"/tmp/it_stream_up_{os.getpid()}"
    with open(up, "wb") as f:
        for _ in range(64):
            f.write(BLOCK)  # 16 MiB
    out = subprocess.run(["nghttp", "-d", up, f"http://127.0.0.1:{port}/sink"],
                         capture_output=True, text=True, timeout=60)
    os.unlink(up)
    try:
        got = json.loads(out.stdout)
    except ValueError:
        got = {}
    check(got.get("bytes") == 16 * MIB and got.get("crc") == pattern_crc(16 * MIB),
          f"h2 16 MiB upload streamed ({got.get('bytes')} bytes)")

    # --- many concurrent downloads: RSS bounded
    w = RssWatch(r.pid)
    res = []

    def one(i):
        try:
            st, _, n, _, _ = get_stream(port, f"/big/{8 * MIB + i}")
            res.append((n == 8 * MIB + i, f"{st} {n}"))
        except OSError as e:
            res.append((False, repr(e)))
    ths = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    peak = w.done()
    bad = [m for ok, m in res if not ok]
    check(len(res) == 100 and not bad, f"100 concurrent 8 MiB downloads complete {bad[:3]}")
    check(peak < 96 * MIB, f"router RSS with 100 concurrent downloads: peak {peak / MIB:.1f} MB")

    # --- a client that leaves mid-download: the upstream is cut, not drained
    path = f"/big/{512 * MIB + 5}"
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
    s.recv(65536)
    s.close()
    time.sleep(1.0)
    with be.lock:
        sent, fin = be.sent.get(path, 0), be.finished.get(path)
    check(fin is None and sent < 64 * MIB, f"client gone: upstream stopped after {sent / MIB:.1f} MB")

    # --- a client that stops reading: closed after the idle timeout (3 s), upstream cut
    path = f"/big/{GIB + 7}"
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
    time.sleep(4.5)
    with be.lock:
        fin, sent = be.finished.get(path), be.sent.get(path, 0)
    got, closed = 0, False
    s.settimeout(5)
    try:
        while True:
            b = s.recv(MIB)
            if not b:
                closed = True
                break
            got += len(b)
    except OSError:
        closed = True
    s.close()
    check(closed and fin is None and got < 64 * MIB,
          f"client not reading: closed after the idle timeout ({got / MIB:.1f} MB delivered, upstream sent {sent / MIB:.1f} MB)")

    # --- stats see the streamed requests complete
    import urllib.request
    st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{aport}/admin/stats", timeout=5).read())
    fl = st["flows"][0]
    check(fl["completed"] >= 100 and st["in_flight"] == 0,
          f"stats: {fl['completed']} completed, in flight {st['in_flight']}")

    # --- a clean exit (no sanitizer report, no leak) after all of the above
    r.terminate()
    rc = r.wait(20)
    rlog.flush()
    with open(rlog.name) as f:
        log = f.read()
    check(rc == 0 and "Sanitizer" not in log, f"router exits cleanly on SIGTERM (rc {rc})")


try:
    main()
finally:
    for p in procs:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
if failures:
    print(f"{len(failures)} check(s) failed; router log /tmp/it_stream_{os.getpid()}.log",
          file=sys.stderr)
    sys.exit(1)
for f in (f"/tmp/it_stream_{os.getpid()}.json",):
    try:
        os.unlink(f)
    except OSError:
        pass
print("all streaming checks passed")
