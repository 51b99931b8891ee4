#!/usr/bin/env python3
"""A backend behind wxgate in Python, and the user it greets.

    python3 examples/python/whoami.py                  # 127.0.0.1:3000, the example config's upstream
    python3 examples/python/whoami.py 127.0.0.1:0      # any free port; the first line printed names it

Two ways to know who is calling:
- Trusting X-OpenId (standard library only), because only the gateway can reach the backend: it
  must listen where only the gateway reaches it (127.0.0.1 in a sidecar or on one host; otherwise a
  private network, or a firewall / Kubernetes NetworkPolicy that lets in only wxgate). Anyone who
  reaches the backend directly can send any X-OpenId they like. With Flask the same is
  `request.headers.get("X-OpenId")`.
- Verifying the gateway's signed identity assertion (`[identity] assertion = true`, see
  docs/identity.md), with PyJWT (`pip install 'pyjwt[crypto]'`): set WXGATE_JWKS_URL (the gateway's
  /.well-known/jwks.json), WXGATE_AUDIENCE (this route's audience, default its prefix) and
  WXGATE_ISSUER (default "wxgate"). Then every request needs a valid X-Wxgate-Assertion: anything
  else is answered 401 in the gateway's error shape, whatever X-OpenId says.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JWKS_URL = os.environ.get("WXGATE_JWKS_URL")
ASSERTION_TYPE = "wxgate-assertion+jwt"

if JWKS_URL:
    import jwt  # PyJWT, only when verifying

    JWKS = jwt.PyJWKClient(JWKS_URL)


def verified_identity(assertion):
    """The claims of a valid assertion for this service, or raises."""
    if jwt.get_unverified_header(assertion).get("typ") != ASSERTION_TYPE:
        raise jwt.InvalidTokenError("not an identity assertion")
    key = JWKS.get_signing_key_from_jwt(assertion)
    return jwt.decode(
        assertion,
        key.key,
        algorithms=[key.algorithm_name],  # the key's own algorithm, never the token's
        issuer=os.environ.get("WXGATE_ISSUER", "wxgate"),
        audience=os.environ["WXGATE_AUDIENCE"],
        options={"require": ["exp", "iss", "sub", "aud"]},
    )


class WhoAmI(BaseHTTPRequestHandler):
    def do_GET(self):
        if JWKS_URL:
            assertion = self.headers.get("X-Wxgate-Assertion")
            try:
                claims = verified_identity(assertion) if assertion else None
            except Exception as error:  # any failure is a refusal
                return self.answer(401, {"error": "invalid_assertion", "message": type(error).__name__})
            if claims is None:
                return self.answer(401, {"error": "missing_assertion", "message": "call this service through wxgate"})
            openid, unionid = claims["sub"], claims.get("unionid")
        else:
            openid = self.headers.get("X-OpenId")  # set by wxgate from a verified token, or absent
            unionid = self.headers.get("X-UnionId")
        self.answer(200, {
            "greeting": f"hello, {openid}" if openid else "hello, anonymous visitor",
            "openid": openid,
            "unionid": unionid,
        })

    def answer(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
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
