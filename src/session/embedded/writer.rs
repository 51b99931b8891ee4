//! The embedded store's writer thread: every write is queued to it, and it applies whatever has
//! queued up in one transaction and commits it to disk before answering any of them.

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::{
    failed, now_ms, user_key, StoredSession, StoredToken, ACCESS_TOKENS, CLEANUP_INTERVAL,
    MAX_BATCH, REVOKED, SESSIONS,
};
use crate::session::{Session, StoreError};

/// One write, with where its outcome goes once committed.
pub(super) enum Write {
    Save(Session, u64, oneshot::Sender<Result<(), StoreError>>),
    Touch(
        String,
        u64,
        oneshot::Sender<Result<Option<Session>, StoreError>>,
    ),
    End(String, String, oneshot::Sender<Result<(), StoreError>>),
    Revoke(Vec<String>, u64, oneshot::Sender<Result<(), StoreError>>),
    ShareToken(String, StoredToken, oneshot::Sender<Result<(), StoreError>>),
    DropToken(String, String, oneshot::Sender<Result<(), StoreError>>),
}

/// The thread that applies writes, many to a commit.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) path: PathBuf,
}

impl Writer {
    pub(super) fn run(self, queue: &mpsc::Receiver<Write>) {
        let mut next_cleanup = std::time::Instant::now() + CLEANUP_INTERVAL;
        loop {
            let wait = next_cleanup.saturating_duration_since(std::time::Instant::now());
            let first = match queue.recv_timeout(wait) {
                Ok(write) => write,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(error) = self.remove_expired() {
                        tracing::warn!(%error, "removing expired session entries failed");
                    }
                    next_cleanup = std::time::Instant::now() + CLEANUP_INTERVAL;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    /// Applies the batch in one transaction and answers each write once it is on disk (or all
    /// of them with the error).
    fn commit(&self, batch: Vec<Write>) {
        let transaction = match self.db.begin_write() {
            Ok(transaction) => transaction,
            Err(error) => return fail_all(batch, &failed(&self.path, "writing", error)),
        };
        let mut answers = Vec::with_capacity(batch.len());
        for write in batch {
            answers.push(apply(&transaction, write));
        }
        if let Err(error) = transaction.commit() {
            let error = failed(&self.path, "committing to", error);
            for answer in answers {
                answer.fail(&error);
            }
            return;
        }
        for answer in answers {
            answer.send();
        }
    }

    pub(super) fn remove_expired(&self) -> Result<(), String> {
        let now = now_ms();
        let transaction = self.db.begin_write().map_err(|error| error.to_string())?;
        {
            let mut table = transaction
                .open_table(REVOKED)
                .map_err(|error| error.to_string())?;
            table
                .retain(|_, until| until > now)
                .map_err(|error| error.to_string())?;
            let mut table = transaction
                .open_table(SESSIONS)
                .map_err(|error| error.to_string())?;
            table
                .retain(|_, json| {
                    serde_json::from_str::<StoredSession>(json)
                        .is_ok_and(|stored| stored.expires_at_ms > now)
                })
                .map_err(|error| error.to_string())?;
            let mut table = transaction
                .open_table(ACCESS_TOKENS)
                .map_err(|error| error.to_string())?;
            table
                .retain(|_, json| {
                    serde_json::from_str::<StoredToken>(json)
                        .is_ok_and(|stored| stored.expires_at_ms > now)
                })
                .map_err(|error| error.to_string())?;
        }
        transaction.commit().map_err(|error| error.to_string())
    }
}

/// A write applied but not yet committed: its outcome, to send once the commit is known.
enum Answer {
    Unit(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Session(
        oneshot::Sender<Result<Option<Session>, StoreError>>,
        Result<Option<Session>, StoreError>,
    ),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Unit(to, outcome) => drop(to.send(outcome)),
            Answer::Session(to, outcome) => drop(to.send(outcome)),
        }
    }

    fn fail(self, error: &StoreError) {
        let error = StoreError(error.0.clone());
        match self {
            Answer::Unit(to, _) => drop(to.send(Err(error))),
            Answer::Session(to, _) => drop(to.send(Err(error))),
        }
    }
}

fn fail_all(batch: Vec<Write>, error: &StoreError) {
    for write in batch {
        let error = StoreError(error.0.clone());
        match write {
            Write::Save(_, _, to)
            | Write::End(_, _, to)
            | Write::Revoke(_, _, to)
            | Write::ShareToken(_, _, to)
            | Write::DropToken(_, _, to) => drop(to.send(Err(error))),
            Write::Touch(_, _, to) => drop(to.send(Err(error))),
        }
    }
}

/// Applies one write inside the batch's transaction.
fn apply(transaction: &WriteTransaction, write: Write) -> Answer {
    let error = |error: &dyn fmt::Display| StoreError(format!("session database: {error}"));
    match write {
        Write::Save(session, expires_at_ms, to) => {
            let key = user_key(&session.appid, &session.openid);
            let stored = StoredSession {
                session,
                expires_at_ms,
            };
            let outcome = serde_json::to_string(&stored)
                .map_err(|e| error(&e))
                .and_then(|json| {
                    let mut table = transaction.open_table(SESSIONS).map_err(|e| error(&e))?;
                    table
                        .insert(key.as_str(), json.as_str())
                        .map_err(|e| error(&e))?;
                    Ok(())
                });
            Answer::Unit(to, outcome)
        }
        Write::Touch(key, now_secs, to) => {
            let outcome = (|| {
                let mut table = transaction.open_table(SESSIONS).map_err(|e| error(&e))?;
                let stored = table
                    .get(key.as_str())
                    .map_err(|e| error(&e))?
                    .map(|json| json.value().to_string());
                let Some(json) = stored else { return Ok(None) };
                let mut stored: StoredSession =
                    serde_json::from_str(&json).map_err(|e| error(&e))?;
                if stored.expires_at_ms <= now_ms() {
                    table.remove(key.as_str()).map_err(|e| error(&e))?;
                    return Ok(None);
                }
                stored.session.last_seen = now_secs;
                let json = serde_json::to_string(&stored).map_err(|e| error(&e))?;
                table
                    .insert(key.as_str(), json.as_str())
                    .map_err(|e| error(&e))?;
                Ok(Some(stored.session))
            })();
            Answer::Session(to, outcome)
        }
        Write::End(key, sid, to) => {
            let outcome = (|| {
                let mut table = transaction.open_table(SESSIONS).map_err(|e| error(&e))?;
                let current = table
                    .get(key.as_str())
                    .map_err(|e| error(&e))?
                    .and_then(|json| serde_json::from_str::<StoredSession>(json.value()).ok());
                if current.is_some_and(|stored| stored.session.sid == sid) {
                    table.remove(key.as_str()).map_err(|e| error(&e))?;
                }
                Ok(())
            })();
            Answer::Unit(to, outcome)
        }
        Write::Revoke(ids, until_ms, to) => {
            let outcome = (|| {
                let mut table = transaction.open_table(REVOKED).map_err(|e| error(&e))?;
                for id in &ids {
                    let kept = table
                        .get(id.as_str())
                        .map_err(|e| error(&e))?
                        .map(|until| until.value());
                    let until = kept.unwrap_or(0).max(until_ms);
                    table.insert(id.as_str(), until).map_err(|e| error(&e))?;
                }
                Ok(())
            })();
            Answer::Unit(to, outcome)
        }
        Write::ShareToken(appid, stored, to) => {
            let outcome = serde_json::to_string(&stored)
                .map_err(|e| error(&e))
                .and_then(|json| {
                    let mut table = transaction
                        .open_table(ACCESS_TOKENS)
                        .map_err(|e| error(&e))?;
                    table
                        .insert(appid.as_str(), json.as_str())
                        .map_err(|e| error(&e))?;
                    Ok(())
                });
            Answer::Unit(to, outcome)
        }
        Write::DropToken(appid, stale, to) => {
            let outcome = (|| {
                let mut table = transaction
                    .open_table(ACCESS_TOKENS)
                    .map_err(|e| error(&e))?;
                let current = table
                    .get(appid.as_str())
                    .map_err(|e| error(&e))?
                    .and_then(|json| serde_json::from_str::<StoredToken>(json.value()).ok());
                if current.is_some_and(|stored| stored.token == stale) {
                    table.remove(appid.as_str()).map_err(|e| error(&e))?;
                }
                Ok(())
            })();
            Answer::Unit(to, outcome)
        }
    }
}
