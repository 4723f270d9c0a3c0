#!/usr/bin/env python3
"""bench/ha/run.py - figures of the HA store (docs/ha.md).

  run.py submit      durable submissions/s, SQLite vs etcd (3 members), batched
                     and one job per request, with the p99 of a request
  run.py failover    failover time over --kills kill -9 of the leader
                     (3 members, 2 controllers): median and worst
  run.py heartbeats  --nodes simulated agents heartbeating every 5 s against a
                     controller on etcd: controller CPU, etcd writes/s, p99
  run.py lag         how long after its 201 a job submitted to the leader is
                     readable on the standby (its copy fed by an etcd watch):
                     median and p99, with --preload jobs already stored, idle
                     and under a steady background stream of submissions

Use a Release build: WLM_BIN_DIR=build/rel/bin (wlm-controller, ha_load).
Everything runs on loopback with its own ports and data directories.
"""
import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "ha"))
import halib  # noqa: E402
from halib import TOKEN, Cluster, free_port  # noqa: E402

BIN = os.environ.get("WLM_BIN_DIR", "")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def etcd_proposals(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith("etcd_server_proposals_committed_total "):
            return float(line.split()[1])
    return 0.0


def load(url, *args):
    env = dict(os.environ, WLM_TOKEN=TOKEN)
    out = subprocess.run([os.path.join(BIN, "ha_load")] + list(args) + ["--url", url],
                         env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        sys.exit("ha_load failed: %s" % out.stderr)
    return dict(kv.split("=") for kv in out.stdout.split())


def wait_http(url, limit=30):
    end = time.time() + limit
    host, port = url.split("//")[1].split(":")
    while time.time() < end:
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=1)
            c.request("GET", "/healthz")
            d = c.getresponse().read()
            c.close()
            if b'"leader"' in d or b'"single"' in d:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("controller at %s did not start" % url)


ROWS = [(100, 4, 20000), (1, 1, 1000), (1, 16, 10000)]  # batch, in flight, jobs


def submit(args):
    print("# durable submissions (201 = committed: SQLite WAL synchronous=FULL / etcd quorum)")
    print("%-8s %6s %6s %10s %12s %12s" % ("store", "batch", "infl", "jobs/s", "req p50 ms",
                                          "req p99 ms"))
    # SQLite
    d = tempfile.mkdtemp(prefix="wlm-bench-ha-")
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    p = subprocess.Popen([os.path.join(BIN, "wlm-controller"), "--listen-port", str(port),
                          "--token", TOKEN, "--db", os.path.join(d, "c.db")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(url)
        for batch, conc, jobs in ROWS:
            r = load(url, "submit", "--jobs", str(jobs // args.scale), "--batch", str(batch),
                     "--conc", str(conc))
            print("%-8s %6d %6d %10s %12s %12s" % ("sqlite", batch, conc, r["jobs_per_s"],
                                                  r["req_p50_ms"], r["req_p99_ms"]))
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)
    # etcd, 3 members
    cl = Cluster("bench-ha-submit", members=args.members, controllers=1)
    try:
        cl.start_ctl(0)
        cl.wait_leader(20)
        for batch, conc, jobs in ROWS:
            r = load(cl.urls[0], "submit", "--jobs", str(jobs // args.scale), "--batch",
                     str(batch), "--conc", str(conc))
            print("%-8s %6d %6d %10s %12s %12s" % ("etcd%d" % args.members, batch, conc,
                                                  r["jobs_per_s"], r["req_p50_ms"],
                                                  r["req_p99_ms"]))
    finally:
        cl.cleanup(True)


def failover(args):
    cl = Cluster("bench-ha-failover", members=args.members, controllers=2)
    times = []
    try:
        cl.start_ctl(0)
        cl.wait_leader(20)
        cl.start_ctl(1)
        cl.wait_standby(1)
        for k in range(args.kills):
            victim = cl.wait_leader(10)
            other = 1 - victim
            cl.ctls[victim]["proc"].send_signal(signal.SIGKILL)
            t0 = time.time()
            cl.ctls[victim]["proc"].wait()
            while cl.role(other, 0.2) != "leader":
                if time.time() - t0 > 30:
                    sys.exit("no leader 30 s after kill %d" % (k + 1))
                time.sleep(0.01)
            times.append(time.time() - t0)
            cl.start_ctl(victim)
            cl.wait_standby(victim)
            time.sleep(0.5)
    finally:
        cl.cleanup(True)
    print("# failover: kill -9 of the leader until the standby reports leader "
          "(lease TTL %d s, %d members)" % (cl.lease_ttl, args.members))
    print("kills=%d median_s=%.2f worst_s=%.2f best_s=%.2f" % (
        len(times), statistics.median(times), max(times), min(times)))


def lag(args):
    import threading
    from halib import Client
    cl = Cluster("bench-ha-lag", members=args.members, controllers=2)
    try:
        cl.start_ctl(0)
        ld = cl.wait_leader(20)
        cl.start_ctl(1)
        sb = 1 - ld
        cl.wait_standby(sb)
        leader, standby = Client([cl.urls[ld]]), Client([cl.urls[sb]])
        stored = 0
        print("# standby lag: 201 from the leader -> GET /v1/jobs/ID 200 on the standby "
              "(%d members, %d probes per row, polled every 2 ms)" % (args.members, args.samples))
        print("%-8s %-10s %8s %8s %8s" % ("stored", "load", "p50_ms", "p99_ms", "max_ms"))
        for preload in [int(x) for x in args.preload.split(",")]:
            while stored < preload:
                n = min(100, preload - stored)
                st, d = leader.request("POST", "/v1/jobs", {"jobs": [
                    {"name": "pre-%d" % (stored + i), "command": "/bin/true", "work_seconds": 5}
                    for i in range(n)]}, deadline=60)
                if st != 201:
                    sys.exit("preload answered %s %s" % (st, d))
                stored += n
            time.sleep(2)
            for loaded in (False, True):
                stop = threading.Event()
                done = [0]

                def background():
                    c = Client([cl.urls[ld]])
                    nxt = time.time()
                    while not stop.is_set():
                        c.request("POST", "/v1/jobs", {"name": "bg", "command": "/bin/true",
                                                       "work_seconds": 5})
                        done[0] += 1
                        nxt += 1.0 / args.rate
                        time.sleep(max(0.0, nxt - time.time()))
                bg = [threading.Thread(target=background) for _ in range(1 if loaded else 0)]
                for t in bg:
                    t.start()
                lags = []
                t_start = time.time()
                for i in range(args.samples):
                    st, d = leader.request("POST", "/v1/jobs", {"name": "probe", "command":
                                                                "/bin/true", "work_seconds": 5})
                    if st != 201:
                        sys.exit("probe answered %s %s" % (st, d))
                    jid, t0 = d["jobs"][0]["id"], time.time()
                    while True:
                        code, _, _ = standby.once(standby.hosts[0], "GET", "/v1/jobs/%d" % jid)
                        if code == 200:
                            break
                        if time.time() - t0 > 30:
                            sys.exit("job %d not on the standby after 30 s" % jid)
                        time.sleep(0.002)
                    lags.append(time.time() - t0)
                elapsed = time.time() - t_start
                stop.set()
                for t in bg:
                    t.join()
                stored += args.samples + done[0]
                lags.sort()
                print("%-8d %-10s %8.1f %8.1f %8.1f" % (
                    preload, "%d/s" % (done[0] / elapsed) if loaded else "idle",
                    1000 * lags[len(lags) // 2], 1000 * lags[min(len(lags) - 1,
                                                                 int(len(lags) * 0.99))],
                    1000 * lags[-1]))
    finally:
        cl.cleanup(True)


def heartbeats(args):
    cl = Cluster("bench-ha-hb", members=args.members, controllers=1)
    try:
        # Agents beat every 5 s; a node is LOST after 15 s without one. The
        # simulated agents run nothing: power saving would only try to switch
        # them off (unreachable).
        cl.start_ctl(0, "--node-lost-after-ms", "15000", "--power-saving", "false")
        cl.wait_leader(20)
        pid = cl.ctls[0]["proc"].pid
        port = cl.members[0]["client"]
        env = dict(os.environ, WLM_TOKEN=TOKEN)
        proc = subprocess.Popen([os.path.join(BIN, "ha_load"), "heartbeats", "--url",
                                 cl.urls[0], "--nodes", str(args.nodes), "--period-s", "5",
                                 "--duration-s", str(args.duration)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        # measure over the heartbeat phase only (after registration)
        while True:
            line = proc.stderr.readline()
            if not line or "registered" in line:
                break
        time.sleep(5)  # ha_load measures from one period after the last registration
        c0, e0, t0 = cpu_seconds(pid), sum(etcd_proposals(m["client"]) for m in
                                           cl.members[:1]), time.time()
        out, err = proc.communicate(timeout=args.duration + 120)
        c1, e1, t1 = cpu_seconds(pid), sum(etcd_proposals(m["client"]) for m in
                                           cl.members[:1]), time.time()
        r = dict(kv.split("=") for kv in out.split() if "=" in kv)
        if "hb_per_s" not in r:
            sys.exit("ha_load did not finish: %s" % err[-500:])
        print("# %d simulated agents, a heartbeat every 5 s each, controller on etcd (%d members)"
              % (args.nodes, args.members))
        print("hb_per_s=%s api_p50_ms=%s api_p99_ms=%s errors=%s controller_cpu=%.0f%% "
              "etcd_writes_per_s=%.1f" % (r["hb_per_s"], r["p50_ms"], r["p99_ms"], r["errors"],
                                          100 * (c1 - c0) / (t1 - t0), (e1 - e0) / (t1 - t0)))
        del port
    finally:
        cl.cleanup(True)


def main():
    # A timeout's SIGTERM still stops the etcd members and controllers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("run.py: terminated"))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["submit", "failover", "heartbeats", "lag"])
    ap.add_argument("--members", type=int, default=3, help="etcd members (default 3)")
    ap.add_argument("--kills", type=int, default=20, help="failover: kills (default 20)")
    ap.add_argument("--nodes", type=int, default=10000, help="heartbeats: agents (default 10000)")
    ap.add_argument("--duration", type=int, default=30, help="heartbeats: seconds (default 30)")
    ap.add_argument("--scale", type=int, default=1, help="submit: divide job counts by this")
    ap.add_argument("--samples", type=int, default=100, help="lag: probes per row")
    ap.add_argument("--rate", type=float, default=20,
                    help="lag: background submissions per second in the loaded rows")
    ap.add_argument("--preload", default="0,1000,10000",
                    help="lag: jobs stored before each row (cumulative)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(BIN, "ha_load")):
        sys.exit("set WLM_BIN_DIR to a build's bin directory with wlm-controller and ha_load")
    halib.BIN = BIN
    {"submit": submit, "failover": failover, "heartbeats": heartbeats,
     "lag": lag}[args.what](args)


if __name__ == "__main__":
    main()
