#!/usr/bin/env python3
"""--max-body-bytes on streamed request bodies, over real sockets (loopback).

A chunked upload (no length announced) that passes --max-body-bytes after
its head already went upstream gets a 413 answer from the router: the
partial request is cut at the upstream, the concurrency slot is given back,
the client reads the 413 (not a reset) and the connection closes. The same
for an upload still queued behind a full concurrency limit, and for an h2
upload (answered 413, then RST_STREAM NO_ERROR). What a user
would notice if the slot leaked: with "limit": 1 the next request would
wait in the queue and get 503; here it must be served at once, and the
stats must show nothing in flight.
"""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from rtlib import BIN, procs, check, run, free_port, wait_port

KIB = 1 << 10
MIB = 1 << 20
LIMIT = 192 * KIB  # --max-body-bytes (under the 256 KiB stream window, so a queued
# upload passes it too instead of being held by backpressure)


class Backend:
    """POST /sink: reads a chunked body, counts it in `got`, answers with
    the byte count; GET /slow: answers after 2 s; anything else: "hello".
    `heads` counts request heads seen, `cut` the uploads that ended with the
    connection closed before the body's end."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.heads, self.cut, self.got = 0, 0, 0
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
                with self.lock:
                    self.heads += 1
                if method == "POST":
                    n = self.sink(f)
                    if n is None:
                        with self.lock:
                            self.cut += 1
                        return
                    body = b"%d" % n
                elif path == "/slow":
                    time.sleep(2)
                    body = b"slow"
                else:
                    body = b"hello"
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (OSError, ValueError):
            pass
        finally:
            s.close()

    def sink(self, f):
        n = 0
        while True:
            line = f.readline()
            if not line:
                return None
            size = int(line.split(b";")[0], 16)
            if size == 0:
                f.readline()
                return n
            data = f.read(size + 2)
            if len(data) < size + 2:
                return None
            n += size
            with self.lock:
                self.got += size


def chunk(n):
    return b"%x\r\n" % n + b"x" * n + b"\r\n"


def upload_too_big(port, before_more=None):
    """A chunked POST: 64 KiB, then (after before_more() returns) chunks up
    to 1 MiB in all, as fast as the router takes them. Returns (what the
    client read, True when it ended in a reset)."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n" +
              chunk(64 * KIB))
    if before_more:
        before_more()
    out, reset = b"", False
    try:
        for _ in range(15):
            s.sendall(chunk(64 * KIB))
    except OSError:
        pass  # the router stopped taking the body: expected once it answered
    s.settimeout(10)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except ConnectionResetError:
        reset = True
    except socket.timeout:
        pass
    s.close()
    return out, reset


def h2_frame(t, f, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([t, f]) + sid.to_bytes(4, "big") + payload


def h2_lit(idx, value):  # HPACK literal without indexing, indexed name
    v = value.encode()
    return bytes([idx, len(v)]) + v


def get(port, path="/hello"):
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.settimeout(10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n".encode())
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError:
        pass
    s.close()
    return out


def stats(aport):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{aport}/admin/stats",
                                             timeout=5).read())


def wait_for(cond, t=5):
    end = time.time() + t
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def main():
    be = Backend()
    d = tempfile.mkdtemp(prefix="it_limits_")
    port, aport = free_port(), free_port()
    # One request at a time, and a queued one waits at most 1.5 s: a leaked
    # slot shows up as a 503 on the next request.
    cfg = {"limit": 1, "upstream_timeout_ms": 5000, "apps": [
        {"name": "shop", "hosts": ["*"],
         "classes": [{"name": "default", "max_wait_ms": 1500}],
         "instances": [{"id": "py", "url": f"http://127.0.0.1:{be.port}"}]}]}
    with open(f"{d}/router.json", "w") as f:
        json.dump(cfg, f)
    log = open(f"{d}/router.log", "w")
    r = subprocess.Popen([f"{BIN}/wlm-router", "--config", f"{d}/router.json", "--listen",
                          f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{aport}", "--token", "",
                          "--max-body-bytes", str(LIMIT)], stderr=log)
    procs.append(r)
    wait_port(port)
    wait_port(aport)

    # --- the upload is upstream (the backend has its head and some body)
    # when it passes the limit
    def upstream_has_it():
        check(wait_for(lambda: be.got > 0), "the upload's head and first chunk reached the upstream")
    for i in range(3):
        t0 = time.time()
        out, reset = upload_too_big(port, upstream_has_it)
        head = out.split(b"\r\n\r\n", 1)[0]
        check(out.startswith(b"HTTP/1.1 413") and b"too large" in out and not reset,
              f"round {i + 1}: upload over --max-body-bytes upstream -> 413 read by the client "
              f"(got {out[:40]!r}{', reset' if reset else ''})")
        check(b"connection: close" in head.lower(), "the 413 says Connection: close and the router closes")
        check(wait_for(lambda: be.cut == i + 1), "the upstream saw its partial upload cut")
        t0 = time.time()
        ok = get(port)
        check(ok.startswith(b"HTTP/1.1 200") and time.time() - t0 < 1.0,
              f"the next request is served at once ({time.time() - t0:.2f} s): the slot was released")
    st = stats(aport)
    fl = st["flows"][0]
    check(st["in_flight"] == 0 and fl["in_flight"] == 0 and fl["queue_len"] == 0,
          f"stats: nothing in flight or queued (in_flight {st['in_flight']}, queue {fl['queue_len']})")
    check(fl["errors"] >= 3 and fl["completed"] >= 6,
          f"stats: the refused uploads count as completed with error ({fl['errors']} errors)")

    # --- the upload is still queued (the one slot is busy with /slow)
    slow = []
    heads = be.heads + 1
    th = threading.Thread(target=lambda: slow.append(get(port, "/slow")))
    th.start()
    wait_for(lambda: be.heads == heads and stats(aport)["in_flight"] == 1)
    t0 = time.time()
    out, reset = upload_too_big(port)
    dt = time.time() - t0
    check(out.startswith(b"HTTP/1.1 413") and not reset and dt < 1.5,
          f"queued upload over the limit -> 413 at once ({dt:.2f} s)")
    fl = stats(aport)["flows"][0]
    check(fl["queue_len"] == 0, "it left the queue")
    th.join()
    check(slow and slow[0].startswith(b"HTTP/1.1 200"), "the request holding the slot finished")
    check(be.heads == heads, "the refused queued upload never reached the upstream")
    check(get(port).startswith(b"HTTP/1.1 200"), "and the router serves the next request")

    # --- a body within the limit still passes, and a Content-Length over it
    # is refused before anything goes upstream
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n"
              b"Connection: close\r\n\r\n" + chunk(100 * KIB) + chunk(80 * KIB) + b"0\r\n\r\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    check(out.startswith(b"HTTP/1.1 200") and out.endswith(b"%d" % (180 * KIB)),
          "a 180 KiB chunked upload under the 192 KiB limit passes")
    heads = be.heads
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n" % (2 * MIB) +
              b"y" * (128 * KIB))
    s.settimeout(10)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except ConnectionResetError:
        out += b"<reset>"
    s.close()
    check(out.startswith(b"HTTP/1.1 413") and b"<reset>" not in out and be.heads == heads,
          "Content-Length over the limit -> 413 read by the client, nothing upstream")

    # --- h2: a body without content-length passing the limit once upstream
    # gets a 413 answer, then RST_STREAM NO_ERROR (stop sending); the slot
    # is released
    cut = be.cut
    got0 = be.got
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.settimeout(10)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") +
              h2_frame(1, 0x4, 1, b"\x83\x86" + h2_lit(4, "/sink") + h2_lit(1, "shop")) +
              b"".join(h2_frame(0, 0, 1, b"z" * 16384) for _ in range(4)))
    check(wait_for(lambda: be.got > got0), "h2: the upload's head and first DATA reached the upstream")
    try:
        s.sendall(b"".join(h2_frame(0, 0, 1, b"z" * 16384) for _ in range(12)))
    except OSError:
        pass
    body, rst, buf = b"", None, b""
    try:
        while rst is None:
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                b = s.recv(65536)
                if not b:
                    raise OSError("closed")
                buf += b
            ln = int.from_bytes(buf[:3], "big")
            t, f, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
            payload, buf = buf[9:9 + ln], buf[9 + ln:]
            if t == 4 and not f & 1:
                s.sendall(h2_frame(4, 1, 0, b""))
            if sid == 1 and t == 0:
                body += payload
            if sid == 1 and t == 3:
                rst = int.from_bytes(payload, "big")
    except OSError:
        pass
    s.close()
    check(b"Content Too Large" in body and b"too large" in body,
          f"h2: upload over the limit upstream -> 413 answer ({body[:60]!r})")
    check(rst == 0, f"h2: then RST_STREAM NO_ERROR so the client stops sending (code {rst})")
    check(wait_for(lambda: be.cut == cut + 1), "h2: the upstream saw its partial upload cut")
    t0 = time.time()
    check(get(port).startswith(b"HTTP/1.1 200") and time.time() - t0 < 1.0,
          "h2: the next request is served at once: the slot was released")
    check(stats(aport)["in_flight"] == 0, "h2: nothing left in flight")

    r.terminate()
    rc = r.wait(20)
    log.flush()
    with open(f"{d}/router.log") as f:
        text = f.read()
    check(rc == 0 and "Sanitizer" not in text, f"router exits cleanly (rc {rc})")


if __name__ == "__main__":
    run(main, "all body-limit checks passed", " (router log in /tmp/it_limits_*/router.log)")
