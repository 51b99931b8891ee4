"""One upstream instance for tests of upstream groups: a real process, killed and started
again by the tests.

    python3 upstream_instance.py PORT NAME LOG

Answers GET /healthz with 200, and every other request with 200 and a JSON body naming the
instance, the method, the path, the X-OpenId header and the length of the body it read. Each
request also appends "METHOD PATH LENGTH" to LOG (flushed before the answer), so a test counts
what reached the instance even when the gateway's answer was an error.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, NAME, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Instance(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/healthz":
            payload = b"ok"
        else:
            with open(LOG, "a") as log:
                log.write(f"{self.command} {self.path} {len(body)}\n")
            payload = json.dumps(
                {
                    "instance": NAME,
                    "method": self.command,
                    "path": self.path,
                    "openid": self.headers.get("X-OpenId"),
                    "body_bytes": len(body),
                }
            ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = answer


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("127.0.0.1", PORT), Instance).serve_forever()
