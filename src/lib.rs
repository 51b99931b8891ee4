//! wxgate: an authentication gateway for WeChat mini-programs.
//!
//! A mini-program posts its `wx.login()` code to the login endpoint; the gateway exchanges it with
//! WeChat (code2session), keeps the `session_key` to itself and answers with a signed JWT. Every
//! other request carries that token; the gateway verifies it and forwards the request upstream with
//! a trustworthy `X-OpenId`.
//!
//! # One request, one direction
//! ```text
//! accept, limits, timeouts (server) -> normalize the path (path)         unsafe -> 400
//!   -> login endpoint? (login -> wechat -> token, session)
//!   -> refresh / logout? (login::lifecycle -> token, session)
//!   -> /wx/decrypt? (decrypt -> auth, session)
//!   -> /wx/phone? (phone -> auth, access_token -> wechat)
//!   -> forward-auth endpoint? (forward_auth -> routes -> auth; trust)   200 + X-OpenId / 401
//!   -> JWKS? (jwks -> token)
//!   -> pick the route (routes)                                          none -> 404
//!   -> strip hop-by-hop and gateway-owned headers (headers)
//!   -> authorize: mode, token, apps, revocations, rate limit (auth::authorize)  bad token -> 401
//!   -> add identity and X-Forwarded-* (headers)
//!   -> forward, streaming, with the body limit (proxy)         unreachable -> 502, slow -> 504
//! every failure -> GatewayError (error) -> one JSON response builder
//! every request -> an id (request_id), counted (metrics), one log line; on the state current when
//! it arrived (state), which SIGHUP swaps (reload)
//! ```
//!
//! # Modules
//! | module | holds |
//! | --- | --- |
//! | [`config`] | TOML + `WXGATE_SECTION__KEY` overlay -> validated [`config::Config`] |
//! | [`error`] | [`error::GatewayError`]: status, code, the JSON error response |
//! | `body` | the response body type ([`error::Body`], re-exported there) and the JSON and in-memory bodies the gateway builds |
//! | [`server`] | accept loop, connection limit, graceful shutdown; `server/workers.rs`: one single-threaded runtime per core serving connections; `server/connection.rs`: TLS handshake, HTTP/1.1 or HTTP/2, limits; `server/keepalive.rs`: idle HTTP/1.1 connections parked without buffers, `server/trim.rs`: the memory they freed returned; `server/dispatch.rs`: path -> endpoint or route, metrics, the log line |
//! | `state` | the running state built from one config, carried over on reload |
//! | `reload` | SIGHUP and file-watch config reloads, swapped in atomically |
//! | `admin` | the admin listener: /metrics, /healthz, /readyz |
//! | `client` | the client's connection (address, scheme, upstream timer, slot) and a small body read whole within the limits |
//! | `simple_http` | a plain HTTP/1.1 server for one handler (admin, HTTPS redirect, mock WeChat, echo), below the gateway's own server |
//! | `metrics` | the Prometheus registry and every metric |
//! | [`request_id`] | X-Request-Id: kept when sane, generated otherwise |
//! | [`rate_limit`] | token buckets: logins per client IP, per openid per route |
//! | [`tls`] | rustls: certificates by SNI with hot reload, upstream client TLS |
//! | [`path`] | path normalization |
//! | [`routes`] | route table, longest-prefix match, auth mode per route |
//! | [`headers`] | hop-by-hop removal, gateway-owned (identity, forwarding) headers; `headers/request_head.rs`: heads refused up front (chunked twice, HTTP/2 host against `:authority`) and the client's host |
//! | [`token`] | key loading (kids, rotation, JWKs), issuing and verifying JWTs with a pinned algorithm |
//! | `identity` | [`auth::Identity`]: who a verified token says the caller is, below the token code and the header rules |
//! | [`auth`] | the one authorization step (`authorize`) of the proxy, WebSocket upgrades, forward-auth and the gateway's own endpoints: bearer extraction, verification, the route's `apps`, revocations and generation, the per-user rate limit |
//! | `forward_auth` | the auth-decision endpoint for ingress controllers |
//! | `jwks` | `/.well-known/jwks.json` |
//! | [`trust`] | `server.trusted_proxies`: who may describe the original request |
//! | `wechat` | the WeChat API client: one retry, circuit breaker (`wechat/breaker.rs`) |
//! | `login` | the login endpoint; same-code logins share one call (`single_flight`); `login/lifecycle.rs`: refresh and logout |
//! | `single_flight` | concurrent calls with one key share one answer (logins with one code) |
//! | [`session`] | the session store trait: embedded file, in memory or Redis; sessions (session_key) and revocations; `session/deny_list.rs`: the in-memory deny-list, which refuses rather than evicts; `session/embedded.rs`: the default store, a database file; `session/embedded/writer.rs`: its writer thread, group commits |
//! | `decrypt` | `/wx/decrypt`: WeChat's encrypted user data, with the caller's session_key |
//! | `phone` | `/wx/phone`: getuserphonenumber |
//! | `access_token` | each app's access_token: cached, single flight, shared by the fleet (from the store and the WeChat client it is handed, not the whole state) |
//! | `proxy` | request/response rewriting, the streamed body limit; `proxy/client_body.rs`: the forwarded body's read timeout and client-fault errors |
//! | `upstream` | upstream connections (http, https), pooled per worker thread; `upstream/deadline.rs`: the upstream timeout, one timer per client connection; `upstream/in_flight.rs`: the process-wide cap on requests in flight |
//! | `websocket` | WebSocket-only upgrade detection and the authenticated byte relay, holding its connection slot, closed when idle |
//! | [`mock_wechat`] | the fake WeChat API for offline use and tests |
//! | [`echo`] | an upstream that describes what it received (demo and tests) |
//! | [`demo`] | `wxgate demo`: mock WeChat + echo upstream + gateway |
//! | [`fuzzing`] | the fuzz targets' entry points (token, path, login body, decrypt input) and their invariants |
//! | `ascii` | whole-text byte checks the compiler vectorizes (tokens, paths, ids) |
//! | [`logging`] | tracing setup, with no `log` bridge (secrets in dependency logs); `logging/lines.rs`: the text and JSON layouts, the request a line belongs to; `logging/request_line.rs`: the request line, laid out directly |

#![warn(missing_docs)]

mod access_token;
mod admin;
mod ascii;
pub mod auth;
mod body;
mod client;
pub mod config;
mod decrypt;
pub mod demo;
pub mod echo;
pub mod error;
mod forward_auth;
pub mod fuzzing;
pub mod headers;
mod identity;
mod jwks;
pub mod logging;
mod login;
mod metrics;
pub mod mock_wechat;
pub mod path;
mod phone;
mod proxy;
pub mod rate_limit;
mod reload;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod session;
mod simple_http;
mod single_flight;
mod state;
pub mod tls;
pub mod token;
pub mod trust;
mod upstream;
mod websocket;
mod wechat;
