//! The gateway as the single owner of each app's access_token (see `shared/wechat-api.md`):
//! fetched from stable_token, cached until a margin before it expires, fetched once for all
//! concurrent callers of a gateway (a per-app async mutex) and once for the whole fleet (the
//! session store: the token shared with a TTL, and a short lock while one replica fetches), and
//! dropped when WeChat calls it stale (40001/40014/42001) so the next caller fetches again.
//!
//! If the store is unreachable, a replica fetches a WeChat token on its own: stable_token's normal
//! mode hands every caller the same token, so this costs a call, not an outage. QQ's getToken
//! replaces the previous token on every fetch (and Baidu does not say it does not), so their
//! tokens have a single owner: only the replica holding the fleet lock fetches, and without the
//! store a call needing one is refused (503) rather than knocking out the fleet's token.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::config::{Platform, Secret, WeChatApp};
use crate::http::error::GatewayError;
use crate::session::SessionStore;
use crate::wechat::{TokenAnswer, WeChatClient};

/// Where access_tokens come from: the store the fleet shares them through, and WeChat.
#[derive(Clone, Copy)]
pub(crate) struct Sources<'a> {
    /// The session store (shared access_tokens, the fleet-wide fetch lock).
    pub(crate) sessions: &'a dyn SessionStore,
    /// The WeChat client (stable_token).
    pub(crate) wechat: &'a WeChatClient,
}

/// Tokens are refreshed this long before WeChat's expiry.
const MARGIN: Duration = Duration::from_secs(300);
/// How long one replica may hold the fleet-wide fetch lock.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How often a replica waiting for another's fetch looks again.
const POLL: Duration = Duration::from_millis(50);

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// Every app's access_token; built once at start.
pub(crate) struct AccessTokens {
    apps: HashMap<String, Mutex<Option<Cached>>>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("apps", &self.apps.len())
            .finish()
    }
}

impl AccessTokens {
    pub(crate) fn new(apps: &[WeChatApp]) -> Self {
        AccessTokens {
            apps: apps
                .iter()
                .map(|app| (app.appid.clone(), Mutex::new(None)))
                .collect(),
        }
    }

    /// The app's current access_token, fetching it if need be (once, however many ask).
    pub(crate) async fn get(
        &self,
        from: Sources<'_>,
        app: &WeChatApp,
    ) -> Result<Secret, GatewayError> {
        let slot = self.apps.get(&app.appid).ok_or(GatewayError::Internal(
            "an app without an access_token slot",
        ))?;
        let mut cached = slot.lock().await;
        if let Some(current) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(current.token.clone());
        }
        let fresh = fetch_for_fleet(from, app).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Calls a WeChat API with the app's access_token; when WeChat calls the token stale, drops
    /// it, fetches a new one (once for every caller) and calls once more.
    pub(crate) async fn call_with_token<T, Call, Answered>(
        &self,
        from: Sources<'_>,
        app: &WeChatApp,
        mut call: Call,
    ) -> Result<T, GatewayError>
    where
        Call: FnMut(Secret) -> Answered,
        Answered: Future<Output = Result<TokenAnswer<T>, GatewayError>>,
    {
        let token = self.get(from, app).await?;
        if let TokenAnswer::Done(answer) = call(token.clone()).await? {
            return Ok(answer);
        }
        tracing::info!(appid = %app.appid, "access_token refused as stale; fetching a new one");
        self.invalidate(from, app, &token).await;
        let token = self.get(from, app).await?;
        match call(token).await? {
            TokenAnswer::Done(answer) => Ok(answer),
            TokenAnswer::StaleToken => {
                tracing::warn!(appid = %app.appid, "WeChat refused a freshly fetched access_token");
                Err(GatewayError::WeChatOther(40001))
            }
        }
    }

    /// Forgets a token WeChat refused, here and in the shared store, unless it was replaced
    /// meanwhile.
    pub(crate) async fn invalidate(&self, from: Sources<'_>, app: &WeChatApp, stale: &Secret) {
        if let Some(slot) = self.apps.get(&app.appid) {
            let mut cached = slot.lock().await;
            if cached.as_ref().is_some_and(|c| c.token == *stale) {
                *cached = None;
            }
        }
        if let Err(error) = from.sessions.drop_access_token(&app.appid, stale).await {
            tracing::warn!(%error, "could not drop the stale shared access_token");
        }
    }
}

/// Whether fetching the app's token may knock out the copies other replicas hold, so that only
/// the holder of the fleet lock may fetch it.
fn single_owner(app: &WeChatApp) -> bool {
    matches!(app.platform, Platform::Qq | Platform::Baidu)
}

/// Fetches the token without the fleet lock, where the platform allows it.
async fn fetch_alone(
    from: Sources<'_>,
    app: &WeChatApp,
    why: GatewayError,
) -> Result<Cached, GatewayError> {
    if single_owner(app) {
        tracing::warn!(appid = %app.appid, "this platform's access_token has one owner in the fleet: not fetched without the fleet lock");
        return Err(why);
    }
    tracing::warn!(appid = %app.appid, "fetching the access_token without the fleet lock");
    fetch(from, app, None).await
}

/// Takes the fleet's token from the store, or fetches it under the fleet-wide lock, or waits for
/// the replica that holds the lock.
async fn fetch_for_fleet(from: Sources<'_>, app: &WeChatApp) -> Result<Cached, GatewayError> {
    let store = from.sessions;
    let lock = format!("access_token:{}", app.appid);
    let give_up = Instant::now() + LOCK_TTL;
    let store_down = |error: crate::session::StoreError| {
        tracing::warn!(%error, "session store unavailable for the shared access_token");
        GatewayError::SessionStoreUnavailable
    };
    loop {
        match store.shared_access_token(&app.appid).await {
            Ok(Some((token, ttl))) if ttl > POLL => {
                return Ok(Cached {
                    token,
                    refresh_at: Instant::now() + ttl,
                })
            }
            Ok(_) => {}
            Err(error) => return fetch_alone(from, app, store_down(error)).await,
        }
        match store.try_lock(&lock, LOCK_TTL).await {
            Ok(true) => {
                // Looked again under the lock: the holder before us may have shared a token
                // between our read above and our taking the lock.
                let fetched = match store.shared_access_token(&app.appid).await {
                    Ok(Some((token, ttl))) if ttl > POLL => Ok(Cached {
                        token,
                        refresh_at: Instant::now() + ttl,
                    }),
                    _ => fetch(from, app, Some(&lock)).await,
                };
                if let Err(error) = store.unlock(&lock).await {
                    tracing::warn!(%error, "could not release the access_token lock");
                }
                return fetched;
            }
            Ok(false) if Instant::now() < give_up => tokio::time::sleep(POLL).await,
            Ok(false) => {
                let busy = GatewayError::WeChatUnavailable {
                    retry_after_secs: 1,
                };
                return fetch_alone(from, app, busy).await;
            }
            Err(error) => return fetch_alone(from, app, store_down(error)).await,
        }
    }
}

/// Calls stable_token and, when holding the fleet lock, shares the result.
async fn fetch(
    from: Sources<'_>,
    app: &WeChatApp,
    holding_lock: Option<&str>,
) -> Result<Cached, GatewayError> {
    let fetched = from.wechat.access_token(app).await?;
    let lifetime = Duration::from_secs(fetched.expires_in).saturating_sub(MARGIN);
    let lifetime = lifetime.max(Duration::from_secs(1));
    if holding_lock.is_some() {
        if let Err(error) = from
            .sessions
            .share_access_token(&app.appid, &fetched.token, lifetime)
            .await
        {
            tracing::warn!(%error, "could not share the access_token");
        }
    }
    tracing::info!(appid = %app.appid, expires_in = fetched.expires_in, "fetched an access_token");
    Ok(Cached {
        token: fetched.token,
        refresh_at: Instant::now() + lifetime,
    })
}
