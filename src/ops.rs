//! The operators' side that runs above the running state: the admin listener (/metrics,
//! /healthz, /readyz) and config reloads. The metrics and logging themselves sit below, with the
//! domain pieces that record into them.

pub(crate) mod admin;
pub(crate) mod reload;
