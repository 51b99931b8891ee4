/**
 * A `wx` object for Node that does what the mini-program runtime does, for real (it stands for
 * `qq`, `tt`, `swan`, `ks` and `uni` as well: they share this API): wx.request is an
 * HTTP request, wx.connectSocket a WebSocket (handshake and text frames), storage a Map. wx.login
 * hands out mock codes, which the gateway's mock WeChat accepts (`name.N`: user `name`).
 * Counts what the client did, so tests can assert "exactly one login".
 */
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');

function createWx({ user = 'node', codes } = {}) {
  const storage = new Map();
  const calls = { wxLogin: 0, loginOptions: [], requests: [] };
  let issued = 0;
  const count = (path) => calls.requests.filter((request) => request.path === path).length;

  const wx = {
    login({ success, fail, ...loginOptions }) {
      calls.wxLogin += 1;
      calls.loginOptions.push(loginOptions);
      issued += 1;
      const code = codes ? codes.shift() : `${user}.${issued}`;
      setImmediate(() => success({ code, errMsg: 'login:ok' }));
    },

    request({ url, method = 'GET', data, header = {}, success, fail }) {
      calls.requests.push({ method, path: new URL(url).pathname });
      const body = data === undefined ? undefined : typeof data === 'string' ? data : JSON.stringify(data);
      const headers = Object.assign({}, header);
      if (body !== undefined) headers['Content-Length'] = Buffer.byteLength(body);
      const request = http.request(url, { method, headers }, (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          let text = Buffer.concat(chunks).toString('utf8');
          let parsed = text;
          if (String(response.headers['content-type']).includes('json')) {
            try {
              parsed = JSON.parse(text);
            } catch (e) {
              parsed = text;
            }
          }
          success({ statusCode: response.statusCode, data: parsed, header: response.headers, errMsg: 'request:ok' });
        });
      });
      request.on('error', (error) => fail({ errMsg: 'request:fail ' + error.message }));
      if (body !== undefined) request.write(body);
      request.end();
    },

    setStorageSync(key, value) {
      storage.set(key, JSON.parse(JSON.stringify(value)));
    },
    getStorageSync(key) {
      return storage.has(key) ? storage.get(key) : '';
    },
    removeStorageSync(key) {
      storage.delete(key);
    },

    connectSocket({ url, header = {} }) {
      return socketTask(url, header);
    },
  };
  return { wx, calls, count, storage };
}

/** A SocketTask over a real WebSocket: onOpen/onMessage/onError/onClose, send, close. */
function socketTask(url, header) {
  const handlers = { open: [], message: [], error: [], close: [] };
  const fired = { open: [], message: [], error: [], close: [] };
  const emit = (event, value) => {
    fired[event].push(value);
    handlers[event].forEach((handler) => handler(value));
  };
  let socket = null;
  let pending = Buffer.alloc(0);
  const request = http.request(url.replace(/^ws/, 'http'), {
    headers: Object.assign({}, header, {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
    }),
  });
  request.on('upgrade', (response, upgraded, head) => {
    socket = upgraded;
    emit('open', { header: response.headers });
    const receive = (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      for (let frame = readFrame(pending); frame; frame = readFrame(pending)) {
        pending = pending.subarray(frame.size);
        if (frame.opcode === 0x1) emit('message', { data: frame.payload.toString('utf8') });
        if (frame.opcode === 0x8) socket.end();
      }
    };
    if (head.length) receive(head);
    socket.on('data', receive);
    socket.on('close', () => emit('close', { code: 1000 }));
  });
  request.on('response', (response) => {
    response.resume();
    emit('error', { errMsg: 'connectSocket:fail status ' + response.statusCode, statusCode: response.statusCode });
  });
  request.on('error', (error) => emit('error', { errMsg: 'connectSocket:fail ' + error.message }));
  request.end();

  const on = (event) => (handler) => {
    handlers[event].push(handler);
    fired[event].forEach((value) => handler(value));
  };
  return {
    onOpen: on('open'),
    onMessage: on('message'),
    onError: on('error'),
    onClose: on('close'),
    send({ data }) {
      socket.write(frame(0x1, Buffer.from(String(data), 'utf8')));
    },
    close() {
      if (socket) socket.write(frame(0x8, Buffer.alloc(0)));
    },
  };
}

/** A masked client frame (RFC 6455 section 5.2), payloads under 64 KiB. */
function frame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const length = payload.length < 126 ? Buffer.from([0x80 | payload.length])
    : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.from(payload.map((byte, index) => byte ^ mask[index % 4]));
  return Buffer.concat([Buffer.from([0x80 | opcode]), length, mask, masked]);
}

/** One unmasked server frame from the front of `buffer`, or null if it is not all there yet. */
function readFrame(buffer) {
  if (buffer.length < 2) return null;
  let length = buffer[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buffer.length < 4) return null;
    length = buffer.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buffer.length < 10) return null;
    length = Number(buffer.readBigUInt64BE(2));
    offset = 10;
  }
  if (buffer.length < offset + length) return null;
  return { opcode: buffer[0] & 0x0f, payload: buffer.subarray(offset, offset + length), size: offset + length };
}

/**
 * Alipay's `my` in the shapes its documentation gives (AlipayDocs/open-docs, mini/api): no login()
 * but getAuthCode({scopes}) -> {authCode}; request({headers, dataType}) -> {status, data, headers},
 * an HTTP error status in fail() as {error: 19, status, data, headers}; storage by {key, data};
 * connectSocket({multiple: true}) -> a SocketTask. Built on the `wx` shim's real HTTP.
 */
function createMy({ user = 'node' } = {}) {
  const base = createWx({ user });
  const calls = Object.assign(base.calls, { scopes: [] });
  const my = {
    getAuthCode({ scopes, success }) {
      calls.scopes.push(scopes);
      base.wx.login({ success: ({ code }) => success({ authCode: code, authSuccessScopes: [scopes] }) });
    },
    request({ url, method, headers, data, dataType = 'json', success, fail }) {
      const body = data === undefined ? undefined : JSON.stringify(data);
      base.wx.request({
        url,
        method,
        data: body,
        header: headers,
        success: (res) => {
          const text = typeof res.data === 'string' ? res.data : JSON.stringify(res.data);
          const answer = { status: res.statusCode, data: dataType === 'json' ? JSON.parse(text) : text, headers: res.header };
          if (res.statusCode >= 200 && res.statusCode < 300) success(answer);
          else fail(Object.assign({ error: 19, errorMessage: 'http status error' }, answer));
        },
        fail: () => fail({ error: 12, errorMessage: 'network error' }),
      });
    },
    setStorageSync: ({ key, data }) => base.wx.setStorageSync(key, data),
    getStorageSync: ({ key }) => ({ data: base.storage.has(key) ? base.storage.get(key) : null }),
    removeStorageSync: ({ key }) => base.wx.removeStorageSync(key),
    connectSocket({ url, header, multiple }) {
      if (!multiple) throw new Error('my.connectSocket without multiple returns no SocketTask');
      return base.wx.connectSocket({ url, header });
    },
  };
  return { my, calls, count: base.count, storage: base.storage };
}

module.exports = { createWx, createMy };
