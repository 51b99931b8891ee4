// A backend behind wxgate in Node that verifies instead of trusting: every request must carry the
// gateway's signed identity assertion (`[identity] assertion = true`, see docs/identity.md), which
// jose checks against the gateway's JWKS (signature with the key's own algorithm, typ, iss, aud,
// exp). A forged X-OpenId without a valid assertion is answered 401 in the gateway's error shape.
//
//   npm ci && node whoami.mjs 127.0.0.1:3000
//
// Settings (environment): WXGATE_JWKS_URL (default http://127.0.0.1:8080/.well-known/jwks.json),
// WXGATE_AUDIENCE (this route's audience in the gateway, default its prefix: "/api"),
// WXGATE_ISSUER ("wxgate").
import http from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const JWKS = createRemoteJWKSet(
  new URL(process.env.WXGATE_JWKS_URL || 'http://127.0.0.1:8080/.well-known/jwks.json'),
);
const EXPECTED = {
  typ: 'wxgate-assertion+jwt',
  issuer: process.env.WXGATE_ISSUER || 'wxgate',
  audience: process.env.WXGATE_AUDIENCE || '/api',
  requiredClaims: ['exp', 'iss', 'sub', 'aud'],
};

function answer(response, status, document) {
  const body = JSON.stringify(document);
  response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}

const server = http.createServer(async (request, response) => {
  const assertion = request.headers['x-wxgate-assertion'];
  if (!assertion) {
    answer(response, 401, { error: 'missing_assertion', message: 'call this service through wxgate' });
    return;
  }
  try {
    const { payload } = await jwtVerify(assertion, JWKS, EXPECTED);
    answer(response, 200, { greeting: `hello, ${payload.sub}`, openid: payload.sub, unionid: payload.unionid ?? null });
  } catch (error) {
    answer(response, 401, { error: 'invalid_assertion', message: error.code || 'invalid' });
  }
});

const [host, port] = (process.argv[2] || '127.0.0.1:3000').split(/:(?=[^:]*$)/);
server.listen(Number(port), host, () => {
  const address = server.address();
  console.log(`whoami backend on http://${address.address}:${address.port}`);
});
