//! `switchboard dev`: the embedded default. One process runs an edge and the
//! persist worker on the in-process bus, with an SQLite file; nothing to install.

use std::sync::Arc;

use std::future::IntoFuture;

use anyhow::Context;
use switchboard_bus::{Bus, MemoryBus};
use switchboard_edge::Edge;
use switchboard_edge::auth::{Claims, mint};
use switchboard_edge::config::EdgeConfig;
use switchboard_store::{SqliteStore, Store};
use switchboard_workers::persist::Persist;

use super::settings::Resolved;
use super::token::expires_in;

pub async fn run(settings: Resolved) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let (secret, generated) = match settings.jwt_secret.clone() {
        Some(secret) => (secret, false),
        None => (dev_secret(&settings)?, true),
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&settings.data_dir.join("switchboard.db")).await?);
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());

    let worker = Persist::new(bus.clone(), store.clone(), "dev-worker").await?;
    tokio::spawn(async move {
        if let Err(e) = worker.run().await {
            tracing::error!(error = %e, "persist worker stopped");
        }
    });

    let config = EdgeConfig {
        node_id: "dev".into(),
        jwt_secret: secret.clone(),
        cors_origins: settings.cors_origins.clone(),
        limits: settings.limits.clone(),
    };
    let edge = Edge::start(config, bus, store, metrics).await?;
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("listening on {}", settings.http_addr))?;
    let url = format!("http://{}", listener.local_addr()?);
    if generated {
        print_welcome(&url, &secret);
    }
    println!("switchboard dev ready on {url}");

    let router = edge.router.clone();
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel();
    let drain = async move {
        shutdown_signal().await;
        // Refuse new work and close every socket's transport, so clients
        // reconnect (elsewhere, behind a balancer) and recover by offset.
        edge.drain().await;
        let _ = draining_tx.send(());
    };
    // Waits for in-flight HTTP requests (which wait for their commands'
    // answers), for at most the drain timeout.
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

/// A secret kept in the data directory, so demo tokens survive restarts.
fn dev_secret(settings: &Resolved) -> anyhow::Result<String> {
    let path = settings.data_dir.join("dev-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

fn print_welcome(url: &str, secret: &str) {
    let token = |sub: &str, role: &str, name: &str, conversations: Option<Vec<String>>| {
        mint(
            secret,
            &Claims {
                sub: sub.into(),
                role: role.into(),
                name: Some(name.into()),
                phone: (role == "customer").then(|| "5215550001".into()),
                conversations,
                exp: expires_in(30 * 24 * 3600),
            },
        )
    };
    let customer = token("demo-customer", "customer", "Demo Customer", Some(vec!["demo".into()]));
    let agent = token("demo-agent", "agent", "Demo Agent", None);
    let service = token("demo-service", "service", "Demo Backend", None);
    println!(
        "\nNo SWITCHBOARD_JWT_SECRET was set, so this one was made (kept in the data directory):\n\
         \n  SWITCHBOARD_JWT_SECRET={secret}\n\
         \nDemo tokens (valid 30 days):\n\
         \n  customer (may join conversation \"demo\"): {customer}\
         \n  agent:    {agent}\
         \n  service:  {service}\n\
         \nTry it with socket.io-client (npm i socket.io-client):\n\
         \n  const {{ io }} = require('socket.io-client');\
         \n  const socket = io('{url}', {{ auth: {{ token: '{customer}' }} }});\
         \n  socket.on('message:new', (m) => console.log(m.offset, m.sender.name, m.text));\
         \n  socket.emit('join_conversation', {{ conversation_id: 'demo' }}, (ack) => {{\
         \n    socket.emit('send_message', {{ conversation_id: 'demo', text: 'Hello!' }}, console.log);\
         \n  }});\n\
         \nOr over HTTP:\n\
         \n  curl -H 'Authorization: Bearer {service}' {url}/api/v1/conversations\n"
    );
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: draining");
}
