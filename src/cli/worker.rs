//! `switchboard worker <kind>`: the workers of a scale-out cluster. Any number
//! of processes of one kind share its durable consumer.

use std::sync::Arc;

use switchboard_bus::{Bus, NatsBus};
use switchboard_store::{PgStore, Store};
use switchboard_workers::persist::Persist;
use switchboard_workers::sync::SyncWorker;
use switchboard_workers::whatsapp::Whatsapp;

use super::serve::shutdown_signal;
use super::settings::{Resolved, Settings};

#[derive(clap::Subcommand)]
pub enum WorkerKind {
    /// Commands into PostgreSQL: messages, conversations, statuses, bot replies.
    Persist(Settings),
    /// Sync changes into the tenants' outboxes, and their notifications (contract §5).
    Sync(Settings),
    /// WhatsApp Cloud API: webhook bodies into conversations, agent messages out (contract §7).
    Whatsapp(Settings),
}

pub async fn run(kind: WorkerKind) -> anyhow::Result<()> {
    match kind {
        WorkerKind::Persist(settings) => persist(settings.resolve()?).await,
        WorkerKind::Sync(settings) => sync(settings.resolve()?).await,
        WorkerKind::Whatsapp(settings) => whatsapp(settings.resolve()?).await,
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

async fn sync(settings: Resolved) -> anyhow::Result<()> {
    let node = settings.node_id("sync");
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(settings.require_nats()?, &node).await?);
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(settings.require_database()?).await?);
    let worker = SyncWorker::new(bus, store);
    println!("switchboard worker sync {node} ready");
    worker.run(shutdown_signal()).await?;
    tracing::info!("drained; exiting");
    Ok(())
}

async fn whatsapp(settings: Resolved) -> anyhow::Result<()> {
    let node = settings.node_id("whatsapp");
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(settings.require_nats()?, &node).await?);
    let store = Arc::new(PgStore::connect(settings.require_database()?).await?);
    let worker = Whatsapp::new(bus, store, settings.whatsapp.clone());
    println!("switchboard worker whatsapp {node} ready");
    // SIGTERM: sends in hand are finished (or returned), nothing more is taken.
    worker.run(shutdown_signal()).await?;
    tracing::info!("drained; exiting");
    Ok(())
}
