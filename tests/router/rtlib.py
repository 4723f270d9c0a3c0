"""What the router's integration scripts share: the binaries' directory,
the ok/FAIL report, the processes to stop at the end, and ports."""
import os
import socket
import time

BIN = os.environ.get("WLM_BIN_DIR", "build/bin")
failures = []
procs = []


def check(cond, msg):
    print(("ok   - " if cond else "FAIL - ") + msg)
    if not cond:
        failures.append(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, t=10):
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")
