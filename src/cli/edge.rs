//! `switchboard edge`: one edge node of a scale-out cluster, on NATS and
//! PostgreSQL. Run as many as you like behind any load balancer.

use switchboard_edge::Edge;

use super::serve::{bind, edge_config, metrics_recorder, serve};
use super::settings::Resolved;

pub async fn run(settings: Resolved) -> anyhow::Result<()> {
    let node = settings.node_id("edge");
    let secret = settings.require_secret()?;
    let metrics = metrics_recorder("edge", &[switchboard_edge::telemetry::SERIES])?;
    let bus = switchboard_bus::connect(settings.require_nats()?, &node, settings.bus_options()).await?;
    // Read only: whatever an edge changes goes through a command to a worker.
    let store = switchboard_store::open(settings.require_database()?).await?;
    let edge = Edge::start(edge_config(&settings, &node, secret), bus, store, metrics).await?;
    let (listener, url) = bind(&settings).await?;
    println!("switchboard edge {node} ready on {url}");
    serve(edge, listener, &settings).await
}
