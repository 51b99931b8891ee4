//! Active health checks (`[routes.health] path`): every `interval_ms`, each instance of the
//! group gets `GET path` on a new connection; a 2xx response head within `timeout_ms` keeps it
//! (or brings it back), anything else takes it out until a check passes.
//!
//! One task per group, started with the state that owns the group; it ends once that state is
//! gone (a reload replaced it and its last request ended).

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};

use super::group::UpstreamGroup;
use super::Upstream;
use crate::http::error::Body;

/// Starts the active checks of `group`, if it has them.
pub(crate) fn spawn(group: &Arc<UpstreamGroup>) {
    let Some(path) = group.health.path.clone() else {
        return;
    };
    let (interval, timeout) = (group.health.interval, group.health.timeout);
    let group: Weak<UpstreamGroup> = Arc::downgrade(group);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(running) = group.upgrade() else {
                return;
            };
            let mut checks = tokio::task::JoinSet::new();
            for index in 0..running.instances().len() {
                let (running, path) = (running.clone(), path.clone());
                checks.spawn(async move {
                    let upstream = &running.instances()[index].upstream;
                    let result = check(upstream, &path, timeout).await;
                    running.checked(index, result);
                });
            }
            drop(running);
            while checks.join_next().await.is_some() {}
        }
    });
}

/// One check: `GET path` with the instance's Host; `Err` says why it failed.
async fn check(upstream: &Upstream, path: &str, timeout: Duration) -> Result<(), String> {
    let checking = async {
        let mut sender = super::connect(upstream, timeout).await?;
        let request = Request::get(path)
            .header(HOST, upstream.host_header.clone())
            .header(USER_AGENT, HeaderValue::from_static("wxgate-health-check"))
            .header(CONNECTION, HeaderValue::from_static("close"))
            .body(Body::default())
            .map_err(|error| format!("request: {error}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("exchange: {error}"))?;
        match response.status().is_success() {
            true => Ok(()),
            false => Err(format!("status {}", response.status().as_u16())),
        }
    };
    match tokio::time::timeout(timeout, checking).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
