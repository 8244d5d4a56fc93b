//! Conversation events onto Socket.IO sockets.
//!
//! Each socket is written to on its own so that one whose queue is full (a
//! client that stopped reading) is identified and disconnected: it would
//! otherwise miss a message and break its ordering. It reconnects and
//! recovers with `since_offset`.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;

use serde::Serialize;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};
use switchboard_proto::model::{Message, StatusUpdate};
use switchboard_proto::pb;

use super::session::session_of;
use crate::feed::{Fanout, InboxEvent, OnFull};
use crate::pacer::{CHUNK, Pacer, slot, steps};
use crate::telemetry;
use crate::wire::{self, event};

pub fn chat_room(conversation_id: &str) -> String {
    format!("conv:{conversation_id}")
}

pub fn legacy_room(conversation_id: &str) -> String {
    format!("legacy:{conversation_id}")
}

pub const AGENTS_ROOM: &str = "agents";

pub fn phone_room(phone: &str) -> String {
    format!("phone:{phone}")
}

pub struct SocketIoFanout {
    io: SocketIo,
    activity: Pacer<Box<RawValue>>,
}

/// Emits to one socket; a full queue disconnects it. Answers whether it was sent.
pub fn emit_to(socket: &SocketRef, event: &str, data: &(impl Serialize + ?Sized)) -> bool {
    emit_or(socket, event, data, OnFull::Disconnect)
}

fn emit_or(socket: &SocketRef, event: &str, data: &(impl Serialize + ?Sized), on_full: OnFull) -> bool {
    match socket.emit(event, data) {
        Ok(()) => {
            metrics::counter!(telemetry::DELIVERIES, "transport" => "socket.io").increment(1);
            true
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) if on_full == OnFull::Skip => {
            metrics::counter!(telemetry::EPHEMERAL_SKIPPED).increment(1);
            false
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            evict(socket);
            false
        }
        Err(_) => false,
    }
}

/// Marks a socket that lost an event to a full queue.
#[derive(Clone)]
struct Evicted;

pub fn is_evicted(socket: &SocketRef) -> bool {
    socket.extensions.get::<Evicted>().is_some()
}

/// A socket that lost an event must receive nothing after it: it leaves every
/// room at once (so later events cannot reach it and open a gap), and is
/// disconnected; it then reconnects and recovers by offset. Counted and
/// logged once per socket, however many events it would have missed.
fn evict(socket: &SocketRef) {
    if socket.extensions.insert(Evicted).is_some() {
        return;
    }
    metrics::counter!(telemetry::SLOW_CONSUMERS, "transport" => "socket.io").increment(1);
    tracing::info!(sid = %socket.id, "disconnecting a socket that stopped reading");
    socket.leave_all();
    tokio::spawn(disconnect_when_drained(socket.clone()));
}

/// socketioxide sends its disconnect packet through the same full queue, so it
/// is tried again until the queue has room (the client read what was queued,
/// all before the lost event) or the socket has gone (its heartbeat timed out
/// because it never read again).
async fn disconnect_when_drained(socket: SocketRef) {
    let mut pause = Duration::from_millis(10);
    while socket.connected() {
        match socket.clone().disconnect() {
            Err(SocketError::InternalChannelFull) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            _ => return,
        }
    }
}

async fn pace(fanout: Weak<SocketIoFanout>) {
    let mut steps = std::pin::pin!(steps());
    while let Some(now) = steps.next().await {
        let Some(fanout) = fanout.upgrade() else { return };
        let mut sockets = sockets_in(&fanout.io, AGENTS_ROOM.into());
        sockets.retain(|socket| slot(socket.id.as_str()) == now);
        for sockets in sockets.chunks(CHUNK) {
            sockets.iter().for_each(|socket| fanout.send_activity(socket));
            tokio::task::yield_now().await;
        }
    }
}

/// The local sockets in a room. Empty once the server closed its namespace
/// while draining (`io.to` would panic then).
pub fn sockets_in(io: &SocketIo, room: String) -> Vec<SocketRef> {
    io.of("/").map(|ns| ns.to(room).sockets()).unwrap_or_default()
}

/// Which sockets of a room an event is for.
enum To<'a> {
    All,
    /// Typing and presence are not echoed to the socket they came from.
    AllBut(&'a str),
    /// Private notes.
    Staff,
}

impl To<'_> {
    fn keeps(&self, socket: &SocketRef) -> bool {
        match self {
            To::All => true,
            To::AllBut(origin) => socket.id.to_string() != *origin,
            To::Staff => session_of(socket).is_some_and(|s| s.is_staff()),
        }
    }
}

/// A payload serialised at most once, by the first socket that needs it.
struct Once<F> {
    make: Option<F>,
    payload: Option<Box<RawValue>>,
}

impl<T: Serialize, F: FnOnce() -> T> Once<F> {
    fn new(make: F) -> Self {
        Self { make: Some(make), payload: None }
    }

    fn get(&mut self) -> Option<&RawValue> {
        if let Some(make) = self.make.take() {
            self.payload = serde_json::value::to_raw_value(&make()).ok();
        }
        self.payload.as_deref()
    }
}

impl SocketIoFanout {
    /// Starts the task that paces agents' activity updates; it ends with the
    /// last reference to what this returns.
    pub fn start(io: SocketIo) -> Arc<Self> {
        let fanout = Arc::new(Self { io, activity: Pacer::default() });
        tokio::spawn(pace(Arc::downgrade(&fanout)));
        fanout
    }

    /// Sends an agent socket its next activity updates.
    fn send_activity(&self, socket: &SocketRef) {
        let Some(session) = session_of(socket) else { return };
        let cursor = session.inbox_cursor(|since| self.activity.start(since));
        let (items, cursor) = self.activity.next(session.inbox_view(), &session.identity.user_id, cursor);
        session.set_inbox_cursor(cursor);
        for item in items {
            let payload = item.payload.get_or_init(|| {
                let data = wire::conversation(&item.conversation);
                serde_json::value::to_raw_value(&data).unwrap_or_else(|_| RawValue::NULL.to_owned())
            });
            // Advisory, and the next one corrects it: never worth a disconnect.
            emit_or(socket, event::CONVERSATION_UPDATED, payload, OnFull::Skip);
        }
    }

    /// Emits `data` to the sockets in `room` that `to` keeps, serialised
    /// once rather than once per socket, and only when one is kept: most
    /// events reach sockets of one transport, or one style, only.
    fn broadcast<T: Serialize>(
        &self,
        room: String,
        to: To<'_>,
        on_full: OnFull,
        event: &str,
        data: impl FnOnce() -> T,
    ) {
        let mut payload = Once::new(data);
        for socket in sockets_in(&self.io, room) {
            if to.keeps(&socket)
                && let Some(payload) = payload.get()
            {
                emit_or(&socket, event, payload, on_full);
            }
        }
    }
}

impl Fanout for SocketIoFanout {
    fn message(&self, message: &Message) {
        let conversation = &message.conversation_id;
        let to = || if message.private { To::Staff } else { To::All };
        self.broadcast(chat_room(conversation), to(), OnFull::Disconnect, event::MESSAGE_NEW, || message);
        let legacy = || wire::legacy_message(message);
        self.broadcast(legacy_room(conversation), to(), OnFull::Disconnect, event::LEGACY_MESSAGE, legacy);
    }

    fn status(&self, status: &StatusUpdate) {
        let room = chat_room(&status.conversation_id);
        let to = if status.private { To::Staff } else { To::All };
        self.broadcast(room, to, OnFull::Disconnect, event::MESSAGE_STATUS, || status);
    }

    fn typing(&self, typing: &pb::Typing) {
        let room = chat_room(&typing.conversation_id);
        let to = To::AllBut(&typing.origin);
        self.broadcast(room, to, OnFull::Skip, event::USER_TYPING, || wire::typing(typing));
    }

    fn inbox(&self, inbox: &InboxEvent<'_>) {
        if let InboxEvent::Updated(change) = inbox
            && !change.is_handling()
        {
            return self.activity.push(change.conversation.clone());
        }
        let conversation = inbox.conversation();
        let mut staff = Once::new(|| wire::conversation(conversation));
        let mut reached = HashSet::new();
        for socket in sockets_in(&self.io, AGENTS_ROOM.into()) {
            let Some(session) = session_of(&socket) else { continue };
            if inbox.reaches(session.inbox_view(), &session.identity.user_id)
                && let Some(payload) = staff.get()
                && emit_to(&socket, inbox.name(), payload)
            {
                reached.insert(socket.id);
            }
        }
        if !inbox.to_members() {
            return;
        }
        let mut customer = Once::new(|| wire::conversation(&conversation.clone().for_customer()));
        for room in [chat_room(&conversation.id), legacy_room(&conversation.id)] {
            for socket in sockets_in(&self.io, room) {
                if !reached.insert(socket.id) {
                    continue;
                }
                let is_staff = session_of(&socket).is_some_and(|s| s.is_staff());
                let payload = if is_staff { staff.get() } else { customer.get() };
                if let Some(payload) = payload {
                    emit_to(&socket, inbox.name(), payload);
                }
            }
        }
    }

    fn presence(&self, presence: &pb::Presence) {
        let room = chat_room(&presence.conversation_id);
        let payload = || wire::presence(presence);
        self.broadcast(room, To::AllBut(&presence.origin), OnFull::Skip, event::PRESENCE, payload);
    }
}
