//! HTTP building blocks that know nothing of the gateway's config, keys or state: the response
//! body type and the bodies the gateway builds (`body`), the error every failure becomes and its
//! JSON response (`error`), path normalization (`path`), hop-by-hop and gateway-owned headers
//! (`headers`), request ids (`request_id`), who may describe the original request (`trust`) and
//! WebSocket upgrades and their relay (`websocket`). Everything above uses them; they use only
//! `identity` and `ascii`.

pub(crate) mod body;
pub mod error;
pub mod headers;
pub mod path;
pub mod request_id;
pub mod trust;
pub(crate) mod websocket;
