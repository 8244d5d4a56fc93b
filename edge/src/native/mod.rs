//! The native WebSocket protocol: `GET /ws`, and `GET
//! /api/ws/chat/{conversation_id}` (a socket already joined to that
//! conversation, the path the ticketing backend's widget opens). The same
//! operations, events, limits and recovery as Socket.IO, through the same chat
//! operations.
//!
//! JSON text frames by default. A client sends `{"type": <operation>, "ref":
//! <any>, ...payload}` and gets `{"type": "ack", "ref": <ref>, "ok": ..., ...}`
//! when it gave a `ref`; events arrive as `{"type": <event>, "data": <payload>}`.
//! A client that asks for the `switchboard.v1.proto` subprotocol speaks the
//! binary frames of `proto/native.proto` instead.
//!
//! - [`rooms`]: native connections and their conversations (fan-out).
//! - [`codec`]: the two encodings of frames.

pub mod codec;
pub mod rooms;

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use self::codec::{Codec, PROTOBUF};
use self::rooms::{Ack, Frame, NativeRooms, Outbox};
use crate::auth::Identity;
use crate::chat::{self, Audience, Ctx, Operation, Peer, Responder};
use crate::error::ApiError;
use crate::http::extract::{AppState, Caller};
use crate::session::Session;
use crate::sockets::Closed;
use crate::wire::{self, event};
use switchboard_proto::model::Role;

/// How often the server pings an idle connection.
const PING_EVERY: Duration = Duration::from_secs(25);
/// Frames written before one flush at most.
const WRITE_BATCH: usize = 64;
/// How long one write may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes(rooms: Arc<NativeRooms>) -> Router<AppState> {
    Router::new()
        .route("/ws", get(open))
        .route("/api/ws/chat/{conversation_id}", get(open_joined))
        .layer(Extension(rooms))
}

async fn open(
    State(state): State<AppState>,
    Extension(rooms): Extension<Arc<NativeRooms>>,
    caller: Result<Caller, ApiError>,
    upgrade: WebSocketUpgrade,
) -> Response {
    accept(state, rooms, caller, upgrade, None)
}

async fn open_joined(
    State(state): State<AppState>,
    Extension(rooms): Extension<Arc<NativeRooms>>,
    caller: Result<Caller, ApiError>,
    Path(conversation_id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    accept(state, rooms, caller, upgrade, Some(conversation_id))
}

/// The `transport` label of native sockets.
const TRANSPORT: &str = "native";

fn accept(
    state: AppState,
    rooms: Arc<NativeRooms>,
    caller: Result<Caller, ApiError>,
    upgrade: WebSocketUpgrade,
    joined: Option<String>,
) -> Response {
    let admitted = match caller {
        _ if state.is_draining() => Err(ApiError::unavailable("server shutting down: reconnect")),
        caller => caller,
    };
    let who = match admitted {
        Ok(Caller(who)) => who,
        Err(refusal) => {
            state.sockets.refused(TRANSPORT, refusal.code.as_str());
            return refusal.into_response();
        }
    };
    let limits = &state.config.limits;
    upgrade
        .max_message_size(limits.max_payload)
        .max_frame_size(limits.max_payload)
        // Small buffers: memory per idle connection is what a chat edge scales
        // on, and chat frames are a few hundred bytes (a larger one takes
        // several reads). The read buffer is kept for the connection's life.
        .read_buffer_size(1024)
        .write_buffer_size(4096)
        .protocols([PROTOBUF])
        .on_upgrade(move |socket| {
            let codec = if socket.protocol().is_some() { Codec::Protobuf } else { Codec::Json };
            serve(socket, codec, state, rooms, who, joined)
        })
}

/// A native connection as the chat operations see it.
#[derive(Clone)]
struct NativePeer {
    id: String,
    outbox: Outbox,
    rooms: Arc<NativeRooms>,
    staff: bool,
}

impl Peer for NativePeer {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn enter(&self, conversation_id: &str, _: Audience) {
        self.rooms.enter(conversation_id, &self.id, &self.outbox, self.staff);
    }

    fn exit(&self, conversation_id: &str, _: Audience) {
        self.rooms.exit(conversation_id, &self.id);
    }

    fn emit(&self, event: &str, data: &Value) {
        self.outbox.event(event, data.clone());
    }
}

/// Answers one operation: an `ack` frame when the client gave a `ref`, else
/// failures as an `error` event.
struct NativeReply {
    outbox: Outbox,
    reference: Option<Value>,
}

impl Responder for NativeReply {
    fn send(self, outcome: Result<Value, ApiError>) {
        match (self.reference, outcome) {
            (Some(reference), outcome) => {
                let body = wire::answer(&outcome);
                self.outbox.send(Frame::Ack(Box::new(Ack { reference, body })))
            }
            (None, Err(e)) => self.outbox.event(event::ERROR, e.event()),
            (None, Ok(_)) => {}
        }
    }
}

async fn serve(
    socket: WebSocket,
    codec: Codec,
    state: AppState,
    rooms: Arc<NativeRooms>,
    who: Identity,
    joined: Option<String>,
) {
    let (outbox, mut outgoing) = Outbox::new(state.config.limits.outbound_buffer);
    let id = format!("ws-{}", Uuid::now_v7().simple());
    let session = Arc::new(Session::new(who, None, &state.config.limits));
    rooms.connect(&id, &outbox, &session);
    state.sockets.opened(TRANSPORT);
    if session.identity.role == Role::Agent {
        state.agent_connected(&session.identity);
    }
    let staff = session.is_staff();
    let peer = NativePeer { id: id.clone(), outbox: outbox.clone(), rooms: rooms.clone(), staff };
    let ctx = Ctx { state, peer, session };
    outbox.event(event::CONNECTED, wire::greeting(&ctx.session.identity.user_id));
    if let Some(conversation_id) = joined {
        let reply = NativeReply { outbox: outbox.clone(), reference: None };
        tokio::spawn(Operation::JoinConversation.run(
            ctx.clone(),
            wire::conversation_ref(&conversation_id),
            reply,
        ));
    }

    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    let close = outbox.close.clone();
    let max_payload = ctx.state.config.limits.max_payload;
    let closed = loop {
        tokio::select! {
            frame = outgoing.recv() => {
                let Some(frame) = frame else { break Closed::ServerDisconnect };
                if !within(WRITE_TIMEOUT, write_queued(&mut sink, codec, frame, &mut outgoing)).await {
                    break Closed::TimedOut;
                }
            }
            received = incoming.next() => match received {
                Some(Ok(WsMessage::Close(_))) | None => break Closed::ClientClosed,
                Some(Err(e)) => {
                    let Some(reason) = refusal(&e, max_payload) else { break Closed::TransportError };
                    within(WRITE_TIMEOUT, sink.send(WsMessage::Close(Some(reason)))).await;
                    break Closed::ProtocolError;
                }
                // Pings are answered by the WebSocket layer.
                Some(Ok(message)) => match codec.decode(&message) {
                    Some(Ok(operation)) => dispatch(&ctx, operation),
                    Some(Err(wrong)) => ctx.peer.emit(event::ERROR, &ApiError::bad_request(wrong).event()),
                    None => {}
                },
            },
            _ = ping.tick() => {
                if !within(WRITE_TIMEOUT, sink.send(WsMessage::Ping(Default::default()))).await {
                    break Closed::TimedOut;
                }
            }
            () = close.notified() => {
                // A full outbox (the client stopped reading) or a draining node:
                // the client reconnects and recovers by offset.
                if outbox.is_evicted() {
                    tracing::info!(connection = %id, "disconnecting a socket that stopped reading");
                }
                let reason = CloseFrame { code: close_code::AGAIN, reason: "reconnect".into() };
                within(WRITE_TIMEOUT, sink.send(WsMessage::Close(Some(reason)))).await;
                break Closed::ServerShutdown;
            }
        }
    };
    // An evicted connection stopped reading, whatever ended it after.
    let closed = if outbox.is_evicted() { Closed::StoppedReading } else { closed };
    rooms.disconnect(&id);
    ctx.state.sockets.closed(TRANSPORT, &ctx.session.identity.user_id, closed);
    chat::disconnect(ctx).await;
}

/// Whether `write` finished, and without error, within `limit`: a client that
/// stops reading blocks writes, and must not hold its connection forever.
async fn within(limit: Duration, write: impl Future<Output = Result<(), axum::Error>>) -> bool {
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
}

/// The close frame a failed read is answered with, when the client can be told
/// why: a frame over the size limit (1009) or broken framing (1002).
fn refusal(error: &axum::Error, max_payload: usize) -> Option<CloseFrame> {
    use tungstenite::error::{CapacityError, Error};
    let (code, reason) = match std::error::Error::source(error)?.downcast_ref::<Error>()? {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => {
            (close_code::SIZE, format!("message too big: the limit is {max_payload} bytes"))
        }
        Error::Capacity(_) => (close_code::SIZE, "frame too big".to_owned()),
        Error::Protocol(e) => (close_code::PROTOCOL, e.to_string()),
        Error::Utf8(_) => (close_code::INVALID, "text frame is not UTF-8".to_owned()),
        _ => return None,
    };
    Some(CloseFrame { code, reason: reason.into() })
}

/// Writes `first` and whatever else is already queued (up to a bound, so reads
/// are not starved), then flushes once: under load, one write carries many
/// frames instead of one system call per frame.
async fn write_queued(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    codec: Codec,
    first: Frame,
    queued: &mut mpsc::Receiver<Frame>,
) -> Result<(), axum::Error> {
    sink.feed(codec.encode(&first)).await?;
    for _ in 1..WRITE_BATCH {
        let Ok(frame) = queued.try_recv() else { break };
        sink.feed(codec.encode(&frame)).await?;
    }
    sink.flush().await
}

/// Runs one client operation on its own task, like Socket.IO events.
fn dispatch(ctx: &Ctx<NativePeer>, operation: codec::Operation) {
    let codec::Operation { kind, reference, data } = operation;
    let reply = NativeReply { outbox: ctx.peer.outbox.clone(), reference };
    match Operation::parse(&kind).filter(|op| op.is_native()) {
        Some(operation) => {
            tokio::spawn(operation.run(ctx.clone(), data, reply));
        }
        None => reply.send(Err(ApiError::bad_request(format!("unknown frame type {kind:?}")))),
    }
}
