//! `switchboard worker <kind>`: the workers of a scale-out cluster. Any number
//! of processes of one kind share its durable consumer.

use std::sync::Arc;

use switchboard_bus::{Bus, NatsBus};
use switchboard_store::{PgStore, Store};
use switchboard_workers::persist::Persist;

use super::serve::shutdown_signal;
use super::settings::{Resolved, Settings};

#[derive(clap::Subcommand)]
pub enum WorkerKind {
    /// Commands into PostgreSQL: messages, conversations, statuses, bot replies.
    Persist(Settings),
}

pub async fn run(kind: WorkerKind) -> anyhow::Result<()> {
    match kind {
        WorkerKind::Persist(settings) => persist(settings.resolve()?).await,
    }
}

async fn persist(settings: Resolved) -> anyhow::Result<()> {
    let node = settings.node_id("persist");
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(settings.require_nats()?, &node).await?);
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(settings.require_database()?).await?);
    let worker = Persist::new(bus, store, &node, settings.bot_reply_ttl).await?;
    println!("switchboard worker persist {node} ready");
    // SIGTERM: the batch in hand is finished and acknowledged, nothing more is taken.
    worker.run(shutdown_signal()).await?;
    tracing::info!("drained; exiting");
    Ok(())
}
