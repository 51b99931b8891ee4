//! The embedded store against its promises: what is answered is in the file and survives a
//! reopen, expired entries leave, a corrupt file is refused.

use super::writer::Writer;
use super::*;

/// The live revocations in the file, for tests: (id, until ms).
fn stored_revocations(db: &Database) -> std::collections::HashMap<String, u64> {
    let transaction = db.begin_read().unwrap();
    let table = transaction.open_table(REVOKED).unwrap();
    table
        .iter()
        .unwrap()
        .map(|entry| {
            let (id, until) = entry.unwrap();
            (id.value().to_string(), until.value())
        })
        .collect()
}

fn config() -> SessionConfig {
    SessionConfig {
        max_entries: 2,
        ..SessionConfig::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wxgate-embedded-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("nested").join("wxgate.db")
}

fn session(sid: &str) -> Session {
    Session {
        sid: sid.into(),
        openid: "o1".into(),
        unionid: None,
        appid: "wxapp".into(),
        session_key: Secret::new("key-of-o1"),
        created_at: 1,
        last_seen: 1,
    }
}

#[tokio::test]
async fn what_is_answered_is_in_the_file_and_survives_a_reopen() {
    let path = scratch("reopen");
    let store = EmbeddedStore::open(&path, &config()).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the file holds session keys");
    store.save(&session("s1")).await.unwrap();
    store
        .revoke(&["sid:s0".into()], Duration::from_secs(60))
        .await
        .unwrap();
    let generation = store.generation();
    assert!(stored_revocations(&store.db).contains_key("sid:s0"));
    drop(store);
    // The writer thread lets go of the file once its queue closes.
    let reopened = loop {
        match EmbeddedStore::open(&path, &config()) {
            Ok(store) => break store,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    assert_eq!(
        reopened.generation(),
        generation,
        "same database, same generation"
    );
    assert!(reopened.any_revoked(&["sid:s0".into()]).await.unwrap());
    let current = reopened.touch("wxapp", "o1").await.unwrap().unwrap();
    assert_eq!(current.session_key.expose(), "key-of-o1");
    reopened.end("wxapp", "o1", "s1").await.unwrap();
    assert!(reopened.touch("wxapp", "o1").await.unwrap().is_none());
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}

#[tokio::test]
async fn expired_entries_are_removed_from_the_file() {
    let path = scratch("cleanup");
    let store = EmbeddedStore::open(&path, &config()).unwrap();
    store
        .revoke(&["sid:brief".into()], Duration::from_millis(1))
        .await
        .unwrap();
    store
        .revoke(&["sid:lasting".into()], Duration::from_secs(60))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let writer = Writer {
        db: store.db.clone(),
        path: path.clone(),
    };
    writer.remove_expired().unwrap();
    let left = stored_revocations(&store.db);
    assert_eq!(left.keys().collect::<Vec<_>>(), ["sid:lasting"]);
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}

#[test]
fn a_corrupt_file_is_refused_naming_the_key() {
    let path = scratch("corrupt");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"not a database at all, but something else").unwrap();
    let error = EmbeddedStore::open(&path, &config()).unwrap_err();
    assert!(error.starts_with("session.path: "), "{error}");
    assert!(error.contains(&path.display().to_string()), "{error}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
}
