//! Checkpoints of the write-ahead log, off the writer's path.
//!
//! A checkpoint ends with an fsync of the database file, and one fsync can
//! take a hundred milliseconds or more while the machine is busy (80–400 ms
//! measured, README Durability). Run by the writer inside the commit that
//! crossed its threshold, it held every batch behind it: the stalls at low
//! load. A connection of its own checkpoints instead, every [`EVERY`]:
//! `PASSIVE`, so it never waits for the writer and never makes it wait.
//! Once it has copied everything, the writer's next transaction starts the
//! log over, and that one syncs only the log's new header. The writer's own
//! checkpoint stays as the backstop for a writer that never pauses, which
//! this one cannot catch up with. A longer interval means fewer of those
//! header syncs but bigger bursts of copying: at 1 s the copying of 6,000
//! messages a second doubled their p99.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;

/// How often the log is checkpointed.
const EVERY: Duration = Duration::from_millis(200);

/// Starts checkpointing; it goes on while the returned handle (or a clone) lives.
pub(super) fn start(options: SqliteConnectOptions) -> Arc<()> {
    let alive = Arc::new(());
    tokio::spawn(run(super::pool(options, 1), Arc::downgrade(&alive)));
    alive
}

async fn run(pool: sqlx::SqlitePool, alive: Weak<()>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(EVERY).await;
        if alive.strong_count() == 0 {
            break;
        }
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            Ok(_) => failing = false,
            // Once per failure, not once per attempt: the writer's own checkpoint still runs.
            Err(e) if !failing => {
                tracing::warn!(error = %e, "write-ahead log not checkpointed; the writer's own checkpoint takes over");
                failing = true;
            }
            Err(_) => {}
        }
    }
    pool.close().await;
}
