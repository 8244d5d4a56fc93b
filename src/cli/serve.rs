//! What `dev` and `edge` share: serving an edge, and draining it on SIGTERM.

use std::future::IntoFuture;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_edge::Edge;
use switchboard_edge::config::EdgeConfig;

use super::settings::Resolved;

pub fn metrics_recorder() -> anyhow::Result<PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")
}

pub fn edge_config(settings: &Resolved, node_id: &str, jwt_secret: String) -> EdgeConfig {
    EdgeConfig {
        node_id: node_id.to_owned(),
        jwt_secret,
        cors_origins: settings.cors_origins.clone(),
        limits: settings.limits.clone(),
        sync_api_keys: settings.sync_api_keys.clone(),
        whatsapp: settings.wa_webhook.clone(),
    }
}

/// Binds the listen address; the URL it answers on.
pub async fn bind(settings: &Resolved) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("listening on {}", settings.http_addr))?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// Serves until SIGTERM or Ctrl-C, then drains: refuse new work, close every
/// socket's transport (socket.io clients reconnect, to another node behind a
/// balancer, and recover by offset), wait for in-flight requests (which wait
/// for their commands' answers) for at most the drain timeout.
pub async fn serve(edge: Edge, listener: tokio::net::TcpListener, settings: &Resolved) -> anyhow::Result<()> {
    let router = edge.router.clone();
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel();
    let drain = async move {
        shutdown_signal().await;
        edge.drain().await;
        let _ = draining_tx.send(());
    };
    let serve = axum::serve(listener, router).with_graceful_shutdown(drain).into_future();
    let deadline = async {
        let _ = draining_rx.await;
        tokio::time::sleep(settings.drain_timeout).await;
    };
    tokio::select! {
        served = serve => served?,
        _ = deadline => tracing::warn!("drain timed out; exiting with requests in flight"),
    }
    tracing::info!("drained; exiting");
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: draining");
}
