"""What bench/run and bench/shapes share: ports, children, nginx configs, wrk runs, memory readings
and a description of the machine. Imported by both; not run on its own."""

import asyncio
import json
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
APPID = "wxbench000000000"
APP_SECRET = "bench-app-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {what} did not start listening on port {port}")


class Processes:
    """Every child started, stopped on exit whatever happens."""

    def __init__(self):
        self.children = []

    def start(self, name, argv, log, env=None):
        out = open(log, "wb")
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        child.name = name
        self.children.append(child)
        return child

    def stop_all(self, timeout=10):
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()


def tree_pids(pid):
    """The process and its children (nginx: master and workers)."""
    pids = [pid]
    try:
        for line in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.extend(tree_pids(int(line)))
    except OSError:
        pass
    return pids


def memory_kib(pid, field):
    """VmRSS or VmHWM (peak RSS) of a process tree, in KiB."""
    total = 0
    for each in tree_pids(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid):
    """User plus system CPU time a process tree has used so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in tree_pids(pid):
        try:
            # The fields after the command's closing parenthesis; utime and stime are the 12th
            # and 13th of them (14th and 15th of the line).
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def with_cpu_per_request(pid, run):
    """`run()`'s result (with its "requests" count), plus "cpu_us": the CPU time the process tree
    `pid` spent meanwhile per request, in microseconds. It does not depend on how the cores were
    shared with the client, as requests/s does."""
    before = cpu_seconds(pid)
    result = run()
    result["cpu_us"] = (cpu_seconds(pid) - before) * 1e6 / max(1, result["requests"])
    return result


def abba_round(baseline, target):
    """One round of a comparison, each argument a callable measuring once: baseline, target,
    target, baseline, so a steady drift of the machine's speed cancels. Returns the baseline's two
    results, the target's two, and the round's ratios target/baseline in requests/s and in CPU
    time per request."""
    first, second, third, fourth = baseline(), target(), target(), baseline()
    rps = (second["rps"] + third["rps"]) / (first["rps"] + fourth["rps"])
    cpu = (second["cpu_us"] + third["cpu_us"]) / (first["cpu_us"] + fourth["cpu_us"])
    return [first, fourth], [second, third], rps, cpu


def nginx_conf(tmp, name, port, body):
    """A foreground nginx config with everything under tmp."""
    conf = tmp / f"{name}.conf"
    conf.write_text(
        f"""daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
{body['main']}
events {{ worker_connections 20000; }}
http {{
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    keepalive_requests 1000000;
    {body['http']}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {body['server']}
    }}
}}
"""
    )
    return conf


def nginx_binary():
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    sys.exit("bench: nginx not found (Debian: apt-get install nginx-light)")


def login(port, code):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/login",
        data=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["token"]


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url, args, token=None, script=None, duration=None, headers=()):
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration or args.duration}s",
            "--latency", "--timeout", "5s"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    for header in headers:
        argv += ["-H", header]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    latency = {}
    for percent, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        latency[percent] = float(value) * UNITS[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        sys.exit(f"bench: {url} answered errors, the numbers would be meaningless:\n{out}")
    return {"rps": rps, "p50_ms": latency["50"], "p99_ms": latency["99"], "requests": requests}


# How long the idle connections stay idle before RSS is read, for every proxy alike: wxgate parks a
# connection's HTTP state after 50 ms of idleness and returns the freed pages once a wave of parked
# connections is over (checked every 0.5 s).
IDLE_SETTLE_SECS = 3.0


async def hold_idle(port, count, token, measure, tls=False):
    """Opens `count` connections (TLS ones when `tls`, the certificate not checked), one
    authenticated GET on each, keeps them open, measures."""
    request = (f"GET /api/idle HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    gate = asyncio.Semaphore(256)
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    async def one():
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            return status, writer

    opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failed = [o for o in opened if isinstance(o, BaseException) or o[0] != 200]
    await asyncio.sleep(IDLE_SETTLE_SECS)  # idle means idle for a moment, for every proxy alike
    result = measure()
    for each in opened:
        if not isinstance(each, BaseException):
            each[1].close()
    if failed:
        sys.exit(f"bench: {len(failed)} of {count} idle connections failed: {failed[:3]}")
    return result


def login_script(tmp, prefix="u"):
    """A wrk script logging in with codes no other run used (the mock takes each code once)."""
    script = tmp / f"login-{prefix}.lua"
    script.write_text(
        """local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local counter = 0
function request()
  counter = counter + 1
  local body = '{"code":"PREFIX' .. (counter % 1000) .. '.' .. id .. '-' .. counter .. '"}'
  return wrk.format("POST", "/login", {["Content-Type"] = "application/json"}, body)
end
""".replace("PREFIX", prefix)
    )
    return script


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nginx = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    return (f"{os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}; "
            f"{nginx.replace('nginx version: ', '')}; {wrk.split(' Copyright')[0]}")
