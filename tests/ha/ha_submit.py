"""it_ha_submit: `wlm job submit` is idempotent across a failover by default.

One etcd member, two controllers. The CLI knows two addresses: first a
proxy in front of the leader that forwards the submission, lets the leader
commit it, and then drops the answer and goes away (a controller that dies
after its commit, before its answer); then the standby. The CLI retries on
the standby, follows its 307 to the leader, and gets the job it created:
exactly one job in the store, "already submitted" on the terminal, and the
key it printed with --verbose is the job's submit_id. The same with a batch
file (-f). Without a key of its own the retry would have made the job twice.
"""
import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from halib import BIN, TOKEN, Client, Cluster, check, free_port  # noqa: E402


class AnswerDropper:
    """Accepts one connection, forwards the request to `target`, reads the
    whole answer, closes the client's connection without it, and stops
    listening (later connections are refused)."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(4)
        self.forwarded = 0
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def run(self):
        conn, _ = self.sock.accept()
        self.sock.close()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        up = socket.create_connection(("127.0.0.1", self.target))
        up.sendall(head.replace(b"Connection: keep-alive", b"Connection: close") +
                   b"\r\n\r\n" + body)
        answer = b""
        while True:
            chunk = up.recv(65536)
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                h, b = answer.split(b"\r\n\r\n", 1)
                n = [int(x.split(b":")[1]) for x in h.split(b"\r\n")
                     if x.lower().startswith(b"content-length:")]
                if n and len(b) >= n[0]:
                    break
        up.close()
        self.forwarded = 1 if answer.startswith(b"HTTP/1.1 201") else -1
        conn.close()  # the answer is lost


def cli(cl, urls, *args):
    env = dict(os.environ, WLM_CONTROLLER=",".join(urls), WLM_TOKEN=TOKEN,
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    p = subprocess.run([os.path.join(BIN, "wlm")] + list(args), env=env, capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def jobs_named(client, prefix):
    st, d = client.request("GET", "/v1/jobs?limit=1000000")
    check(st == 200, "GET /v1/jobs answered %s" % st)
    return [j for j in d["jobs"] if j.get("name", "").startswith(prefix)]


def printed_key(err):
    for line in err.splitlines():
        if "submit_id " in line:
            return line.split("submit_id ")[1].split()[0]
    return None


def main():
    cl = Cluster("it-ha-submit", members=1, controllers=2)
    ok = False
    try:
        cl.start_ctl(0)
        ld = cl.wait_leader(20)
        cl.start_ctl(1)
        sb = 1 - ld
        cl.wait_standby(sb)
        client = Client(cl.urls)
        leader_port = cl.ctls[ld]["port"]

        # One job from flags.
        px = AnswerDropper(leader_port)
        rc, out, err = cli(cl, ["http://127.0.0.1:%d" % px.port, cl.urls[sb]], "job", "submit",
                           "-v", "--name", "lost-answer", "--command", "true",
                           "--work-seconds", "5")
        px.t.join(5)
        check(px.forwarded == 1, "the proxy did not get the leader's 201 (%s)" % px.forwarded)
        check(rc == 0, "wlm job submit exited %d: %s %s" % (rc, out, err))
        check("already submitted" in out,
              "the retry was not recognised as the same submission: %r" % out)
        got = jobs_named(client, "lost-answer")
        check(len(got) == 1, "%d jobs named lost-answer (want 1: the retry made it twice)"
              % len(got))
        key = printed_key(err)
        check(key is not None, "--verbose printed no submit_id: %r" % err)
        st, d = client.request("GET", "/v1/jobs/%d" % got[0]["id"])
        check(st == 200 and (d.get("submit_id") in (None, key)),
              "job %s has submit_id %r, the CLI printed %r" % (got[0]["id"], d.get("submit_id"),
                                                               key))
        print("flags: answer lost after the commit; the CLI retried on the standby, followed "
              "its 307 and got the same job (key %s)" % key)

        # A batch from a file: every job once.
        path = os.path.join(cl.dir, "batch.json")
        with open(path, "w") as f:
            json.dump({"batch": "lost", "jobs": [
                {"name": "lost-batch-a", "command": "true", "work_seconds": 5},
                {"name": "lost-batch-b", "command": "true", "work_seconds": 5,
                 "dependencies": [{"kind": "afterok", "on": "lost-batch-a"}]}]}, f)
        px = AnswerDropper(leader_port)
        rc, out, err = cli(cl, ["http://127.0.0.1:%d" % px.port, cl.urls[sb]], "job", "submit",
                           "-f", path)
        px.t.join(5)
        check(px.forwarded == 1, "the proxy did not get the leader's 201 (%s)" % px.forwarded)
        check(rc == 0, "wlm job submit -f exited %d: %s %s" % (rc, out, err))
        got = jobs_named(client, "lost-batch-")
        check(len(got) == 2, "%d jobs of the batch stored (want 2)" % len(got))
        print("file: a batch of 2 whose answer was lost is stored once")

        # Nothing answers at all: the error names the key to retry with, and
        # retrying with it makes the job once.
        dead = "http://127.0.0.1:%d" % free_port()
        rc, out, err = cli(cl, [dead], "job", "submit", "--name", "unknown-outcome",
                           "--command", "true")
        check(rc != 0, "a submission to nothing succeeded: %s" % out)
        check("--submit-id " in err, "the error does not name the key to retry with: %r" % err)
        key = err.split("--submit-id ")[1].split()[0]
        for _ in range(2):
            rc, out, err = cli(cl, cl.urls, "job", "submit", "--name", "unknown-outcome",
                               "--command", "true", "--submit-id", key)
            check(rc == 0, "retry with the printed key exited %d: %s" % (rc, err))
        check(len(jobs_named(client, "unknown-outcome")) == 1,
              "retrying twice with the printed key made more than one job")
        print("unreachable: the error names the key; two retries with it make one job")
        ok = True
        print("it_ha_submit: ok")
    finally:
        cl.cleanup(ok)


if __name__ == "__main__":
    main()
