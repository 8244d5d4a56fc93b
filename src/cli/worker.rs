//! `switchboard worker <kind>`: the workers of a scale-out cluster. Any number
//! of processes of one kind share its durable consumer.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use switchboard_edge::http::ops::healthz;
use switchboard_edge::telemetry::Scrape;
use switchboard_workers::registry::{Deps, Kind};

use super::serve::{metrics_recorder, shutdown_signal};
use super::settings::Settings;

#[derive(clap::Subcommand)]
pub enum WorkerKind {
    /// Commands into PostgreSQL: messages, conversations, statuses, bot replies.
    Persist(Settings),
    /// Sync changes into the tenants' outboxes, and their notifications to point-of-sale clients.
    Sync(Settings),
    /// WhatsApp Cloud API: webhook bodies into conversations, agent messages out.
    Whatsapp(Settings),
}

pub async fn run(kind: WorkerKind) -> anyhow::Result<()> {
    let (kind, settings) = match kind {
        WorkerKind::Persist(settings) => (Kind::Persist, settings),
        WorkerKind::Sync(settings) => (Kind::Sync, settings),
        WorkerKind::Whatsapp(settings) => (Kind::Whatsapp, settings),
    };
    let settings = settings.resolve()?;
    let node = settings.node_id(kind.name());
    let metrics = metrics_recorder(kind.name(), &[switchboard_workers::telemetry::SERIES])?;
    if let Some(addr) = settings.metrics_addr {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        println!("switchboard worker {} metrics on http://{}/metrics", kind.name(), listener.local_addr()?);
        tokio::spawn(serve_metrics(listener, metrics));
    }
    let deps = Deps {
        bus: switchboard_bus::connect(settings.require_nats()?, &node, settings.bus_options()).await?,
        store: switchboard_store::open(settings.require_database()?).await?,
        node: node.clone(),
        partitions: settings.partitions(),
        bot_reply_ttl: settings.bot_reply_ttl,
        auto_assign: settings.auto_assign,
        whatsapp: settings.whatsapp.clone(),
    };
    println!("switchboard worker {} {node} ready", kind.name());
    // SIGTERM: the work in hand is finished and acknowledged, nothing more is taken.
    kind.run(deps, shutdown_signal()).await?;
    tracing::info!("drained; exiting");
    Ok(())
}

/// A worker's own `/metrics` (its series and the process's) and `/healthz`:
/// it serves no other HTTP.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Scrape) {
    let metrics = Arc::new(metrics);
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { Scrape::respond(metrics.render()) }
            }),
        )
        .route("/healthz", get(healthz));
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}
