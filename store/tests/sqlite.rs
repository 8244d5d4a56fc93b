//! The shared store behaviours against SQLite: a WAL file opened by two stores
//! (as two processes would), and the single-connection in-memory database.

#[macro_use]
mod common;

use std::future::Future;
use std::sync::Arc;

use common::{Db, run_then};
use switchboard_store::SqliteStore;
use uuid::Uuid;

async fn run<F: Future<Output = ()> + Send + 'static>(behaviour: impl FnOnce(Db) -> F) {
    let dir = std::env::temp_dir().join(format!("sb-store-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.sqlite");
    // One after the other: SQLite's migrator takes no lock.
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let other = Arc::new(SqliteStore::open(&path).await.unwrap());
    run_then(behaviour(Db { store, other }), async { std::fs::remove_dir_all(&dir).unwrap() }).await;
}

behaviour_tests!(run);

mod in_memory {
    use super::*;

    /// Its one connection is its whole database, so both stores are the same.
    async fn run<F: Future<Output = ()> + Send + 'static>(behaviour: impl FnOnce(Db) -> F) {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        run_then(behaviour(Db { store: store.clone(), other: store }), async {}).await;
    }

    behaviour_tests!(run);
}
