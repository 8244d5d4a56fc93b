//! What `dev` and `edge` share: serving an edge, and draining it on SIGTERM.

use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::Matcher;
use switchboard_edge::Edge;
use switchboard_edge::config::EdgeConfig;
use switchboard_edge::telemetry::{self, Scrape};
use switchboard_proto::telemetry::Series;
use tokio::sync::watch;
use tower::ServiceExt;

use super::settings::Resolved;

/// Latency buckets, in seconds: from half a millisecond (a delivery on one
/// machine) to ten seconds (a command's timeout).
const SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Messages per stored batch.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the recorder, declares `catalogue` (every series this process
/// exports, at zero) and this process's build and role, and answers what
/// `/metrics` renders.
pub fn metrics_recorder(role: &'static str, catalogue: &[&'static [Series]]) -> anyhow::Result<Scrape> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full(switchboard_workers::telemetry::BATCH_SIZE.into()), BATCH)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    telemetry::declare(catalogue, role);
    Ok(Scrape::new(handle, catalogue))
}

pub fn edge_config(settings: &Resolved, node_id: &str, jwt_secret: String) -> EdgeConfig {
    EdgeConfig {
        node_id: node_id.to_owned(),
        jwt_secret,
        cors_origins: settings.cors_origins.clone(),
        limits: settings.limits.clone(),
        sync_api_keys: settings.sync_api_keys.clone(),
        whatsapp: settings.wa_webhook.clone(),
        partitions: settings.partitions(),
        widget: settings.widget.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
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
///
/// Each connection has `header_timeout` to send a request's headers, and may
/// stay idle between requests as long: a client sending a byte at a time, or
/// nothing, does not hold a connection (axum's own `serve` sets no timer).
pub async fn serve(edge: Edge, listener: tokio::net::TcpListener, settings: &Resolved) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection holds a receiver; the channel closes when the last one ends.
    let (open_tx, open_rx) = watch::channel(());
    let mut signal = std::pin::pin!(shutdown_signal());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        // Handlers see the peer's address as axum's `ConnectInfo`.
        let service = TowerToHyperService::new(edge.router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    edge.drain().await;
    let _ = stop_tx.send(());
    drop(open_rx);
    tokio::select! {
        () = open_tx.closed() => {}
        () = tokio::time::sleep(settings.drain_timeout) => tracing::warn!("drain timed out; exiting with requests in flight"),
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
