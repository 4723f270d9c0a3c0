"""What the router's integration scripts share: the binaries' directory,
the ok/FAIL report, the processes to stop at the end, and ports."""
import os
import sys
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


def stop_all():
    """Terminate every process started by the script (kill after 10 s)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except Exception:  # subprocess.TimeoutExpired
            p.kill()


def run(main, passed, hint=""):
    """Run main(), stop the processes whatever happens, and exit 1 naming
    how many checks failed (plus `hint`, e.g. where a log is)."""
    try:
        main()
    finally:
        stop_all()
    if failures:
        print(f"{len(failures)} check(s) failed{hint}", file=sys.stderr)
        sys.exit(1)
    print(passed)
