#!/usr/bin/env python3
"""Drive headless Chromium over the DevTools protocol and check the wlm dashboard.

Standard library only (the CI machine has no pip packages): a minimal
WebSocket client, enough for the DevTools protocol's text frames.

  cdp.py --chromium /usr/bin/chromium --base http://127.0.0.1:P --token T
         --nodes a,b,c [--apps web] [--more-jobs N] --screenshot out.png [--timeout 40]

Exit 0 when every check passed; otherwise prints what failed and an excerpt
of the page's DOM, exit 1.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


class WebSocket:
    """Client side of RFC 6455 for a loopback DevTools endpoint."""

    def __init__(self, url, timeout):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: Chromium refuses foreign origins unless
        # --remote-allow-origins is given, and a plain client has none.
        req = (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError("DevTools refused the WebSocket: " + head.decode(errors="replace"))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        hdr = bytearray([0x81])  # FIN + text
        n = len(data)
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += struct.pack(">H", n)
        else:
            hdr.append(0x80 | 127)
            hdr += struct.pack(">Q", n)
        mask = os.urandom(4)
        hdr += mask
        self.sock.sendall(bytes(hdr) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            op = b0 & 0x0F
            if op == 8:
                raise ConnectionError("DevTools closed the WebSocket")
            if op in (9, 10):  # ping/pong: nothing to answer for our short session
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()


class Browser:
    def __init__(self, chromium, width, height, log):
        self.profile = tempfile.mkdtemp(prefix="wlm-chromium-")
        self.log = open(log, "wb") if log else subprocess.DEVNULL
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
                f"--window-size={width},{height}", f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
        # Own process group: killing it takes the renderer and GPU helpers too.
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.next_id = 0
        self.events = []
        try:
            self._connect()
        except BaseException:
            self.kill()
            raise

    def _connect(self):
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode} at start")
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[1]:
                    break
            except FileNotFoundError:
                pass
            if time.time() > deadline:
                raise RuntimeError("chromium did not open its DevTools port within 30 s")
            time.sleep(0.05)
        self.ws = WebSocket(f"ws://127.0.0.1:{lines[0]}{lines[1]}", timeout=30)

    def kill(self):
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        self.ws.sock.settimeout(timeout)
        while True:
            r = json.loads(self.ws.recv())
            if r.get("id") == mid:
                if "error" in r:
                    raise RuntimeError(f"{method}: {r['error']}")
                return r.get("result", {})
            self.events.append(r)

    def open_page(self, url, width, height):
        """A fresh tab in its own browser context (own localStorage)."""
        ctx = self.call("Target.createBrowserContext")["browserContextId"]
        tid = self.call("Target.createTarget", {"url": "about:blank", "browserContextId": ctx})["targetId"]
        sid = self.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, sid)
        self.call("Runtime.enable", session=sid)
        self.call("Page.enable", session=sid)
        self.call("Page.navigate", {"url": url}, sid)
        return sid

    def eval(self, sid, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, sid)
        if "exceptionDetails" in r:
            raise RuntimeError("page script failed: " + json.dumps(r["exceptionDetails"])[:500])
        return r.get("result", {}).get("value")

    def console_errors(self):
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p.get("exceptionDetails", {}).get("exception", {}).get("description")
                           or p.get("exceptionDetails", {}).get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        return out

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


# What the page shows, read in one evaluation.
STATE_JS = r"""(() => {
  const q = s => document.querySelector(s);
  const pts = p => (p.getAttribute('points') || '').trim().split(/\s+/).filter(Boolean).length;
  const series = [...document.querySelectorAll('#chart polyline.series')]
      .map(p => ({name: p.dataset.name, points: pts(p)}));
  const min = q('#chart polyline.min');
  return {
    ready: document.readyState,
    title: document.title,
    series,
    minPoints: min ? pts(min) : 0,
    nodes: [...document.querySelectorAll('#placement .node')].map(n => n.dataset.node),
    minUtility: (q('#min-utility') || {}).textContent,
    minName: ((q('#min-name') || {}).textContent || '').replace(/^\(|\)$/g, ''),
    jobsRows: [...document.querySelectorAll('#jobs tbody tr')].filter(r => !r.querySelector('td.empty')).length,
    curves: [...document.querySelectorAll('#curves .ucard')].map(card => {
      // Each chart: its curve's points, the marker, and whether the marker
      // (and the ring where the workload ran before the decision) sits on
      // the curve: the curve's y at its x, or the bottom edge where the
      // curve is below -1.
      const poly = card.querySelector('polyline.curve');
      const P = poly ? (poly.getAttribute('points') || '').trim().split(/\s+/).filter(Boolean)
          .map(p => p.split(',').map(Number)) : [];
      const axes = [...card.querySelectorAll('line.axis')];
      const bottom = axes.length > 1 ? +axes[1].getAttribute('y1') : NaN;
      const m = card.querySelector('circle.marker');
      const on = c => {
        const mx = +c.getAttribute('cx'), my = +c.getAttribute('cy');
        let cy = P[P.length - 1][1];
        for (let i = 1; i < P.length; i++)
          if (mx <= P[i][0] + 0.05) {
            const [x0, y0] = P[i - 1], [x1, y1] = P[i];
            cy = x1 > x0 ? y0 + (y1 - y0) * (mx - x0) / (x1 - x0) : Math.min(y0, y1);
            break;
          }
        return Math.abs(Math.min(cy, bottom) - my) <= 1.5;
      };
      const onCurve = !!m && P.length >= 2 &&
          [...card.querySelectorAll('circle.marker, circle.before')].every(on);
      return {name: card.dataset.name, kind: card.dataset.kind, util: +card.dataset.util,
              label: (card.querySelector('.uname') || {}).textContent,
              min: card.classList.contains('min'), points: P.length, marker: !!m, onCurve,
              belowBottom: P.some(p => p[1] > bottom + 0.5), cliffLabel: !!card.querySelector('text.cliff')};
    }),
    curvesMore: (q('#curves .umore') || {}).textContent || '',
    error: q('#error') && !q('#error').classList.contains('hidden') ? q('#error').textContent : '',
  };
})()"""


def dom_excerpt(b, sid, limit=4000):
    try:
        html = b.eval(sid, "document.documentElement.outerHTML") or ""
    except Exception as e:  # noqa: BLE001 - diagnostics only
        return f"(no DOM: {e})"
    html = re.sub(r'points="([^"]{80})[^"]*"', r'points="\1…"', html)
    return html[:limit] + ("…" if len(html) > limit else "")


def wait_for(b, sid, what, pred, timeout):
    """Poll the page state until pred(state) holds; returns the last state."""
    deadline = time.time() + timeout
    st = None
    while time.time() < deadline:
        st = b.eval(sid, STATE_JS)
        if st and pred(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:.0f} s; page state: {json.dumps(st)}")


def screenshot(b, sid, width, height, path):
    """The whole page (it is taller than the window) as a PNG."""
    m = b.call("Page.getLayoutMetrics", session=sid)
    size = m.get("cssContentSize") or m["contentSize"]
    clip = {"x": 0, "y": 0, "width": width, "height": max(height, int(size["height"])), "scale": 1}
    shot = b.call("Page.captureScreenshot",
                  {"format": "png", "clip": clip, "captureBeyondViewport": True}, sid)
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(f"screenshot {path} ({os.path.getsize(path)} bytes, {width}x{clip['height']})")


def submit_jobs(base, token, n):
    """n long jobs in one batch through the API (as `wlm job submit -f`)."""
    body = {"jobs": [{"name": f"extra{i}", "command": "true", "work_seconds": 600,
                      "memory_mb": 64, "class": "bronze"} for i in range(n)]}
    req = urllib.request.Request(base + "/v1/jobs", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status not in (200, 201):
            raise AssertionError(f"POST /v1/jobs: HTTP {r.status}")


def check_curves(st, want_apps):
    """The utility-functions panel: what an operator must be able to read."""
    cards = st["curves"]
    by_name = {c["name"]: c for c in cards}
    for app in want_apps:
        c = by_name.get(app)
        if not c:
            raise AssertionError(f"no utility curve for app {app!r}: {[x['name'] for x in cards]}")
    for c in cards:
        if c["points"] < 2:
            raise AssertionError(f"the curve of {c['name']} has {c['points']} points")
        if not c["marker"]:
            raise AssertionError(f"no marker on the curve of {c['name']}")
        if not c["onCurve"]:
            raise AssertionError(f"the marker of {c['name']} is not on its curve")
    utils = [c["util"] for c in cards]
    if utils != sorted(utils):
        raise AssertionError(f"curves are not lowest utility first: {utils}")
    if not cards[0]["min"]:
        raise AssertionError(f"the lowest-utility workload {cards[0]['name']} is not highlighted")
    wrong = [c["name"] for c in cards[1:] if c["min"]]
    if wrong:
        raise AssertionError(f"highlighted as the minimum besides {cards[0]['name']}: {wrong}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--base", required=True, help="controller URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True)
    ap.add_argument("--nodes", required=True, help="comma-separated node names the map must show")
    ap.add_argument("--apps", default="", help="comma-separated apps whose utility curves must show")
    ap.add_argument("--more-jobs", type=int, default=0,
                    help="then submit this many jobs and check the panel caps the charts")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--log", help="file for chromium's own output")
    a = ap.parse_args()
    # The test script's cleanup sends TERM: leave through `finally` so the
    # browser is closed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    want_nodes = sorted(a.nodes.split(","))
    W, H = 1400, 1000
    t_start = time.time()
    try:
        b = Browser(a.chromium, W, H, a.log)
    except (RuntimeError, ConnectionError, OSError) as e:
        print(f"FAIL: cannot drive chromium: {e}", file=sys.stderr)
        return 1
    sid = None
    try:
        print(f"chromium up in {time.time() - t_start:.1f} s")
        url = f"{a.base}/dashboard/#token={urllib.parse.quote(a.token)}"
        sid = b.open_page(url, W, H)
        st = wait_for(b, sid, "the page did not load",
                      lambda s: s["ready"] == "complete" and s["title"].startswith("wlm"), 15)
        print(f"page loaded in {time.time() - t_start:.1f} s")

        # The map shows every node, by name.
        st = wait_for(b, sid, f"the placement map did not show the nodes {want_nodes}",
                      lambda s: sorted(s["nodes"]) == want_nodes, a.timeout)
        print("placement map nodes:", st["nodes"])

        # The chart has data, then gains points while we watch (SSE/refresh).
        most = lambda s: max([x["points"] for x in s["series"]] or [0])
        st = wait_for(b, sid, "the chart showed no series with >= 2 points",
                      lambda s: most(s) >= 2 and s["minPoints"] >= 2, a.timeout)
        first = most(st)
        st = wait_for(b, sid, f"the chart did not gain points (stayed at {first})",
                      lambda s: most(s) >= first + 2, a.timeout)
        print(f"chart series: {st['series']}; grew from {first} to {most(st)} points")
        if st["minUtility"] in (None, "", "–"):
            raise AssertionError(f"#min-utility shows {st['minUtility']!r}")
        if not re.fullmatch(r"-?\d+\.\d{3}", st["minUtility"]):
            raise AssertionError(f"#min-utility is not a number: {st['minUtility']!r}")
        print("minimum utility shown:", st["minUtility"])
        if st["error"]:
            raise AssertionError(f"error banner shown: {st['error']!r}")
        if st["jobsRows"] < 1:
            raise AssertionError("the job table is empty")

        # Utility functions: a curve per app and per job, markers on them,
        # lowest first, the minimum highlighted; the app under load has
        # learned its cliff, which leaves the chart at the bottom.
        want_apps = [x for x in a.apps.split(",") if x]
        def curves_ready(s):
            names = {c["name"] for c in s["curves"]}
            return (all(x in names for x in want_apps) and any(c["kind"] == "job" for c in s["curves"])
                    and all(c["belowBottom"] and c["cliffLabel"] for c in s["curves"] if c["name"] in want_apps))
        st = wait_for(b, sid, f"the utility functions did not show the apps {want_apps} (with their cliff) and a job",
                      curves_ready, a.timeout)
        check_curves(st, want_apps)
        print("utility functions:", ", ".join(f"{c['name']}={c['util']:.3f}{' (min)' if c['min'] else ''}"
                                               for c in st["curves"]))

        screenshot(b, sid, W, H, a.screenshot)

        # Many jobs: 24 charts, lowest first, and a note counting the rest.
        if a.more_jobs:
            submit_jobs(a.base, a.token, a.more_jobs)
            st = wait_for(b, sid, "the utility functions did not cap the charts at 24 with a note",
                          lambda s: len(s["curves"]) == 24 and "more" in s["curvesMore"], a.timeout)
            check_curves(st, [])
            m = re.match(r"(\d+) more \(utility ≥ (-?\d+\.\d+)\)", st["curvesMore"])
            if not m:
                raise AssertionError(f"unexpected note: {st['curvesMore']!r}")
            rest, above = int(m.group(1)), float(m.group(2))
            if len(st["curves"]) + rest < a.more_jobs:
                raise AssertionError(f"24 charts + {rest} more < the {a.more_jobs} jobs submitted")
            if above < st["curves"][-1]["util"] - 1e-3:
                raise AssertionError(f"a workload left out ({above}) is below one drawn ({st['curves'][-1]['util']})")
            # Waiting jobs tie at -1: the one highlighted is the one the header names.
            st = wait_for(b, sid, "the highlighted curve is not the minimum the header names",
                          lambda s: len(s["curves"]) == 24 and s["curves"][0]["min"] and
                          (s["minUtility"] != "-1.000" or s["curves"][0]["util"] > -1 or
                           s["curves"][0]["label"] == s["minName"]), 10)
            print(f"utility functions with many jobs: 24 charts, note {st['curvesMore']!r}, "
                  f"minimum {st['curves'][0]['label']} (header: {st['minName']} {st['minUtility']})")
            screenshot(b, sid, W, H, re.sub(r"\.png$", "", a.screenshot) + "-many.png")

        errs = [e for e in b.console_errors() if e]
        if errs:
            raise AssertionError("script errors on the page: " + "; ".join(errs[:5]))

        # Without a token (fresh context: nothing in localStorage) the page says why.
        sid = b.open_page(f"{a.base}/dashboard/", W, H)
        st = wait_for(b, sid, "no error banner about the token without one",
                      lambda s: "token" in (s["error"] or ""), 15)
        print("without a token:", st["error"])
        if st["nodes"] or any(x["points"] for x in st["series"]) or st["curves"]:
            raise AssertionError("data shown without a token")
        print(f"dashboard checks passed in {time.time() - t_start:.1f} s")
        return 0
    except (AssertionError, RuntimeError, ConnectionError, OSError, socket.timeout) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        if sid:
            print("DOM excerpt:\n" + dom_excerpt(b, sid), file=sys.stderr)
        errs = [x for x in b.console_errors() if x]
        if errs:
            print("page script errors: " + "; ".join(errs[:5]), file=sys.stderr)
        return 1
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
