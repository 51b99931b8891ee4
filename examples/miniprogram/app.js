// The mini-program's entry: one wxgate client for the whole app.
const wxgate = require('./wxgate.js');

App({
  // Your gateway (add its domain to the mini-program's request and socket domain lists).
  gateway: wxgate.createClient({ baseUrl: 'https://api.example.com' }),
});
