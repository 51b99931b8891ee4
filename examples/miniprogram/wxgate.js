/**
 * wxgate.js: the mini-program side of wxgate, with no dependencies. Copy it into your mini-program.
 *
 *   const wxgate = require('./wxgate.js');
 *   const client = wxgate.createClient({ baseUrl: 'https://api.example.com' });
 *   const res = await client.request({ url: '/api/orders' }); // logs in first if needed
 *
 * Every platform the gateway serves: the client uses whichever platform API it finds (`wx`, `qq`,
 * `tt`, `swan`, `ks`, `my`), or the one passed as `options.api`, uni-app's `uni` included
 * (`uni.login` calls the platform's own login; on Alipay, my.getAuthCode). Alipay's `my` is
 * adapted to the others' shapes (see alipayApi). Name the gateway's app for that platform with
 * `options.app`.
 *
 * What it does for you:
 * - logs in with the platform's login() + POST /login, keeps the token with setStorageSync;
 * - attaches `Authorization: Bearer <token>` to client.request() (wx.request) and
 *   client.connectSocket() (wx.connectSocket);
 * - renews the token before it expires (POST /token/refresh, or a new login when the refresh is
 *   refused), and on a 401 renews and retries the request exactly once; concurrent callers share
 *   one renewal, so ten requests failing at once cause one refresh or one login, not ten;
 * - decrypt() (POST /wx/decrypt) and phone() (POST /wx/phone) for WeChat's encrypted user data and
 *   the getPhoneNumber button; the session_key never reaches the mini-program.
 *
 * Every promise rejects with a WxgateError carrying the gateway's status and error code
 * (`missing_token`, `code_already_used`, `decrypt_failed`... see the README's Errors section).
 */
'use strict';

/** An answer the gateway refused (or a transport failure: statusCode 0). */
class WxgateError extends Error {
  constructor(statusCode, code, message) {
    super(message || code || 'request failed');
    this.name = 'WxgateError';
    this.statusCode = statusCode;
    this.code = code;
  }
}

const DEFAULT_PATHS = {
  login: '/login',
  refresh: '/token/refresh',
  logout: '/logout',
  decrypt: '/wx/decrypt',
  phone: '/wx/phone',
};

/**
 * Makes a client for one gateway.
 * @param {object} options
 * @param {string} options.baseUrl   the gateway, e.g. 'https://api.example.com'
 * @param {string} [options.app]     the app name, for a gateway serving several mini-programs
 * @param {object} [options.paths]   other endpoint paths than the defaults (see DEFAULT_PATHS)
 * @param {string} [options.storageKey='wxgate.session']  where the token is kept
 * @param {number} [options.renewBeforeMs=60000]  renew this long before the token expires
 * @param {object} [options.api]     the platform API: `wx`, `qq`, `tt`, `swan`, `ks`, `my` or
 *                                   uni-app's `uni` (default: the first of those globals found)
 * @param {object} [options.wx]      the former name of options.api, still accepted
 * @param {object} [options.loginOptions]  passed to login(), e.g. { provider: 'qq' } for uni.login,
 *                                   { scopes: 'auth_user' } for my.getAuthCode (default auth_base)
 */
function createClient(options) {
  const given = options.api || options.wx || platformGlobal();
  if (!given) throw new Error('wxgate: no platform API (pass options.api outside a mini-program)');
  const wxApi = isAlipay(given) ? alipayApi(given) : given;
  if (!options.baseUrl) throw new Error('wxgate: options.baseUrl is required');
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const paths = Object.assign({}, DEFAULT_PATHS, options.paths);
  const storageKey = options.storageKey || 'wxgate.session';
  const renewBeforeMs = options.renewBeforeMs === undefined ? 60000 : options.renewBeforeMs;
  let renewal = null; // the one renewal in flight, shared by every caller

  function stored() {
    try {
      const session = wxApi.getStorageSync(storageKey);
      return session && session.token ? session : null;
    } catch (e) {
      return null;
    }
  }

  function store(answer) {
    const session = {
      token: answer.token,
      expiresAt: Date.now() + answer.expires_in * 1000,
      openid: answer.openid,
      unionid: answer.unionid,
    };
    wxApi.setStorageSync(storageKey, session);
    return session;
  }

  function forget() {
    try {
      wxApi.removeStorageSync(storageKey);
    } catch (e) {
      // nothing stored
    }
  }

  /** wx.request as a promise; resolves with {statusCode, data, header} whatever the status. */
  function send(request, token) {
    const header = Object.assign({}, request.header);
    if (token) header.Authorization = 'Bearer ' + token;
    if (request.data !== undefined && !hasHeader(header, 'content-type')) {
      header['Content-Type'] = 'application/json';
    }
    return new Promise((resolve, reject) => {
      wxApi.request(Object.assign({}, request, {
        url: absolute(request.url),
        method: request.method || 'GET',
        header,
        success: resolve,
        fail: (error) => reject(new WxgateError(0, 'network', (error && error.errMsg) || 'request failed')),
      }));
    });
  }

  function absolute(url) {
    return /^(https?|wss?):\/\//.test(url) ? url : baseUrl + url;
  }

  function refused(response) {
    const data = response.data || {};
    return new WxgateError(response.statusCode, data.error, data.message);
  }

  /**
   * The platform's login(): wx.login, qq.login, tt.login, swan.login, ks.login, uni.login or
   * my.getAuthCode.
   */
  function wxLogin() {
    return new Promise((resolve, reject) => {
      const failed = (error) =>
        reject(new WxgateError(0, 'wx_login_failed', (error && error.errMsg) || 'login failed'));
      wxApi.login(Object.assign({}, options.loginOptions, {
        // tt.login without a logged-in host user gives only an anonymousCode, which the gateway
        // refuses: no code is a failed login here.
        success: (result) => (result && result.code ? resolve(result.code) : failed(result)),
        fail: failed,
      }));
    });
  }

  /** Logs in now (wx.login + POST /login) and stores the token. */
  async function login() {
    const body = { code: await wxLogin() };
    if (options.app) body.app = options.app;
    const response = await send({ url: paths.login, method: 'POST', data: body });
    if (response.statusCode !== 200) throw refused(response);
    return store(response.data);
  }

  async function refreshOrLogin() {
    const current = stored();
    if (current) {
      const response = await send({ url: paths.refresh, method: 'POST' }, current.token)
        .catch(() => null);
      if (response && response.statusCode === 200) return store(response.data);
    }
    forget();
    return login();
  }

  /** Renews the token; callers arriving while a renewal runs wait for that one. */
  function renew() {
    if (!renewal) {
      renewal = refreshOrLogin().finally(() => {
        renewal = null;
      });
    }
    return renewal;
  }

  /** A session whose token is not about to expire, renewing it first if needed. */
  function session() {
    const current = stored();
    if (current && current.expiresAt - renewBeforeMs > Date.now()) return Promise.resolve(current);
    return renew();
  }

  /** After `token` got a 401: renew, unless another caller already replaced that token. */
  function renewAfterRefusal(token) {
    const current = stored();
    if (current && current.token !== token) return Promise.resolve(current);
    return renew();
  }

  /**
   * wx.request through the gateway with the token attached; resolves with wx.request's result
   * ({statusCode, data, header}) for any status but a 401 that survives one renewal, which rejects.
   * `url` may be a path on the gateway ('/api/orders').
   */
  async function request(req) {
    let current = await session();
    let response = await send(req, current.token);
    if (response.statusCode !== 401) return response;
    current = await renewAfterRefusal(current.token);
    response = await send(req, current.token);
    if (response.statusCode === 401) throw refused(response);
    return response;
  }

  /** POST to one of the gateway's own endpoints; its JSON answer, or a WxgateError. */
  async function post(path, data) {
    const response = await request({ url: path, method: 'POST', data });
    if (response.statusCode !== 200) throw refused(response);
    return response.data;
  }

  /**
   * wx.connectSocket through the gateway with a fresh token in the Authorization header; returns
   * (a promise of) wx's SocketTask. `url` may be a path: ws(s):// plus the gateway's host.
   */
  async function connectSocket(req) {
    const current = await session();
    const header = Object.assign({}, req.header, { Authorization: 'Bearer ' + current.token });
    const url = absolute(req.url).replace(/^http/, 'ws');
    return wxApi.connectSocket(Object.assign({}, req, { url, header }));
  }

  /** Ends the login on the gateway (every token of it is revoked) and forgets the token. */
  async function logout() {
    const current = stored();
    forget();
    if (!current) return;
    const response = await send({ url: paths.logout, method: 'POST' }, current.token);
    if (response.statusCode !== 200 && response.statusCode !== 401) throw refused(response);
  }

  return {
    login,
    request,
    connectSocket,
    logout,
    /** The stored session ({token, expiresAt, openid, unionid}), or null. */
    session: stored,
    /** Decrypts wx.getUserInfo / share / run data: {encryptedData, iv[, rawData, signature]}. */
    decrypt: (payload) => post(paths.decrypt, payload),
    /** The phone number behind a getPhoneNumber button's code. */
    phone: (code) => post(paths.phone, { code }),
  };
}

/** The platform API of the mini-program runtime this runs in. */
function platformGlobal() {
  /* eslint-disable no-undef */
  if (typeof wx !== 'undefined') return wx;
  if (typeof qq !== 'undefined') return qq;
  if (typeof tt !== 'undefined') return tt;
  if (typeof swan !== 'undefined') return swan;
  if (typeof ks !== 'undefined') return ks;
  if (typeof my !== 'undefined') return my;
  if (typeof uni !== 'undefined') return uni;
  /* eslint-enable no-undef */
  return null;
}

/** Alipay's `my`: no login(), my.getAuthCode instead (uni-app's `uni` on Alipay has login()). */
function isAlipay(api) {
  return typeof api.login !== 'function' && typeof api.getAuthCode === 'function';
}

/**
 * Alipay's `my` in the shapes of `wx` that the client uses (AlipayDocs/open-docs, mini/api):
 * - login: my.getAuthCode({scopes}) gives `authCode` (scopes default 'auth_base', silent);
 * - request: `headers` instead of `header`, answered with `status`/`headers`; an HTTP error status
 *   arrives in fail() as error 19 with `status`, so a 401 still reaches the renewal logic; the
 *   answer is read as text and parsed as JSON where it is JSON, as wx.request does;
 * - storage: {key, data} objects instead of (key, value);
 * - sockets: my.connectSocket({multiple: true}) returns a SocketTask like wx's.
 */
function alipayApi(my) {
  const parsed = (data) => {
    if (typeof data !== 'string') return data;
    try {
      return JSON.parse(data);
    } catch (e) {
      return data;
    }
  };
  const answer = (res) => ({ statusCode: res.status, data: parsed(res.data), header: res.headers || {} });
  return {
    login({ success, fail, scopes }) {
      my.getAuthCode({
        scopes: scopes || 'auth_base',
        success: (res) => success({ code: res && res.authCode }),
        fail: (error) => fail({ errMsg: error && (error.errorMessage || 'getAuthCode error ' + error.error) }),
      });
    },
    request({ url, method, header, data, success, fail }) {
      return my.request({
        url,
        method,
        headers: header,
        data,
        dataType: 'text',
        success: (res) => success(answer(res)),
        fail: (error) => (error && error.error === 19 && error.status >= 100
          ? success(answer(error))
          : fail({ errMsg: error && (error.errorMessage || 'request error ' + error.error) })),
      });
    },
    setStorageSync: (key, data) => my.setStorageSync({ key, data }),
    getStorageSync: (key) => (my.getStorageSync({ key }) || {}).data,
    removeStorageSync: (key) => my.removeStorageSync({ key }),
    connectSocket: (request) => my.connectSocket(Object.assign({}, request, { multiple: true })),
  };
}

function hasHeader(header, name) {
  return Object.keys(header).some((key) => key.toLowerCase() === name);
}

module.exports = { createClient, WxgateError };
