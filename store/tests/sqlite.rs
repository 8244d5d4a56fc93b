//! The shared store behaviours against SQLite: a WAL file opened by two stores
//! (as two processes would), and the single-connection in-memory database.

#[macro_use]
mod common;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use common::{Db, create, new_message, run_then};
use switchboard_store::{Fence, SqliteStore, Store};
use uuid::Uuid;

/// A fresh directory for one test's database file, and the file's path in it.
fn fresh_dir() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sb-store-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.sqlite");
    (dir, path)
}

async fn run<F: Future<Output = ()> + Send + 'static>(behaviour: impl FnOnce(Db) -> F) {
    let (dir, path) = fresh_dir();
    // One after the other: SQLite's migrator takes no lock.
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let other = Arc::new(SqliteStore::open(&path).await.unwrap());
    run_then(behaviour(Db { store, other }), async { std::fs::remove_dir_all(&dir).unwrap() }).await;
}

behaviour_tests!(run);

/// The log reaches the database file without the writer checkpointing it:
/// a few hundred messages are far below the writer's own threshold, and the
/// file grows only when a checkpoint copies pages into it.
#[tokio::test]
async fn the_log_is_checkpointed_by_a_connection_of_its_own() {
    let (dir, path) = fresh_dir();
    let store = SqliteStore::open(&path).await.unwrap();
    create(&store, "c1").await;
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    let batch: Vec<_> =
        (0..500).map(|i| new_message("c1", &format!("message {i} {}", "x".repeat(200)), None)).collect();
    for chunk in batch.chunks(50) {
        store.append_messages(chunk, &Fence::none()).await.unwrap();
    }
    // No event says a checkpoint ran: the file is watched, for longer than
    // the checkpoints' interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = size();
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(after > before, "the database file stayed at {before} bytes: the log was not checkpointed");
}

mod in_memory {
    use super::*;

    /// Its one connection is its whole database, so both stores are the same.
    async fn run<F: Future<Output = ()> + Send + 'static>(behaviour: impl FnOnce(Db) -> F) {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        run_then(behaviour(Db { store: store.clone(), other: store }), async {}).await;
    }

    behaviour_tests!(run);
}
