#!/usr/bin/env python3
"""A backend behind wxgate in Python, standard library only: it trusts X-OpenId because only the
gateway can reach it, and greets the user it names.

    python3 examples/python/whoami.py                  # 127.0.0.1:3000, the example config's upstream
    python3 examples/python/whoami.py 127.0.0.1:0      # any free port; the first line printed names it

What a backend must still do: listen where only the gateway reaches it (127.0.0.1 in a sidecar or on
one host; otherwise a private network, or a firewall / Kubernetes NetworkPolicy that lets in only
wxgate). Anyone who reaches the backend directly can send any X-OpenId they like. With Flask the
same is `request.headers.get("X-OpenId")`.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WhoAmI(BaseHTTPRequestHandler):
    def do_GET(self):
        openid = self.headers.get("X-OpenId")  # set by wxgate from a verified token, or absent
        unionid = self.headers.get("X-UnionId")
        body = json.dumps({
            "greeting": f"hello, {openid}" if openid else "hello, anonymous visitor",
            "openid": openid,
            "unionid": unionid,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format, *args):  # one line per request on stderr, without the headers
        sys.stderr.write("%s %s\n" % (self.command, self.path))


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:3000").rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), WhoAmI)
    print(f"whoami backend on http://{server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
