//! The gateway's own endpoints, above the running state and the domain pieces: login (with
//! refresh and logout), `/wx/decrypt`, `/wx/phone`, `/wx/session/check`, the JWKS and forward-auth checks. The proxy,
//! the other way a request is answered, is `proxy`.

pub(crate) mod decrypt;
pub(crate) mod forward_auth;
pub(crate) mod jwks;
pub(crate) mod login;
pub(crate) mod phone;
pub(crate) mod push;
pub(crate) mod session_check;
pub(crate) mod stack;
pub(crate) mod wechat_api;
