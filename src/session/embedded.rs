//! The embedded session store, the default: one database file of this gateway's (`session.path`,
//! redb), so that sessions, logouts and the access_token survive a restart without Redis.
//!
//! Every write goes to one writer thread, which applies whatever has queued up in one transaction
//! and commits it to disk (fsync) before any of them is answered: a logout answers 200, and a login
//! answers, only once durable; under load, many share one commit. Revocations are also kept in
//! memory (loaded at start), so the per-request check never reads the file. Expired entries are
//! removed in the background. The file holds session keys: it is created 0600.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod writer;
use writer::{Write, Writer};

use super::deny_list::{DenyList, Recorded};
use super::{Session, SessionStore, StoreError, MEMORY_REVOCATIONS};
use crate::config::{Secret, SessionConfig};

/// `appid \n openid` -> the session as JSON, with its expiry.
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
/// `sid:...` / `jti:...` -> until when it is revoked (Unix milliseconds).
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked");
/// appid -> the access_token as JSON, with its expiry.
const ACCESS_TOKENS: TableDefinition<&str, &str> = TableDefinition::new("access_tokens");
/// `generation` -> when this database began (Unix seconds).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const GENERATION: &str = "generation";

/// How often expired entries are removed from the file.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// Most writes applied in one commit.
const MAX_BATCH: usize = 512;

/// A session as stored: the session and when it expires.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    #[serde(flatten)]
    session: Session,
    expires_at_ms: u64,
}

/// An access_token as stored.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    token: String,
    expires_at_ms: u64,
}

/// The default session store: this gateway's database file, with the live revocations mirrored in
/// memory for the per-request check.
pub(crate) struct EmbeddedStore {
    path: PathBuf,
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    revoked: Arc<DenyList>,
    generation: u64,
    session_ttl: Duration,
    /// Delivered pushes; in memory (a restart may forward one redelivery again).
    claims: super::claims::LocalClaims,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("revoked", &self.revoked.len())
            .field("generation", &self.generation)
            .finish()
    }
}

/// A database error in words, naming the file.
fn failed(path: &Path, what: &str, error: impl fmt::Display) -> StoreError {
    StoreError(format!("{what} {}: {error}", path.display()))
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

fn user_key(appid: &str, openid: &str) -> String {
    format!("{appid}\n{openid}")
}

fn until(ttl: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

impl EmbeddedStore {
    /// Opens (or creates, with its directory, 0600) the database at `path`, records a new
    /// generation when it has none (a new or replaced file), and loads the live revocations.
    /// An unreadable or corrupt file is an error naming `session.path`: never a fresh start that
    /// would forget revocations silently.
    pub(crate) fn open(path: &Path, config: &SessionConfig) -> Result<Self, String> {
        let refuse = |error: &dyn fmt::Display| {
            format!(
                "session.path: cannot use {} as the session database: {error}",
                path.display()
            )
        };
        create_private_file(path).map_err(|error| refuse(&error))?;
        let db = Database::create(path).map_err(|error| refuse(&error))?;
        let revoked = DenyList::new(
            usize::try_from(config.max_entries.saturating_mul(4)).unwrap_or(usize::MAX),
        );
        let generation = prepare(&db, &revoked).map_err(|error| refuse(&error))?;
        let db = Arc::new(db);
        let revoked = Arc::new(revoked);
        let (writes, queue) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            path: path.to_path_buf(),
        };
        std::thread::Builder::new()
            .name("wxgate-store".into())
            .spawn(move || writer.run(&queue))
            .map_err(|error| refuse(&error))?;
        tracing::info!(path = %path.display(), generation, "session store opened");
        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            db,
            writes,
            revoked,
            generation,
            session_ttl: config.ttl,
            claims: super::claims::LocalClaims::default(),
        })
    }

    /// Queues a write and waits until it is committed.
    async fn write<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (done, outcome) = oneshot::channel();
        self.writes
            .send(make(done))
            .map_err(|_| StoreError("the session store's writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError("the session store's writer has stopped".into()))?
    }
}

/// Creates the file (and its directory) readable by this user only, when it does not exist.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(directory) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Creates the tables, reads or records the generation, and loads the live revocations.
fn prepare(db: &Database, revoked: &DenyList) -> Result<u64, String> {
    let transaction = db.begin_write().map_err(|error| error.to_string())?;
    let generation = {
        transaction
            .open_table(SESSIONS)
            .map_err(|error| error.to_string())?;
        transaction
            .open_table(ACCESS_TOKENS)
            .map_err(|error| error.to_string())?;
        let mut meta = transaction
            .open_table(META)
            .map_err(|error| error.to_string())?;
        let known = meta
            .get(GENERATION)
            .map_err(|error| error.to_string())?
            .map(|value| value.value());
        match known {
            Some(generation) => generation,
            None => {
                let generation = super::unix_now();
                meta.insert(GENERATION, generation)
                    .map_err(|error| error.to_string())?;
                tracing::warn!(
                    generation,
                    "the session database has no generation (new or replaced): tokens issued \
                     before now are refused, everyone logs in again"
                );
                generation
            }
        }
    };
    let now = now_ms();
    {
        let table = transaction
            .open_table(REVOKED)
            .map_err(|error| error.to_string())?;
        for entry in table.iter().map_err(|error| error.to_string())? {
            let (id, until) = entry.map_err(|error| error.to_string())?;
            let until = until.value();
            if until > now {
                let ttl = Duration::from_millis(until - now);
                revoked
                    .insert(&[id.value().to_string()], ttl)
                    .map_err(|error| error.0)?;
            }
        }
    }
    transaction.commit().map_err(|error| error.to_string())?;
    Ok(generation)
}

#[async_trait::async_trait]
impl SessionStore for EmbeddedStore {
    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        // A login whose logout could not be recorded is not made: fail closed.
        if !self.revoked.has_room() {
            return Err(StoreError(
                "the revocation deny-list is full; no new login until entries expire".into(),
            ));
        }
        let expires = until(self.session_ttl);
        self.write(|done| Write::Save(session.clone(), expires, done))
            .await
    }

    async fn touch(&self, appid: &str, openid: &str) -> Result<Option<Session>, StoreError> {
        let key = user_key(appid, openid);
        self.write(|done| Write::Touch(key, super::unix_now(), done))
            .await
    }

    async fn end(&self, appid: &str, openid: &str, sid: &str) -> Result<(), StoreError> {
        let key = user_key(appid, openid);
        let sid = sid.to_string();
        self.write(|done| Write::End(key, sid, done)).await
    }

    async fn revoke(&self, ids: &[String], ttl: Duration) -> Result<(), StoreError> {
        // Room is checked (not taken) first, then the file: what is answered 200 is on disk.
        let fresh: Vec<String> = ids
            .iter()
            .filter(|id| !self.revoked.contains(id))
            .cloned()
            .collect();
        if !fresh.is_empty() && !self.revoked.has_room() {
            return Err(StoreError(
                "the revocation deny-list is full (session.max_entries x 4 live logouts)".into(),
            ));
        }
        let until_ms = until(ttl);
        self.write(|done| Write::Revoke(ids.to_vec(), until_ms, done))
            .await?;
        if self.revoked.insert(ids, ttl)? == Recorded::New {
            // After the entries: a check that read the previous count looks them up again.
            MEMORY_REVOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    async fn any_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        Ok(ids.iter().any(|id| self.revoked.contains(id)))
    }

    fn revocation_count(&self) -> Option<u64> {
        Some(MEMORY_REVOCATIONS.load(std::sync::atomic::Ordering::Acquire))
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    async fn shared_access_token(
        &self,
        appid: &str,
    ) -> Result<Option<(Secret, Duration)>, StoreError> {
        let read = || -> Result<Option<StoredToken>, String> {
            let transaction = self.db.begin_read().map_err(|error| error.to_string())?;
            let table = transaction
                .open_table(ACCESS_TOKENS)
                .map_err(|error| error.to_string())?;
            let stored = table.get(appid).map_err(|error| error.to_string())?;
            Ok(stored.and_then(|json| serde_json::from_str(json.value()).ok()))
        };
        let stored = read().map_err(|error| failed(&self.path, "reading", error))?;
        let now = now_ms();
        Ok(stored
            .filter(|stored| stored.expires_at_ms > now)
            .map(|stored| {
                let left = Duration::from_millis(stored.expires_at_ms - now);
                (Secret::new(stored.token), left)
            }))
    }

    async fn share_access_token(
        &self,
        appid: &str,
        token: &Secret,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let stored = StoredToken {
            token: token.expose().to_string(),
            expires_at_ms: until(ttl),
        };
        let appid = appid.to_string();
        self.write(|done| Write::ShareToken(appid, stored, done))
            .await
    }

    async fn drop_access_token(&self, appid: &str, stale: &Secret) -> Result<(), StoreError> {
        let (appid, stale) = (appid.to_string(), stale.expose().to_string());
        self.write(|done| Write::DropToken(appid, stale, done))
            .await
    }

    async fn try_lock(&self, _: &str, _: Duration) -> Result<bool, StoreError> {
        // One gateway owns the file: its own single flight (in `access_token`) is the only lock.
        Ok(true)
    }

    async fn unlock(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn claim(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.claims.claim(name, ttl))
    }

    async fn release_claim(&self, name: &str) -> Result<(), StoreError> {
        self.claims.release(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
