//! Sync notifications over Socket.IO, namespace `/sync` (contract §5, seed 002).
//!
//! A point-of-sale client connects with `auth: {apiKey}`; the key names its
//! tenant. While an edge has sockets of a tenant it subscribes
//! `sb.sync.<tenant>.pending` and emits `changes:pending` (no payload) to
//! them, throttled per tenant: at once for the first notice, then at most
//! once per [`WINDOW`] while notices keep coming, so a burst of changes gives
//! one or two events. `sync:orders` answers `orders:pending` with the
//! pending changes (and the same in its ack, when one is asked for).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use switchboard_bus::{Bus, Subscription, subjects};
use switchboard_proto::pb;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::fanout::emit_to;
use crate::error::ApiError;
use crate::session::RelayHold;
use crate::state::EdgeState;

pub const NAMESPACE: &str = "/sync";
/// Notices within this long of the last `changes:pending` are folded into one more.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Changes in one `orders:pending`.
pub const PAGE: u32 = 100;

/// The tenant a `/sync` socket belongs to, and its reference on the tenant's relay.
#[derive(Clone)]
struct Tenant(String, Arc<RelayHold>);

pub fn tenant_room(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

pub fn register(state: Arc<EdgeState>) {
    let io = state.io.clone();
    let admit = {
        let state = state.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let state = state.clone();
            async move { admit(state, socket, auth.ok()).await }
        }
    };
    let connect = move |socket: SocketRef| {
        let state = state.clone();
        async move { on_connect(state, socket).await }
    };
    io.ns(NAMESPACE, connect.with(admit));
}

/// Why a sync client was refused: its `connect_error` message.
#[derive(Debug)]
enum Refusal {
    Required,
    Invalid,
    Draining,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Required => "API key required",
            Refusal::Invalid => "Invalid API key",
            Refusal::Draining => "server shutting down: reconnect",
        })
    }
}

/// Runs before the client is told it is connected (see `socketio::admit`):
/// handlers, the room and the tenant's subscription are in place by then.
async fn admit(state: Arc<EdgeState>, socket: SocketRef, auth: Option<Value>) -> Result<(), Refusal> {
    if state.is_draining() {
        return Err(Refusal::Draining);
    }
    let key = auth.as_ref().and_then(|a| a.get("apiKey")).and_then(Value::as_str).unwrap_or_default();
    if key.is_empty() {
        return Err(Refusal::Required);
    }
    let tenant = state.config.sync_api_keys.tenant(key).ok_or(Refusal::Invalid)?.to_owned();
    socket.extensions.insert(Tenant(tenant.clone(), Arc::default()));
    let orders = state.clone();
    socket.on("sync:orders", move |socket: SocketRef, ack: AckSender| {
        let state = orders.clone();
        async move { sync_orders(state, socket, ack).await }
    });
    let leaving = state.clone();
    socket.on_disconnect(move |socket: SocketRef| {
        let state = leaving.clone();
        async move {
            if let Some(Tenant(tenant, relay)) = socket.extensions.get::<Tenant>()
                && relay.close()
            {
                state.sync.release(&tenant).await;
            }
            metrics::gauge!("switchboard_sockets", "transport" => "socket.io-sync").decrement(1.0);
        }
    });
    socket.join(tenant_room(&tenant));
    metrics::gauge!("switchboard_sockets", "transport" => "socket.io-sync").increment(1.0);
    Ok(())
}

/// Unconfirmed changes are announced once at connect.
async fn on_connect(state: Arc<EdgeState>, socket: SocketRef) {
    let Some(Tenant(tenant, relay)) = socket.extensions.get::<Tenant>() else { return };
    // After connecting, as for bot replies (see `socketio::on_connect`).
    match state.sync.acquire(&tenant).await {
        Ok(()) if !relay.hold() => state.sync.release(&tenant).await,
        Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, tenant, "sync notifications for this socket are not subscribed"),
    }
    match state.store.has_pending_changes(&tenant).await {
        Ok(true) => {
            emit_to(&socket, "changes:pending", &NO_ARGUMENTS);
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, tenant, "pending sync changes not read"),
    }
}

/// An empty tuple: the event is sent with no arguments at all.
const NO_ARGUMENTS: [(); 0] = [];

async fn sync_orders(state: Arc<EdgeState>, socket: SocketRef, ack: AckSender) {
    let Some(Tenant(tenant, _)) = socket.extensions.get::<Tenant>() else { return };
    match pending_json(&state, &tenant, PAGE).await {
        Ok(changes) => {
            emit_to(&socket, "orders:pending", &changes);
            let _ = ack.send(&changes);
        }
        Err(error) => {
            let _ =
                socket.emit("error", &serde_json::json!({ "message": error.message, "code": error.code }));
        }
    }
}

/// A tenant's unconfirmed changes, as clients see them.
pub async fn pending_json(state: &EdgeState, tenant: &str, limit: u32) -> Result<Vec<Value>, ApiError> {
    let changes = state.store.pending_changes(tenant, limit).await?;
    Ok(changes.iter().map(|c| c.to_json()).collect())
}

/// Notification subscriptions, counted per tenant.
pub struct SyncRelays {
    bus: Arc<dyn Bus>,
    io: SocketIo,
    relays: Mutex<HashMap<String, (JoinHandle<()>, usize)>>,
}

impl SyncRelays {
    pub fn new(bus: Arc<dyn Bus>, io: SocketIo) -> Self {
        Self { bus, io, relays: Mutex::default() }
    }

    /// Subscribed when this returns, so a notice published afterwards arrives.
    pub async fn acquire(&self, tenant: &str) -> switchboard_bus::Result<()> {
        let mut relays = self.relays.lock().await;
        if let Some((_, count)) = relays.get_mut(tenant) {
            *count += 1;
            return Ok(());
        }
        let events = self.bus.subscribe(&subjects::sync_pending(tenant)).await?;
        let task = tokio::spawn(relay_pending(events, self.io.clone(), tenant.to_owned()));
        relays.insert(tenant.to_owned(), (task, 1));
        metrics::gauge!("switchboard_subscriptions", "kind" => "tenant").increment(1.0);
        Ok(())
    }

    pub async fn release(&self, tenant: &str) {
        let mut relays = self.relays.lock().await;
        if let Some((task, count)) = relays.get_mut(tenant) {
            *count -= 1;
            if *count == 0 {
                task.abort();
                relays.remove(tenant);
                metrics::gauge!("switchboard_subscriptions", "kind" => "tenant").decrement(1.0);
            }
        }
    }
}

/// Leading and trailing throttle: the first notice is emitted at once; notices
/// that arrive within [`WINDOW`] after an emit give one more emit at its end.
async fn relay_pending(events: Subscription, io: SocketIo, tenant: String) {
    // A consumer checks that what it got is its own, whatever the subject said.
    let own = tenant.clone();
    let mut events = std::pin::pin!(events.filter(move |envelope| {
        let ours = pb::SyncChange::decode(&envelope.payload[..]).is_ok_and(|change| change.tenant == own);
        std::future::ready(ours)
    }));
    while events.next().await.is_some() {
        notify(&io, &tenant);
        loop {
            let window = tokio::time::sleep(WINDOW);
            tokio::pin!(window);
            let mut more = false;
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(_) => more = true,
                        None => return,
                    },
                    () = &mut window => break,
                }
            }
            if !more {
                break;
            }
            notify(&io, &tenant);
        }
    }
}

fn notify(io: &SocketIo, tenant: &str) {
    let sockets = io.of(NAMESPACE).map(|ns| ns.to(tenant_room(tenant)).sockets()).unwrap_or_default();
    for socket in sockets {
        emit_to(&socket, "changes:pending", &NO_ARGUMENTS);
    }
}
