//! `switchboard edge`: one edge node of a scale-out cluster, on NATS and
//! PostgreSQL. Run as many as you like behind any load balancer.

use std::sync::Arc;

use switchboard_bus::{Bus, NatsBus};
use switchboard_edge::Edge;
use switchboard_store::{PgStore, Store};

use super::serve::{bind, edge_config, metrics_recorder, serve};
use super::settings::Resolved;

pub async fn run(settings: Resolved) -> anyhow::Result<()> {
    let node = settings.node_id("edge");
    let secret = settings.require_secret()?;
    let metrics = metrics_recorder()?;
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(settings.require_nats()?, &node).await?);
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(settings.require_database()?).await?);
    let edge = Edge::start(edge_config(&settings, &node, secret), bus, store, metrics).await?;
    let (listener, url) = bind(&settings).await?;
    println!("switchboard edge {node} ready on {url}");
    serve(edge, listener, &settings).await
}
