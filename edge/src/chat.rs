//! The chat operations, whatever the transport: Socket.IO events and native
//! WebSocket frames both land here, through one table of [`Operation`]s, a
//! [`Peer`] (the connection) and a [`Responder`] (the answer to one operation).

use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchboard_bus::events::Event;
use switchboard_proto::model::{ConversationStatus, DeliveryStatus, Timestamp};
use switchboard_proto::pb;
use uuid::Uuid;

use crate::error::ApiError;
use crate::feed::{JoinRequest, Respond, Snapshot};
use crate::handling::{self, AssignRequest};
use crate::rules::check_id;
use crate::session::{InboxView, Session};
use crate::state::EdgeState;
use crate::wire::{self, event};
use crate::writes::{self, NewText};

/// Which of a conversation's audiences a connection is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `join_conversation`: `message:new`, statuses, typing, presence.
    Chat,
    /// The room-string style, `join "chat:<id>"`: `new-message` only.
    Legacy,
}

/// One client connection, as the chat operations need it.
pub trait Peer: Clone + Send + Sync + 'static {
    /// Unique per connection; typing and presence are not echoed to it.
    fn id(&self) -> String;
    /// From now on the connection receives the conversation's events.
    fn enter(&self, conversation_id: &str, audience: Audience);
    fn exit(&self, conversation_id: &str, audience: Audience);
    fn emit(&self, event: &str, data: &Value);
}

/// The answer to one operation: `fields` are merged into `{ok:true}`, an
/// error becomes `{ok:false, error}` (or an `error` event when the client
/// asked for no answer).
pub trait Responder: Send + 'static {
    fn send(self, outcome: Result<Value, ApiError>);
}

/// Every operation a connection may ask for, by its event (or frame `type`) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    JoinConversation,
    LeaveConversation,
    SendMessage,
    TypingStart,
    TypingStop,
    MarkRead,
    Ping,
    /// The room-string style: `join "chat:<id>"`, `leave "chat:<id>"`.
    Join,
    Leave,
    AssignConversation,
    CloseConversation,
    ReopenConversation,
    RequestHuman,
    SubscribeInbox,
    SetAvailability,
}

impl Operation {
    pub const ALL: &[Operation] = &[
        Operation::JoinConversation,
        Operation::LeaveConversation,
        Operation::SendMessage,
        Operation::TypingStart,
        Operation::TypingStop,
        Operation::MarkRead,
        Operation::Ping,
        Operation::Join,
        Operation::Leave,
        Operation::AssignConversation,
        Operation::CloseConversation,
        Operation::ReopenConversation,
        Operation::RequestHuman,
        Operation::SubscribeInbox,
        Operation::SetAvailability,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::JoinConversation => "join_conversation",
            Operation::LeaveConversation => "leave_conversation",
            Operation::SendMessage => "send_message",
            Operation::TypingStart => "typing_start",
            Operation::TypingStop => "typing_stop",
            Operation::MarkRead => "mark_read",
            Operation::Ping => "ping",
            Operation::Join => "join",
            Operation::Leave => "leave",
            Operation::AssignConversation => "assign_conversation",
            Operation::CloseConversation => "close_conversation",
            Operation::ReopenConversation => "reopen_conversation",
            Operation::RequestHuman => "request_human",
            Operation::SubscribeInbox => "subscribe_inbox",
            Operation::SetAvailability => "set_availability",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// The room-string style is Socket.IO's alone: its `new-message` event
    /// has no place in the native protocol.
    pub fn is_native(self) -> bool {
        !matches!(self, Operation::Join | Operation::Leave)
    }

    /// Runs the operation for `ctx`'s connection and answers through `reply`.
    pub async fn run<P: Peer>(self, ctx: Ctx<P>, data: Value, reply: impl Responder) {
        match self {
            Operation::JoinConversation => join_conversation(ctx, data, reply).await,
            Operation::LeaveConversation => leave_conversation(ctx, data, reply).await,
            Operation::SendMessage => send_message(ctx, data, reply).await,
            Operation::TypingStart => reply.send(typing(&ctx, data, true).await),
            Operation::TypingStop => reply.send(typing(&ctx, data, false).await),
            Operation::MarkRead => mark_read(ctx, data, reply).await,
            Operation::Ping => ping(ctx, reply),
            Operation::Join => legacy_join(ctx, data, reply).await,
            Operation::Leave => legacy_leave(ctx, data, reply).await,
            Operation::AssignConversation => reply.send(assign_conversation(&ctx, data).await),
            Operation::CloseConversation => {
                reply.send(set_conversation_status(&ctx, data, ConversationStatus::Closed).await)
            }
            Operation::ReopenConversation => {
                reply.send(set_conversation_status(&ctx, data, ConversationStatus::Open).await)
            }
            Operation::RequestHuman => {
                reply.send(set_conversation_status(&ctx, data, ConversationStatus::Pending).await)
            }
            Operation::SubscribeInbox => reply.send(subscribe_inbox(&ctx, data)),
            Operation::SetAvailability => reply.send(set_availability(&ctx, data).await),
        }
    }
}

/// What every operation is given.
#[derive(Clone)]
pub struct Ctx<P: Peer> {
    pub state: Arc<EdgeState>,
    pub peer: P,
    pub session: Arc<Session>,
}

#[derive(Deserialize)]
struct JoinPayload {
    conversation_id: String,
    since_offset: Option<u64>,
}

#[derive(Deserialize)]
struct ConversationPayload {
    conversation_id: String,
}

#[derive(Deserialize)]
struct SendPayload {
    conversation_id: String,
    text: String,
    client_msg_id: Option<String>,
    #[serde(default)]
    private: bool,
}

#[derive(Deserialize)]
struct AssignPayload {
    conversation_id: String,
    #[serde(flatten)]
    request: AssignRequest,
}

#[derive(Deserialize)]
struct ViewPayload {
    view: String,
}

#[derive(Deserialize)]
struct AvailabilityPayload {
    status: String,
}

#[derive(Deserialize)]
struct MarkReadPayload {
    conversation_id: String,
    message_id: Uuid,
}

fn parse<T: DeserializeOwned>(event: &str, data: Value) -> Result<T, ApiError> {
    serde_json::from_value(data).map_err(|e| ApiError::bad_request(format!("invalid {event} payload: {e}")))
}

async fn join_conversation<P: Peer>(ctx: Ctx<P>, data: Value, reply: impl Responder) {
    let payload: JoinPayload = match parse("join_conversation", data) {
        Ok(p) => p,
        Err(e) => return reply.send(Err(e)),
    };
    join(ctx, payload.conversation_id, payload.since_offset, false, reply).await;
}

/// `join "chat:<id>"` (or `"conversation:<id>"`), no ack expected.
async fn legacy_join<P: Peer>(ctx: Ctx<P>, data: Value, reply: impl Responder) {
    match legacy_conversation(&data) {
        Ok(id) => join(ctx, id, None, true, reply).await,
        Err(e) => reply.send(Err(e)),
    }
}

async fn legacy_leave<P: Peer>(ctx: Ctx<P>, data: Value, reply: impl Responder) {
    match legacy_conversation(&data) {
        Ok(id) => {
            let _turn = ctx.session.presence_turn().await;
            if leave(&ctx, &id, true) {
                announce_presence(&ctx, &id, false).await;
            }
            reply.send(Ok(json!({ "conversation_id": id })));
        }
        Err(e) => reply.send(Err(e)),
    }
}

fn legacy_conversation(data: &Value) -> Result<String, ApiError> {
    let room =
        data.as_str().ok_or_else(|| ApiError::bad_request("join takes a room name such as \"chat:<id>\""))?;
    room.strip_prefix("chat:")
        .or_else(|| room.strip_prefix("conversation:"))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request(format!("unknown room {room:?}: use \"chat:<id>\"")))
}

async fn join<P: Peer>(
    ctx: Ctx<P>,
    conversation_id: String,
    since: Option<u64>,
    legacy: bool,
    reply: impl Responder,
) {
    if let Err(e) = ctx.state.access(&ctx.session.identity, &conversation_id).await {
        return reply.send(Err(e));
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let respond: Respond = {
        let ctx = ctx.clone();
        let conversation_id = conversation_id.clone();
        // Runs in the feed's sequence: the answer goes out and the socket
        // enters the room before the feed delivers anything newer.
        Box::new(move |outcome: Result<Snapshot, ApiError>| {
            let staff = ctx.session.is_staff();
            let answer = outcome.map(|mut snapshot| {
                // A customer's view skips staff-only notes; its offsets keep their holes.
                snapshot.messages.retain(|m| staff || !m.private);
                let entered = ctx.session.while_member(&conversation_id, legacy, || {
                    ctx.peer.enter(&conversation_id, audience(legacy))
                });
                if entered && !legacy {
                    ctx.peer.emit(event::JOINED, &wire::joined(&conversation_id));
                }
                json!({
                    "conversation_id": conversation_id,
                    "offset": snapshot.offset,
                    "messages": snapshot.messages,
                    "has_more": snapshot.has_more,
                })
            });
            let _ = done_tx.send(answer.is_ok());
            reply.send(answer);
        })
    };
    // The feed counts the socket in the same step that records the join, so a
    // disconnect at any moment gives back exactly what the join took.
    let mut request = Some(JoinRequest { since, respond });
    let entered = ctx.session.enter(&conversation_id, legacy, |first| {
        let request = request.take().expect("the join request is used once");
        ctx.state.feeds.join(&conversation_id, request, first);
    });
    let new_member = match entered {
        Ok(new_member) => new_member,
        Err(e) => {
            if let Some(request) = request {
                (request.respond)(Err(e));
            }
            return;
        }
    };
    match done_rx.await {
        Ok(true) if new_member => {
            let _turn = ctx.session.presence_turn().await;
            // Not when the socket left or went while the join was answered:
            // its `offline` may have gone out already.
            if ctx.session.is_member(&conversation_id) {
                announce_presence(&ctx, &conversation_id, true).await;
            }
        }
        Ok(true) => {}
        _ => {
            leave(&ctx, &conversation_id, legacy);
        }
    }
}

async fn leave_conversation<P: Peer>(ctx: Ctx<P>, data: Value, reply: impl Responder) {
    let outcome = parse::<ConversationPayload>("leave_conversation", data).map(|p| p.conversation_id);
    match outcome {
        Ok(id) => {
            stop_typing(&ctx, &id).await;
            let turn = ctx.session.presence_turn().await;
            if leave(&ctx, &id, false) {
                announce_presence(&ctx, &id, false).await;
            }
            drop(turn);
            ctx.peer.emit(event::LEFT, &wire::conversation_ref(&id));
            reply.send(Ok(json!({ "conversation_id": id })));
        }
        Err(e) => reply.send(Err(e)),
    }
}

/// Takes the socket out of the room and, when it is out of the conversation
/// entirely, out of the feed; answers whether it is now out entirely.
fn leave<P: Peer>(ctx: &Ctx<P>, conversation_id: &str, legacy: bool) -> bool {
    ctx.peer.exit(conversation_id, audience(legacy));
    let gone = ctx.session.exit(conversation_id, legacy) == Some(true);
    if gone {
        ctx.state.feeds.leave(conversation_id);
    }
    gone
}

async fn send_message<P: Peer>(ctx: Ctx<P>, data: Value, reply: impl Responder) {
    reply.send(store_message(&ctx, data).await.map(|message| json!({ "message": message })));
}

async fn store_message<P: Peer>(
    ctx: &Ctx<P>,
    data: Value,
) -> Result<switchboard_proto::model::Message, ApiError> {
    let payload: SendPayload = parse("send_message", data)?;
    let joined = ctx.session.is_chat_member(&payload.conversation_id);
    if !ctx.session.may_publish() {
        return Err(ApiError::rate_limited("too many messages: slow down"));
    }
    let new = NewText {
        conversation_id: payload.conversation_id,
        text: payload.text,
        client_msg_id: payload.client_msg_id,
        private: payload.private,
    };
    Ok(writes::send_message(&ctx.state, &ctx.session.identity, new, joined).await?.0)
}

async fn typing<P: Peer>(ctx: &Ctx<P>, data: Value, typing: bool) -> Result<Value, ApiError> {
    let event = if typing { "typing_start" } else { "typing_stop" };
    let id = parse::<ConversationPayload>(event, data)?.conversation_id;
    if !ctx.session.is_chat_member(&id) {
        return Err(ApiError::forbidden(format!("join conversation {id} before typing in it")));
    }
    if !ctx.session.may_type() {
        return Err(ApiError::rate_limited("too many typing events: slow down"));
    }
    if typing {
        let expiry = {
            let ctx = ctx.clone();
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ctx.state.config.limits.typing_ttl).await;
                ctx.session.set_typing_timer(&id, None);
                publish_typing(&ctx, &id, false).await;
            })
        };
        ctx.session.set_typing_timer(&id, Some(expiry.abort_handle()));
        publish_typing(ctx, &id, true).await;
    } else {
        stop_typing(ctx, &id).await;
    }
    Ok(json!({ "conversation_id": id }))
}

/// Ends a typing indicator the socket had shown, if any.
pub async fn stop_typing<P: Peer>(ctx: &Ctx<P>, conversation_id: &str) {
    if ctx.session.set_typing_timer(conversation_id, None) {
        publish_typing(ctx, conversation_id, false).await;
    }
}

async fn publish_typing<P: Peer>(ctx: &Ctx<P>, conversation_id: &str, typing: bool) {
    let event = Event::Typing(pb::Typing {
        conversation_id: conversation_id.to_owned(),
        user_id: ctx.session.identity.user_id.clone(),
        typing,
        origin: ctx.peer.id(),
    });
    if let Err(e) = event.publish(ctx.state.bus.as_ref()).await {
        tracing::debug!(error = %e, "typing not published");
    }
}

pub async fn announce_presence<P: Peer>(ctx: &Ctx<P>, conversation_id: &str, online: bool) {
    let identity = &ctx.session.identity;
    let event = Event::Presence(pb::Presence {
        conversation_id: conversation_id.to_owned(),
        user_id: identity.user_id.clone(),
        role: identity.role.as_str().into(),
        online,
        origin: ctx.peer.id(),
    });
    if let Err(e) = event.publish(ctx.state.bus.as_ref()).await {
        tracing::debug!(error = %e, "presence not published");
    }
}

async fn mark_read<P: Peer>(ctx: Ctx<P>, data: Value, reply: impl Responder) {
    let outcome = async {
        let payload: MarkReadPayload = parse("mark_read", data)?;
        check_id("conversation_id", &payload.conversation_id)?;
        let status = writes::set_status(
            &ctx.state,
            &ctx.session.identity,
            payload.message_id,
            DeliveryStatus::Read,
            Some(&payload.conversation_id),
        )
        .await?;
        Ok(json!({ "status": status }))
    };
    reply.send(outcome.await);
}

async fn assign_conversation<P: Peer>(ctx: &Ctx<P>, data: Value) -> Result<Value, ApiError> {
    let payload: AssignPayload = parse("assign_conversation", data)?;
    let target = payload.request.target()?;
    let id = payload.conversation_id;
    let conversation = handling::assign(&ctx.state, &ctx.session.identity, &id, target).await?;
    Ok(json!({ "conversation": conversation }))
}

async fn set_conversation_status<P: Peer>(
    ctx: &Ctx<P>,
    data: Value,
    status: ConversationStatus,
) -> Result<Value, ApiError> {
    let event = match status {
        ConversationStatus::Open => "reopen_conversation",
        ConversationStatus::Closed => "close_conversation",
        ConversationStatus::Pending => "request_human",
    };
    let id = parse::<ConversationPayload>(event, data)?.conversation_id;
    let conversation = handling::set_status(&ctx.state, &ctx.session.identity, &id, status).await?;
    Ok(json!({ "conversation": conversation }))
}

fn subscribe_inbox<P: Peer>(ctx: &Ctx<P>, data: Value) -> Result<Value, ApiError> {
    handling::require_agent(&ctx.session.identity, "subscribe to the inbox")?;
    let name = parse::<ViewPayload>("subscribe_inbox", data)?.view;
    let view = InboxView::parse(&name).ok_or_else(|| {
        ApiError::bad_request(format!("view is \"all\", \"mine\", \"unassigned\" or \"none\", not {name:?}"))
    })?;
    ctx.session.set_inbox_view(view);
    Ok(json!({ "view": view.name() }))
}

async fn set_availability<P: Peer>(ctx: &Ctx<P>, data: Value) -> Result<Value, ApiError> {
    let who = &ctx.session.identity;
    handling::require_agent(who, "set their availability")?;
    let availability =
        handling::availability(&parse::<AvailabilityPayload>("set_availability", data)?.status)?;
    ctx.state
        .agents
        .set(who, availability)
        .ok_or_else(|| ApiError::unavailable("the connection has closed"))?;
    let agent = handling::agent(&ctx.state, who, availability).await?;
    Ok(json!({ "agent": agent }))
}

fn ping<P: Peer>(ctx: Ctx<P>, reply: impl Responder) {
    let now = Timestamp::now();
    ctx.peer.emit(event::PONG, &json!({ "timestamp": now }));
    reply.send(Ok(json!({ "timestamp": now })));
}

/// Everything a socket held, given back when it goes.
pub async fn disconnect<P: Peer>(ctx: Ctx<P>) {
    if ctx.session.identity.role == switchboard_proto::model::Role::Agent {
        ctx.state.agents.disconnect(&ctx.session.identity.user_id);
    }
    let turn = ctx.session.presence_turn().await;
    for conversation_id in ctx.session.exit_all() {
        ctx.state.feeds.leave(&conversation_id);
        stop_typing(&ctx, &conversation_id).await;
        announce_presence(&ctx, &conversation_id, false).await;
    }
    drop(turn);
}

fn audience(legacy: bool) -> Audience {
    if legacy { Audience::Legacy } else { Audience::Chat }
}
