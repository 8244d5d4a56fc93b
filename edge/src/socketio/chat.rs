//! Namespace `/`: a socket's admission (its token), its events bound to the
//! chat operations, and its end.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use socketioxide::{SocketIo, TransportType};

use super::fanout::{AGENTS_ROOM, phone_room};
use super::fanout::{chat_room, is_evicted, legacy_room};
use super::hub::{Hub, Refused, closed};
use super::relays::deliver_bot_reply;
use super::session::{Reply, session_of};
use crate::auth::AuthError;
use crate::chat::{self, Audience, Ctx, Operation, Peer};
use crate::config::Limits;
use crate::error::ErrorCode;
use crate::query;
use crate::session::Session;
use crate::wire::{self, event};
use switchboard_proto::model::Role;

/// The Socket.IO layer and its handle; handlers are attached by [`register`]
/// once the edge state (which needs the handle) exists.
pub fn layer(limits: &Limits) -> (SocketIoLayer, SocketIo) {
    SocketIo::builder()
        .max_payload(limits.max_payload as u64)
        .max_buffer_size(limits.outbound_buffer)
        .ws_max_message_size(limits.max_payload)
        .ws_max_frame_size(limits.max_payload)
        // Kept for each socket's life; chat packets are small (see native).
        .ws_read_buffer_size(1024)
        .transports([TransportType::Polling, TransportType::Websocket])
        .build_layer()
}

/// Copies a Socket.IO request's URI and header values out of the connection's
/// read buffer. hyper parses them as slices of that 8–16 KiB buffer, and a
/// session keeps its handshake's head for its whole life, so without the copy
/// every idle socket pins a read buffer it no longer uses. Other requests do
/// not outlive their response and are left as they are.
pub async fn detach_handshake_head(request: Request) -> Request {
    if !request.uri().path().starts_with("/socket.io/") {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    if let Ok(uri) = parts.uri.to_string().parse() {
        parts.uri = uri;
    }
    for value in parts.headers.values_mut() {
        let sensitive = value.is_sensitive();
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(sensitive);
            *value = copy;
        }
    }
    Request::from_parts(parts, body)
}

/// The `transport` label of this namespace's sockets.
const TRANSPORT: &str = "socket.io";

/// Binds namespace `/` to its handlers.
pub fn register(hub: Arc<Hub>) {
    hub.namespace("/", TRANSPORT, admit, on_connect);
}

/// Runs before the client is told it is connected: socketioxide sends the
/// CONNECT packet before it calls the connect handler, so anything a client
/// may use at once (event handlers, rooms) is set up here.
async fn admit(hub: Arc<Hub>, socket: SocketRef, auth: Option<Value>) -> Result<(), Refusal> {
    if hub.edge.is_draining() {
        return Err(Refusal::Draining);
    }
    let session = Arc::new(authenticate(&hub, &socket, auth)?);
    socket.extensions.insert(session.clone());
    register_events(&hub, &socket, &session);
    if session.identity.role == Role::Agent {
        socket.join(AGENTS_ROOM);
    }
    if let Some(phone) = &session.phone {
        socket.join(phone_room(phone));
    }
    hub.edge.sockets.opened(TRANSPORT);
    Ok(())
}

/// Token from `auth.token`, else the `token` query parameter.
fn authenticate(hub: &Hub, socket: &SocketRef, auth: Option<Value>) -> Result<Session, Refusal> {
    let query = socket.req_parts().uri.query().unwrap_or_default();
    let from_auth = auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str).map(str::to_owned);
    let token = from_auth.or_else(|| query::param(query, "token"));
    let identity = hub.edge.verifier.verify(token.as_deref()).map_err(Refusal::Auth)?;
    // Staff may watch a user's bot replies by naming the number (`?userPhone=`,
    // as the bot-reply widget passes it); a customer only ever gets its own.
    let phone = match identity.role {
        Role::Customer => identity.phone.clone(),
        _ => query::param(query, "userPhone").or_else(|| identity.phone.clone()),
    };
    Ok(Session::new(identity, phone, &hub.edge.config.limits))
}

/// Why a connection was refused: its `connect_error` message.
#[derive(Debug)]
enum Refusal {
    Auth(AuthError),
    Draining,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Auth(e) => e.fmt(f),
            Refusal::Draining => f.write_str("server shutting down: reconnect"),
        }
    }
}

impl Refused for Refusal {
    fn code(&self) -> ErrorCode {
        match self {
            Refusal::Auth(e) => e.code(),
            Refusal::Draining => ErrorCode::Unavailable,
        }
    }
}

async fn on_connect(hub: Arc<Hub>, socket: SocketRef) {
    let Some(session) = session_of(&socket) else { return };
    let _ = socket.emit(event::CONNECTED, &wire::greeting(&session.identity.user_id));
    if session.identity.role == Role::Agent {
        hub.edge.agent_connected(&session.identity);
    }
    if let Some(phone) = &session.phone {
        // Here rather than in `admit`: only a connected socket is sure to get
        // its disconnect handler, which gives the reference back. Replies
        // that came before are queued, and read after subscribing.
        if let Err(e) = hub.phones.acquire(phone, &session.relay).await {
            tracing::warn!(error = %e, "bot replies for this socket are not subscribed");
        }
        deliver_queued_bot_replies(&hub, phone).await;
    }
}

/// socketioxide sends the CONNECT packet before it marks the socket
/// connected, and refuses every emit until then. A client's emits buffered
/// before connecting (socket.io-client flushes them on CONNECT) can be
/// handled in between, and an answer emitted then (a `pong`) would be lost.
/// The mark follows the send at once, so this waits a few ticks at most; a
/// socket that never gets it is closed, and its emits go nowhere anyway.
async fn until_connected(socket: &SocketRef) {
    const TICK: std::time::Duration = std::time::Duration::from_millis(1);
    for _ in 0..1000 {
        if socket.connected() {
            return;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Bot replies that waited for this user, oldest first.
async fn deliver_queued_bot_replies(hub: &Hub, phone: &str) {
    match hub.edge.commands.take_bot_replies(phone).await {
        Ok(replies) => {
            for reply in replies {
                deliver_bot_reply(&hub.io, phone, &reply);
            }
        }
        Err(e) => tracing::warn!(error = %e, "queued bot replies not read"),
    }
}

/// A Socket.IO socket; its audiences are socketioxide rooms.
#[derive(Clone)]
pub struct SocketPeer(pub SocketRef);

impl Peer for SocketPeer {
    fn id(&self) -> String {
        self.0.id.to_string()
    }

    fn enter(&self, conversation_id: &str, audience: Audience) {
        // An evicted socket is on its way out and must not be sent anything newer.
        if !is_evicted(&self.0) {
            self.0.join(room(conversation_id, audience));
        }
    }

    fn exit(&self, conversation_id: &str, audience: Audience) {
        self.0.leave(room(conversation_id, audience));
    }

    fn emit(&self, event: &str, data: &Value) {
        let _ = self.0.emit(event, data);
    }
}

fn room(conversation_id: &str, audience: Audience) -> String {
    match audience {
        Audience::Chat => chat_room(conversation_id),
        Audience::Legacy => legacy_room(conversation_id),
    }
}

/// Binds every operation of the table to its event, and the disconnect.
/// The handlers live in the socket, so they must not hold it: each call gets
/// the socket as an argument (a handler owning a `SocketRef` would keep every
/// closed socket alive through that cycle).
fn register_events(hub: &Arc<Hub>, socket: &SocketRef, session: &Arc<Session>) {
    for &operation in Operation::ALL {
        let (hub, session) = (hub.clone(), session.clone());
        socket.on(operation.name(), move |socket: SocketRef, TryData(data): TryData<Value>, reply: Reply| {
            let (hub, session) = (hub.clone(), session.clone());
            async move {
                until_connected(&socket).await;
                let ctx = Ctx { state: hub.edge.clone(), peer: SocketPeer(socket), session };
                operation.run(ctx, data.unwrap_or(Value::Null), reply).await
            }
        });
    }
    let (hub, session) = (hub.clone(), session.clone());
    socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| {
        let (hub, session) = (hub.clone(), session.clone());
        async move {
            hub.edge.sockets.closed(TRANSPORT, &session.identity.user_id, closed(&socket, reason));
            let ctx = Ctx { state: hub.edge.clone(), peer: SocketPeer(socket), session: session.clone() };
            chat::disconnect(ctx).await;
            if let Some(phone) = &session.phone {
                hub.phones.release(phone, &session.relay).await;
            }
        }
    });
}
