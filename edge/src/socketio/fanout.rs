//! Conversation events onto Socket.IO sockets.
//!
//! Each socket is written to on its own so that one whose queue is full (a
//! client that stopped reading) is identified and disconnected: it would
//! otherwise miss a message and break its ordering. It reconnects and
//! recovers with `since_offset`.

use std::time::Duration;

use serde::Serialize;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};
use switchboard_proto::model::{Conversation, Message, StatusUpdate};
use switchboard_proto::pb;

use crate::feed::{Fanout, OnFull};
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
    pub io: SocketIo,
}

/// Emits to one socket; a full queue disconnects it. Answers whether it was sent.
pub fn emit_to(socket: &SocketRef, event: &str, data: &(impl Serialize + ?Sized)) -> bool {
    emit_or(socket, event, data, OnFull::Disconnect)
}

fn emit_or(socket: &SocketRef, event: &str, data: &(impl Serialize + ?Sized), on_full: OnFull) -> bool {
    match socket.emit(event, data) {
        Ok(()) => {
            metrics::counter!("switchboard_deliveries_total", "transport" => "socket.io").increment(1);
            true
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) if on_full == OnFull::Skip => {
            metrics::counter!("switchboard_ephemeral_skipped_total").increment(1);
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
    metrics::counter!("switchboard_slow_consumers_disconnected_total", "transport" => "socket.io")
        .increment(1);
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

/// The local sockets in a room. Empty once the server closed its namespace
/// while draining (`io.to` would panic then).
pub fn sockets_in(io: &SocketIo, room: String) -> Vec<SocketRef> {
    io.of("/").map(|ns| ns.to(room).sockets()).unwrap_or_default()
}

impl SocketIoFanout {
    /// Emits `data` to every socket in `room` but `except`, serialised once
    /// rather than once per socket.
    /// `data` is made only when the room has a socket: most events reach
    /// sockets of one transport, or one style, only.
    fn broadcast<T: Serialize>(
        &self,
        room: String,
        except: Option<&str>,
        on_full: OnFull,
        event: &str,
        data: impl FnOnce() -> T,
    ) {
        let sockets = sockets_in(&self.io, room);
        if sockets.is_empty() {
            return;
        }
        let Ok(payload) = serde_json::value::to_raw_value(&data()) else { return };
        for socket in sockets {
            if except.is_none_or(|except| socket.id.to_string() != except) {
                emit_or(&socket, event, &payload, on_full);
            }
        }
    }
}

impl Fanout for SocketIoFanout {
    fn message(&self, message: &Message) {
        let conversation = &message.conversation_id;
        self.broadcast(chat_room(conversation), None, OnFull::Disconnect, event::MESSAGE_NEW, || message);
        let legacy = || wire::legacy_message(message);
        self.broadcast(legacy_room(conversation), None, OnFull::Disconnect, event::LEGACY_MESSAGE, legacy);
    }

    fn status(&self, status: &StatusUpdate) {
        let room = chat_room(&status.conversation_id);
        self.broadcast(room, None, OnFull::Disconnect, event::MESSAGE_STATUS, || status);
    }

    fn typing(&self, typing: &pb::Typing) {
        let room = chat_room(&typing.conversation_id);
        self.broadcast(room, Some(&typing.origin), OnFull::Skip, event::USER_TYPING, || wire::typing(typing));
    }

    fn inbox(&self, name: &str, conversation: &Conversation) {
        let payload = || wire::conversation(conversation);
        self.broadcast(AGENTS_ROOM.into(), None, OnFull::Disconnect, name, payload);
    }

    fn presence(&self, presence: &pb::Presence) {
        let room = chat_room(&presence.conversation_id);
        let payload = || wire::presence(presence);
        self.broadcast(room, Some(&presence.origin), OnFull::Skip, event::PRESENCE, payload);
    }
}
