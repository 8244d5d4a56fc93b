//! Socket.IO (namespace `/`), through socketioxide.
//!
//! - [`session`]: how events are answered; [`SocketPeer`]: a socket as the
//!   chat operations (`crate::chat`) see it.
//! - [`fanout`]: conversation events onto sockets; rooms.
//! - [`relays`]: the agents' inbox and bot replies per phone number.
//! - [`sync`]: namespace `/sync`, sync notifications for POS clients.

pub mod fanout;
pub mod relays;
pub mod session;
pub mod sync;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use serde_json::{Value, json};
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, TransportType};

use self::fanout::{AGENTS_ROOM, phone_room};
use self::fanout::{chat_room, is_evicted, legacy_room};
use self::relays::deliver_bot_reply;
use self::session::{Reply, session_of};
use crate::auth::AuthError;
use crate::chat::{self, Audience, Ctx, Peer};
use crate::config::Limits;
use crate::session::Session;
use crate::state::EdgeState;
use switchboard_proto::model::{Role, Timestamp};
use switchboard_proto::pb;

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

pub fn register(state: Arc<EdgeState>) {
    let io = state.io.clone();
    let state_for_sync = state.clone();
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
    io.ns("/", connect.with(admit));
    sync::register(state_for_sync);
}

/// Runs before the client is told it is connected: socketioxide sends the
/// CONNECT packet before it calls the connect handler, so anything a client
/// may use at once (event handlers, rooms, subscriptions) is set up here.
async fn admit(state: Arc<EdgeState>, socket: SocketRef, auth: Option<Value>) -> Result<(), Refusal> {
    if state.is_draining() {
        return Err(Refusal::Draining);
    }
    let session = Arc::new(authenticate(&state, &socket, auth)?);
    socket.extensions.insert(session.clone());
    let ctx = Ctx { state: state.clone(), peer: SocketPeer(socket.clone()), session: session.clone() };
    register_events(&ctx);
    if session.identity.role == Role::Agent {
        socket.join(AGENTS_ROOM);
    }
    if let Some(phone) = &session.phone {
        socket.join(phone_room(phone));
    }
    metrics::gauge!("switchboard_sockets", "transport" => "socket.io").increment(1.0);
    Ok(())
}

/// Token from `auth.token`, else the `token` query parameter.
fn authenticate(state: &EdgeState, socket: &SocketRef, auth: Option<Value>) -> Result<Session, Refusal> {
    let query = socket.req_parts().uri.query().unwrap_or_default();
    let from_auth = auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str).map(str::to_owned);
    let token = from_auth.or_else(|| query_param(query, "token"));
    let identity = state.verifier.verify(token.as_deref()).map_err(Refusal::Auth)?;
    // Staff may watch a user's bot replies by naming the number (seed 001);
    // a customer only ever gets its own.
    let phone = match identity.role {
        Role::Customer => identity.phone.clone(),
        _ => query_param(query, "userPhone").or_else(|| identity.phone.clone()),
    };
    Ok(Session::new(identity, phone, &state.config.limits))
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

pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn on_connect(state: Arc<EdgeState>, socket: SocketRef) {
    let Some(session) = session_of(&socket) else { return };
    let connected = json!({ "message": "connected", "user_id": session.identity.user_id });
    let _ = socket.emit("connected", &connected);
    if let Some(phone) = &session.phone {
        // Here rather than in `admit`: only a connected socket is sure to get
        // its disconnect handler, which gives the reference back. Replies
        // that came before are queued, and read after subscribing.
        match state.phones.acquire(phone).await {
            Ok(()) if !session.relay.hold() => state.phones.release(phone).await,
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "bot replies for this socket are not subscribed"),
        }
        deliver_queued_bot_replies(&state, phone).await;
    }
}

/// Bot replies that waited for this user, oldest first.
async fn deliver_queued_bot_replies(state: &EdgeState, phone: &str) {
    match state.store.take_bot_replies(phone, Timestamp::now()).await {
        Ok(replies) => {
            for queued in replies {
                let reply = pb::BotReply {
                    id: queued.id,
                    phone: queued.phone,
                    text: queued.text,
                    at_ms: queued.at.0,
                    expires_at_ms: queued.expires_at.0,
                };
                deliver_bot_reply(&state.io, phone, &reply);
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

/// Binds an event to a chat operation `async fn(Ctx, Value, Reply)`.
macro_rules! on {
    ($ctx:expr, $event:literal, $handler:path) => {{
        let ctx = $ctx.clone();
        $ctx.peer.0.on($event, move |TryData(data): TryData<Value>, reply: Reply| {
            let ctx = ctx.clone();
            async move { $handler(ctx, data.unwrap_or(Value::Null), reply).await }
        });
    }};
}

fn register_events(ctx: &Ctx<SocketPeer>) {
    on!(ctx, "join_conversation", chat::join_conversation);
    on!(ctx, "leave_conversation", chat::leave_conversation);
    on!(ctx, "send_message", chat::send_message);
    on!(ctx, "typing_start", chat::typing_start);
    on!(ctx, "typing_stop", chat::typing_stop);
    on!(ctx, "mark_read", chat::mark_read);
    on!(ctx, "ping", chat::ping);
    on!(ctx, "join", chat::legacy_join);
    on!(ctx, "leave", chat::legacy_leave);
    let disconnect_ctx = ctx.clone();
    ctx.peer.0.on_disconnect(move || {
        let ctx = disconnect_ctx.clone();
        async move {
            metrics::gauge!("switchboard_sockets", "transport" => "socket.io").decrement(1.0);
            chat::disconnect(ctx).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        let q = "EIO=4&transport=polling&token=a%2Eb&userPhone=%2B521";
        assert_eq!(query_param(q, "token").as_deref(), Some("a.b"));
        assert_eq!(query_param(q, "userPhone").as_deref(), Some("+521"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("token=50%", "token").as_deref(), Some("50%"));
    }
}
