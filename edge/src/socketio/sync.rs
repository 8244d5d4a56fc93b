//! Sync notifications over Socket.IO, namespace `/sync`, for point-of-sale
//! sync clients.
//!
//! A point-of-sale client connects with `auth: {apiKey}`; the key names its
//! tenant. While an edge has sockets of a tenant it subscribes
//! `sb.sync.<tenant>.pending` and emits `changes:pending` (no payload) to
//! them, throttled per tenant: at once for the first notice, then at most
//! once per [`WINDOW`] while notices keep coming, so a burst of changes gives
//! one or two events. `sync:orders` answers `orders:pending` with the
//! pending changes (and the same in its ack, when one is asked for).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::DisconnectReason;
use switchboard_bus::{Bus, Subscription, subjects};
use switchboard_proto::pb;

use super::fanout::emit_to;
use super::hub::{Hub, Refused, closed};
use crate::error::{ApiError, ErrorCode};
use crate::relay::{RelayHold, Relays};
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

/// The `transport` label of this namespace's sockets.
const TRANSPORT: &str = "socket.io-sync";

pub fn register(hub: Arc<Hub>) {
    hub.namespace(NAMESPACE, TRANSPORT, admit, on_connect);
}

/// Sync-notice subscriptions, one per tenant with sockets here.
pub fn tenant_relays(bus: Arc<dyn Bus>, io: SocketIo) -> Relays {
    Relays::new(bus, "tenant", subjects::sync_pending, move |tenant, events| {
        tokio::spawn(relay_pending(events, io.clone(), tenant))
    })
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

impl Refused for Refusal {
    fn code(&self) -> ErrorCode {
        match self {
            Refusal::Required => ErrorCode::ApiKeyRequired,
            Refusal::Invalid => ErrorCode::InvalidApiKey,
            Refusal::Draining => ErrorCode::Unavailable,
        }
    }
}

/// Runs before the client is told it is connected (see `chat::admit`):
/// handlers, the room and the tenant's subscription are in place by then.
async fn admit(hub: Arc<Hub>, socket: SocketRef, auth: Option<Value>) -> Result<(), Refusal> {
    if hub.edge.is_draining() {
        return Err(Refusal::Draining);
    }
    let key = auth.as_ref().and_then(|a| a.get("apiKey")).and_then(Value::as_str).unwrap_or_default();
    if key.is_empty() {
        return Err(Refusal::Required);
    }
    let tenant = hub.edge.config.sync_api_keys.tenant(key).ok_or(Refusal::Invalid)?.to_owned();
    socket.extensions.insert(Tenant(tenant.clone(), Arc::default()));
    let orders = hub.edge.clone();
    socket.on("sync:orders", move |socket: SocketRef, ack: AckSender| {
        let state = orders.clone();
        async move { sync_orders(state, socket, ack).await }
    });
    let leaving = hub.clone();
    socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| {
        let hub = leaving.clone();
        async move {
            let reason = closed(&socket, reason);
            let Some(Tenant(tenant, relay)) = socket.extensions.get::<Tenant>() else { return };
            hub.tenants.release(&tenant, &relay).await;
            hub.edge.sockets.closed(TRANSPORT, &format!("tenant:{tenant}"), reason);
        }
    });
    socket.join(tenant_room(&tenant));
    hub.edge.sockets.opened(TRANSPORT);
    Ok(())
}

/// Unconfirmed changes are announced once at connect.
async fn on_connect(hub: Arc<Hub>, socket: SocketRef) {
    let Some(Tenant(tenant, relay)) = socket.extensions.get::<Tenant>() else { return };
    // After connecting, as for bot replies (see `chat::on_connect`).
    if let Err(e) = hub.tenants.acquire(&tenant, &relay).await {
        tracing::warn!(error = %e, tenant, "sync notifications for this socket are not subscribed");
    }
    match hub.edge.store.has_pending_changes(&tenant).await {
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
            let _ = socket.emit("error", &error.event());
        }
    }
}

/// A tenant's unconfirmed changes, as clients see them.
pub async fn pending_json(state: &EdgeState, tenant: &str, limit: u32) -> Result<Vec<Value>, ApiError> {
    let changes = state.store.pending_changes(tenant, limit).await?;
    Ok(changes.iter().map(|c| c.to_json()).collect())
}

/// Leading and trailing throttle: the first notice is emitted at once; notices
/// that arrive within [`WINDOW`] after an emit give one more emit at its end.
pub async fn relay_pending(events: Subscription, io: SocketIo, tenant: String) {
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
