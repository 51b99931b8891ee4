// The mini-program client against a running gateway with the mock WeChat, through a `wx` shim that
// does real HTTP. Started by tests/integration/miniprogram.rs, which sets:
//   WXGATE_URL            a gateway: /api (auth required, echo backend), /ws (WebSocket echo)
//   WXGATE_SHORT_TTL_URL  the same with 2-second tokens and no leeway
//   WXGATE_APPID          the mock app's appid
// Run by hand: cargo test --test integration miniprogram
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createClient, WxgateError } = require('../wxgate.js');
const { createWx } = require('./wx-shim.js');

const GATEWAY = process.env.WXGATE_URL;
const SHORT_TTL_GATEWAY = process.env.WXGATE_SHORT_TTL_URL;
const APPID = process.env.WXGATE_APPID;
if (!GATEWAY || !SHORT_TTL_GATEWAY || !APPID) {
  throw new Error('set WXGATE_URL, WXGATE_SHORT_TTL_URL and WXGATE_APPID (see the header)');
}

// WeChat's sample session_key encrypted this for the mock's "samplekey" users
// (tests/support/make_decrypt_vectors.py; tests/integration/decrypt.rs uses the same).
const SAMPLE = {
  encryptedData: 'Lnyi8fMh3t2dWwcJFqQSEJ+qNlX1Kb7SO/gO9q9x1fnXavKKFYJ7yva54C4WatiAmEVXXNh/V77ZxfD5q+6M8Z/nySA5kpOoS9lh41MYtwXSGrKzSz4/0ErDrOM42sOn5EyOGYRvxBbAss6msa2A0PtE93n6qMRHe8d3X4b381t7QbBugS1kWlbDRC4eb55G',
  iv: 'AAECAwQFBgcICQoLDA0ODw==',
  rawData: '{"nickName":"Olivia"}',
  signature: '85e403ad064f238232ad46a131d2cd603b24d067',
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setup(user, extra = {}) {
  const shim = createWx({ user, codes: extra.codes });
  const client = createClient(Object.assign({ baseUrl: extra.baseUrl || GATEWAY, wx: shim.wx }, extra.options));
  return Object.assign(shim, { client });
}

test('logs in once with wx.login, keeps the token, and the backend sees X-OpenId', async () => {
  const { client, calls, count, storage } = setup('alice');
  const first = await client.request({ url: '/api/hello' });
  assert.equal(first.statusCode, 200);
  assert.deepEqual(first.data.headers['x-openid'], ['oMock_alice']);
  const second = await client.request({ url: '/api/orders?page=2', method: 'POST', data: { item: 7 } });
  assert.equal(second.statusCode, 200);
  assert.equal(second.data.uri, '/api/orders?page=2');
  assert.equal(second.data.body, '{"item":7}');
  assert.equal(calls.wxLogin, 1);
  assert.equal(count('/login'), 1);
  assert.equal(storage.get('wxgate.session').openid, 'oMock_alice');
});

test('ten concurrent 401s share one renewal: one refresh attempt, one login', async () => {
  const { client, calls, count, wx } = setup('bob');
  wx.setStorageSync('wxgate.session', { token: 'not-a-valid-token', expiresAt: Date.now() + 3600e3 });
  const answers = await Promise.all(Array.from({ length: 10 }, () => client.request({ url: '/api/x' })));
  for (const answer of answers) {
    assert.equal(answer.statusCode, 200);
    assert.deepEqual(answer.data.headers['x-openid'], ['oMock_bob']);
  }
  assert.equal(count('/token/refresh'), 1, 'the refused token is offered for refresh once');
  assert.equal(count('/login'), 1);
  assert.equal(calls.wxLogin, 1);
  assert.equal(count('/api/x'), 20, 'each request sent, refused, and retried once');
});

test('a token that expired on the gateway is refreshed once, with no new login', async () => {
  // The client believes its token lasts an hour; the gateway says it expired: the 401 path.
  const { client, calls, count, wx } = setup('carol', { baseUrl: SHORT_TTL_GATEWAY });
  assert.equal((await client.request({ url: '/api/x' })).statusCode, 200);
  const session = wx.getStorageSync('wxgate.session');
  wx.setStorageSync('wxgate.session', Object.assign({}, session, { expiresAt: Date.now() + 3600e3 }));
  await sleep(3200); // exp is whole seconds: past it for sure
  const answers = await Promise.all(Array.from({ length: 10 }, () => client.request({ url: '/api/x' })));
  answers.forEach((answer) => assert.equal(answer.statusCode, 200));
  assert.equal(count('/token/refresh'), 1);
  assert.equal(count('/login'), 1, 'only the first login');
  assert.equal(calls.wxLogin, 1);
  assert.notEqual(wx.getStorageSync('wxgate.session').token, session.token);
});

test('a token about to expire is renewed before the requests go out', async () => {
  const { client, count } = setup('dave', { baseUrl: SHORT_TTL_GATEWAY, options: { renewBeforeMs: 1000 } });
  assert.equal((await client.request({ url: '/api/x' })).statusCode, 200);
  await sleep(1200);
  const answers = await Promise.all(Array.from({ length: 5 }, () => client.request({ url: '/api/x' })));
  answers.forEach((answer) => assert.equal(answer.statusCode, 200));
  assert.equal(count('/token/refresh'), 1);
  assert.equal(count('/api/x'), 6, 'no request was refused');
});

test('decrypt and phone helpers; their failures carry the gateway error code', async () => {
  const { client } = setup('samplekey', { codes: ['samplekey'] });
  const data = await client.decrypt(SAMPLE);
  assert.equal(data.openId, 'oMock_olivia');
  assert.equal(data.watermark.appid, APPID);
  await assert.rejects(client.decrypt(Object.assign({}, SAMPLE, { encryptedData: '7LFQ4hyYHboQffP7p3keAw==', rawData: undefined, signature: undefined })),
    (error) => error instanceof WxgateError && error.statusCode === 400 && error.code === 'decrypt_failed');
  const phone = await client.phone('phone-button-code');
  assert.match(phone.phone_info.phoneNumber, /^\d{11}$/);
  await assert.rejects(client.phone('mock-invalid'), (error) => error.code === 'invalid_phone_code');
});

test('connectSocket carries the token: the upstream sees X-OpenId and messages flow', async () => {
  const { client } = setup('erin');
  const task = await client.connectSocket({ url: '/ws/chat' });
  const messages = [];
  const next = () => new Promise((resolve) => {
    const poll = () => (messages.length ? resolve(messages.shift()) : setTimeout(poll, 10));
    poll();
  });
  task.onMessage((message) => messages.push(message.data));
  await new Promise((resolve, reject) => {
    task.onOpen(resolve);
    task.onError(reject);
  });
  const hello = JSON.parse(await next());
  assert.deepEqual(hello['x-openid'], ['oMock_erin']);
  task.send({ data: 'ping' });
  assert.equal(await next(), 'ping');
  task.close();

  const { wx } = setup('nobody');
  const refused = wx.connectSocket({ url: GATEWAY.replace(/^http/, 'ws') + '/ws/chat' });
  const error = await new Promise((resolve) => refused.onError(resolve));
  assert.equal(error.statusCode, 401);
});

test('logout revokes the token; the next request logs in again', async () => {
  const { client, calls, wx } = setup('frank');
  assert.equal((await client.request({ url: '/api/x' })).statusCode, 200);
  const old = client.session().token;
  await client.logout();
  assert.equal(client.session(), null);
  const replay = await new Promise((resolve, reject) => wx.request({
    url: GATEWAY + '/api/x', header: { Authorization: 'Bearer ' + old }, success: resolve, fail: reject,
  }));
  assert.equal(replay.statusCode, 401, 'the logged-out token is revoked');
  assert.equal((await client.request({ url: '/api/x' })).statusCode, 200);
  assert.equal(calls.wxLogin, 2);
});

test('a login WeChat refuses rejects with the gateway error code', async () => {
  const { client } = setup('grace', { codes: ['mock-invalid'] });
  await assert.rejects(client.request({ url: '/api/x' }),
    (error) => error instanceof WxgateError && error.statusCode === 401 && error.code === 'invalid_code');
});
