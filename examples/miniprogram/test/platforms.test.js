// The mini-program client on every platform the gateway serves, against a running gateway whose
// mock speaks each platform's login. Started by tests/integration/miniprogram.rs, which sets:
//   WXGATE_PLATFORMS_URL  a gateway with /api (auth required, echo backend) and the apps
//                         qqshop (QQ), dyshop (Douyin), bdshop (Baidu), ksshop (Kuaishou) and
//                         alishop (Alipay)
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('../wxgate.js');
const { createWx, createMy } = require('./wx-shim.js');

const GATEWAY = process.env.WXGATE_PLATFORMS_URL;
if (!GATEWAY) throw new Error('set WXGATE_PLATFORMS_URL (see the header)');

// Each platform's global, the gateway's app for it, and the X-Platform its users get.
const PLATFORMS = [
  { global: 'wx', app: undefined, platform: 'wechat' },
  { global: 'qq', app: 'qqshop', platform: 'qq' },
  { global: 'tt', app: 'dyshop', platform: 'douyin' },
  { global: 'swan', app: 'bdshop', platform: 'baidu' },
  { global: 'ks', app: 'ksshop', platform: 'kuaishou' },
];

for (const { global: name, app, platform } of PLATFORMS) {
  test(`the ${name} global logs in to a ${platform} app and the backend sees X-Platform`, async () => {
    const shim = createWx({ user: `${name}user` });
    // As the runtime does: the platform's API is a global of that name.
    globalThis[name] = shim.wx;
    try {
      const client = createClient({ baseUrl: GATEWAY, app });
      const answer = await client.request({ url: '/api/who' });
      assert.equal(answer.statusCode, 200);
      assert.deepEqual(answer.data.headers['x-platform'], [platform]);
      assert.deepEqual(answer.data.headers['x-openid'], [`oMock_${name}user`]);
      assert.equal(shim.calls.wxLogin, 1);
    } finally {
      delete globalThis[name];
    }
  });
}

test('the my global (Alipay) logs in with my.getAuthCode and keeps its token in my storage', async () => {
  const shim = createMy({ user: 'myuser' });
  globalThis.my = shim.my;
  try {
    const client = createClient({ baseUrl: GATEWAY, app: 'alishop' });
    const answer = await client.request({ url: '/api/who', method: 'POST', data: { item: 7 } });
    assert.equal(answer.statusCode, 200);
    assert.deepEqual(answer.data.headers['x-platform'], ['alipay']);
    assert.deepEqual(answer.data.headers['x-openid'], ['oMock_myuser']);
    assert.equal(answer.data.body, '{"item":7}');
    assert.deepEqual(shim.calls.scopes, ['auth_base']);
    assert.equal(shim.storage.get('wxgate.session').openid, 'oMock_myuser');
    // An HTTP error reaches my.request's fail() (error 19); the client still sees the status.
    const missing = await client.request({ url: '/nowhere' });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.data.error, 'not_found');
  } finally {
    delete globalThis.my;
  }
});

test('my: a refused token (401 through fail(), error 19) is renewed with one getAuthCode and the request retried', async () => {
  const shim = createMy({ user: 'myrenew' });
  const client = createClient({ baseUrl: GATEWAY, app: 'alishop', api: shim.my, loginOptions: { scopes: 'auth_user' } });
  shim.my.setStorageSync({ key: 'wxgate.session', data: { token: 'not-a-valid-token', expiresAt: Date.now() + 3600e3 } });
  const answer = await client.request({ url: '/api/who' });
  assert.equal(answer.statusCode, 200);
  assert.deepEqual(answer.data.headers['x-openid'], ['oMock_myrenew']);
  assert.deepEqual(shim.calls.scopes, ['auth_user']);
  assert.equal(shim.count('/api/who'), 2);
});

test('uni-app: uni.login with its provider logs in to the app of the build', async () => {
  const shim = createWx({ user: 'uniuser' });
  const client = createClient({
    baseUrl: GATEWAY,
    app: 'dyshop',
    api: shim.wx,
    loginOptions: { provider: 'toutiao' },
  });
  const answer = await client.request({ url: '/api/who' });
  assert.equal(answer.statusCode, 200);
  assert.deepEqual(answer.data.headers['x-platform'], ['douyin']);
  assert.deepEqual(shim.calls.loginOptions, [{ provider: 'toutiao' }]);
});

test('Alipay through uni-app: uni.login hands over my.getAuthCode()\'s authCode as code', async () => {
  const shim = createWx({ user: 'aliuser' });
  const client = createClient({
    baseUrl: GATEWAY,
    app: 'alishop',
    api: shim.wx,
    loginOptions: { provider: 'alipay' },
  });
  const answer = await client.request({ url: '/api/who' });
  assert.equal(answer.statusCode, 200);
  assert.deepEqual(answer.data.headers['x-platform'], ['alipay']);
  assert.deepEqual(answer.data.headers['x-openid'], ['oMock_aliuser']);
});

test('a Douyin login without a host user (only an anonymousCode) fails without calling the gateway', async () => {
  const shim = createWx({ user: 'anon' });
  shim.wx.login = ({ success }) => setImmediate(() => success({ anonymousCode: 'a1', isLogin: false }));
  const client = createClient({ baseUrl: GATEWAY, app: 'dyshop', api: shim.wx });
  await assert.rejects(client.request({ url: '/api/who' }), { code: 'wx_login_failed' });
  assert.equal(shim.count('/login'), 0);
});
