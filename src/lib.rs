//! wxgate: an authentication gateway for WeChat mini-programs.
//!
//! A mini-program posts its `wx.login()` code to the login endpoint; the gateway exchanges it with
//! WeChat (code2session), keeps the `session_key` to itself and answers with a signed JWT. Every
//! other request carries that token; the gateway verifies it and forwards the request upstream with
//! a trustworthy `X-OpenId`.
//!
//! # One request, one direction
//! ```text
//! accept, limits, timeouts (server) -> normalize the path (http::path)   unsafe -> 400
//!   -> login endpoint? (login -> wechat -> token, session)
//!   -> refresh / logout? (login::lifecycle -> token, session)
//!   -> /wx/decrypt? (decrypt -> auth, session)
//!   -> /wx/phone? (phone -> auth, access_token -> wechat)
//!   -> forward-auth endpoint? (forward_auth -> routes -> auth; trust)   200 + X-OpenId / 401
//!   -> JWKS? (jwks -> token)
//!   -> pick the route (routes)                                          none -> 404
//!   -> strip hop-by-hop headers (headers::remove_hop_by_hop: its proof is needed below)
//!   -> authorize: mode, token, apps, revocations, rate limit (auth::authorize)  bad token -> 401
//!   -> strip client copies of gateway-owned headers, then set identity, X-Forwarded-* and
//!      X-Request-Id, in one call (headers::set_gateway_owned)
//!   -> forward, streaming, with the body limit (proxy)         unreachable -> 502, slow -> 504
//! every failure -> GatewayError (error) -> one JSON response builder
//! every request -> an id (request_id), counted (metrics), one log line; on the state current when
//! it arrived (state), which SIGHUP swaps (reload)
//! ```
//!
//! # Modules, bottom to top
//! No import cycle between top-level modules (`module-cycles src`); endpoints use the state and
//! the domain pieces, never the other way round. Under everything, HTTP building blocks that know
//! nothing of the gateway (`http/`). The config is plain data (values and file paths) and uses
//! nothing but those: keys, CA files and certificates are read where the running state is built
//! (`state::Loaded`), which `wxgate check` runs too.
//!
//! | layer | module | holds |
//! | --- | --- | --- |
//! | HTTP building blocks | `http/` | [`error`] ([`error::GatewayError`]: status, code, the JSON error response) and `body` (the response body type, the bodies the gateway builds); [`path`] normalization; [`headers`] (hop-by-hop removal, gateway-owned headers, `headers/request_head.rs`: heads refused up front, the client's host); [`request_id`]; [`trust`] (`server.trusted_proxies`); `websocket` (WebSocket-only upgrades and the relay) |
//! | | `identity`, `ascii`, `per_thread`, `maybe_boxed` | who a token says the caller is; whole-text byte checks the compiler vectorizes, hex digits; what the per-thread tables share (owner ids, one fast hasher, entries stamped with their owner); a future inline or boxed (the request path's rare branches) |
//! | plain data | [`config`] | TOML + `WXGATE_SECTION__KEY` overlay -> validated [`config::Config`]; `config/route.rs`: `[[routes]]` and rate limits; `config/jwt.rs`: the keys as configured; `config/server.rs`: certificate files |
//! | | [`tls`], [`logging`], `metrics`, `telemetry` | rustls (certificates by SNI with hot reload, upstream client TLS); tracing setup with no `log` bridge (`logging/lines.rs`, `logging/request_line.rs`); the Prometheus registry; OpenTelemetry spans and W3C trace context (`telemetry/export.rs`: OTLP/HTTP to the collector) |
//! | domain pieces | [`token`] | key loading from `[jwt]` (`token/load.rs`; kids, rotation, JWKs), issuing and verifying JWTs with a pinned algorithm, the recent-verification cache |
//! | | [`session`] | the store trait: embedded file (`session/embedded.rs`, its writer thread in `embedded/writer.rs`), memory (`session/deny_list.rs`: refuses rather than evicts) or Redis (`session/redis.rs`); the generation marker |
//! | | `wechat`, `access_token` | the WeChat API client (one retry, `wechat/breaker.rs`); each app's access_token, cached, single flight, shared by the fleet |
//! | | [`rate_limit`], `single_flight` | token buckets (logins per IP, refreshes per user, per openid per route); concurrent calls with one key sharing one answer |
//! | | [`routes`], `upstream` | the running route table built from the configured routes (longest-prefix match, the upstream path); a route's upstream instances made ready (TLS settings, their pools) and their connections pooled per worker (`upstream/deadline.rs`, `upstream/in_flight.rs`); `upstream/group.rs`: balance and health, `upstream/health.rs`: active checks |
//! | running state | `state` | everything a request needs, built in one place from a config (`AppState::build`; files read by `Loaded`), carried over on reload |
//! | policy and the client | [`auth`], `client` | the one authorization step (`authorize`): token, `apps`, revocations, generation, rate limit; the client's connection and a small body read whole |
//! | endpoints | `endpoints/` | `login` (with `login/lifecycle.rs`: refresh, logout), `decrypt`, `phone`, `jwks`, `forward_auth`; `stack.rs`: the endpoints that wait on WeChat or the store as one tower service, load shed at `server.endpoint_max_in_flight` |
//! | | `proxy` | request and response rewriting, the streamed body limit (`proxy/client_body.rs`: read timeout, client-fault errors), the exchange with a group's instances or under a trace (`proxy/exchange.rs`) |
//! | server and operations | [`server`] | accept loop, connection limit, graceful shutdown; `server/workers.rs`, `server/connection.rs`, `server/keepalive.rs`, `server/trim.rs`, `server/dispatch.rs` (path -> endpoint or route, the log line) |
//! | | `ops/` | `admin` (/metrics, /healthz, /readyz; tower layers: load shed, concurrency limit, timeout), `reload` (SIGHUP and file watch; `reload/restart_only.rs`) |
//! | | `simple_http` | a plain HTTP/1.1 server for one handler (admin, redirect, dev tools) |
//! | dev tools | `dev/` | `mock_wechat`, `echo`, `demo`, `fuzzing` (re-exported at the root, behind the default `dev-tools` feature): used by `wxgate demo`/`mock-wechat`, the tests and the fuzz targets, never by the request path |

#![warn(missing_docs)]

mod access_token;
mod ascii;
pub mod auth;
mod client;
pub mod config;
#[cfg(feature = "dev-tools")]
mod dev;
mod endpoints;
mod http;
mod identity;
pub mod logging;
mod maybe_boxed;
mod metrics;
mod ops;
mod per_thread;
mod proxy;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod session;
mod simple_http;
mod single_flight;
mod state;
mod telemetry;
pub mod tls;
pub mod token;
mod upstream;
mod wechat;

pub use self::http::{error, headers, path, request_id, trust};
#[cfg(feature = "dev-tools")]
pub use dev::{demo, echo, fuzzing, mock_wechat};
