#!/usr/bin/env python3
"""Start-up of the Lambda extension (not a test): the time from exec to registered, and to
registered and listening (its first /event/next, which comes after its HTTP API listens), and
its RSS then, over RUNS cold starts against a fake Extensions API on 127.0.0.1. It adds to
every cold start of a function. Prints a markdown table for docs/lambda.md ("Start-up").

    benches/lambda_startup.sh [RUNS]      (builds the release binary first)
    python3 benches/lambda_startup.py BINARY [RUNS]
"""

import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

binary = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20

state = {}
lock = threading.Lock()


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body.encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/extension/register"):
            with lock:
                state["registered"] = time.monotonic()
            self.reply(200, "{}", [("Lambda-Extension-Identifier", "bench")])
        else:
            self.reply(202, "{}")

    def do_GET(self):
        if self.path.endswith("/extension/event/next"):
            with lock:
                first = "listening" not in state
                if first:
                    state["listening"] = time.monotonic()
                    pid = state["pid"]
                    with open(f"/proc/{pid}/status") as f:
                        rss = [l for l in f if l.startswith("VmRSS:")][0].split()[1]
                    state["rss_kib"] = int(rss)
            deadline = int(time.time() * 1000) + 2000
            self.reply(200, json.dumps({"eventType": "SHUTDOWN", "shutdownReason": "spindown",
                                        "deadlineMs": deadline}))
        else:
            self.reply(404, "{}")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
threading.Thread(target=server.serve_forever, daemon=True).start()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


registered, listening, rss = [], [], []
for _ in range(runs):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": "bench",
        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "SECRETSFS_CONFIG": "/dev/null",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port()),
    }
    with lock:
        state.clear()
    started = time.monotonic()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with lock:
        state["pid"] = process.pid
    _, err = process.communicate(timeout=30)
    if process.returncode != 0 or "listening" not in state:
        sys.exit(f"lambda_startup: the extension failed ({process.returncode}): {err.decode()[-500:]}")
    registered.append((state["registered"] - started) * 1000)
    listening.append((state["listening"] - started) * 1000)
    rss.append(state["rss_kib"] / 1024)


def row(name, values, unit):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"| {name} | {statistics.median(values):.1f} {unit} | {p90:.1f} {unit} | {values[0]:.1f} {unit} |"


print(f"{runs} cold starts of {binary} ({os.cpu_count()} CPUs)\n")
print("| | median | p90 | min |")
print("| --- | --- | --- | --- |")
print(row("exec to registered", registered, "ms"))
print(row("exec to registered and listening (first /event/next)", listening, "ms"))
print(row("RSS then", rss, "MiB"))
