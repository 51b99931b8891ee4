//! Every integration test in one binary: each module below is one area of the gateway, driven over
//! real loopback sockets (see `common`). One binary instead of one per file keeps a clean build's
//! link time and disk use down; `tests/logs.rs` stays separate because it installs the process-wide
//! log subscriber.

#[path = "../common/mod.rs"]
mod common;

mod apps;
mod assertions;
mod backend_verify;
mod body_limits;
mod cli;
mod concurrency;
mod config_reference;
mod curl;
mod decrypt;
mod deploy;
mod dev_tools;
mod docs;
mod durability;
mod examples;
mod fleet_limits;
mod forward_auth;
mod fuzz_corpus;
mod jwks;
mod keepalive;
mod lifecycle;
mod login;
mod managed_redis;
mod metrics;
mod miniprogram;
mod nginx;
mod openapi;
mod paths;
mod phone;
mod platform_errors;
mod platform_tokens;
mod platforms;
mod proxy;
mod push;
mod rate_limits;
mod readme;
mod redis;
mod reload;
mod request_heads;
mod request_id;
mod resilience;
mod revocations;
mod secrets;
mod session_check;
mod sessions;
mod smuggling;
mod tls;
mod token_attacks;
mod tokens;
mod tracing;
mod trusted_proxies;
mod tunnels;
mod upstream_groups;
mod upstream_pool;
mod websocket;
mod wechat_api;
