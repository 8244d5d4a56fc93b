//! Conversation events onto Socket.IO sockets.
//!
//! Each socket is written to on its own so that one whose queue is full (a
//! client that stopped reading) is identified and disconnected: it would
//! otherwise miss a message and break its ordering. It reconnects and
//! recovers with `since_offset`.

use serde::Serialize;
use serde_json::json;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};
use switchboard_proto::model::{Conversation, Message, Role, StatusUpdate};
use switchboard_proto::pb;

use crate::feed::Fanout;

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
    match socket.emit(event, data) {
        Ok(()) => {
            metrics::counter!("switchboard_deliveries_total", "transport" => "socket.io").increment(1);
            true
        }
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            metrics::counter!("switchboard_slow_consumers_disconnected_total").increment(1);
            tracing::info!(sid = %socket.id, "disconnecting a socket that stopped reading");
            let _ = socket.clone().disconnect();
            false
        }
        Err(_) => false,
    }
}

/// The local sockets in a room. Empty once the server closed its namespace
/// while draining (`io.to` would panic then).
pub fn sockets_in(io: &SocketIo, room: String) -> Vec<SocketRef> {
    io.of("/").map(|ns| ns.to(room).sockets()).unwrap_or_default()
}

impl SocketIoFanout {
    fn room(&self, room: String) -> Vec<SocketRef> {
        sockets_in(&self.io, room)
    }

    fn each_except(&self, room: String, origin: &str, event: &str, data: &(impl Serialize + ?Sized)) {
        for socket in self.room(room) {
            if socket.id.to_string() != origin {
                emit_to(&socket, event, data);
            }
        }
    }
}

/// Seed 004's `from`: who wrote a message, as its widget understands it.
fn legacy_from(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Bot => "bot",
        Role::Agent | Role::Service => "agent",
    }
}

impl Fanout for SocketIoFanout {
    fn message(&self, message: &Message) {
        for socket in self.room(chat_room(&message.conversation_id)) {
            emit_to(&socket, "message:new", message);
        }
        let legacy = self.room(legacy_room(&message.conversation_id));
        if !legacy.is_empty() {
            let payload = json!({ "message": message, "from": legacy_from(message.sender.role) });
            for socket in legacy {
                emit_to(&socket, "new-message", &payload);
            }
        }
    }

    fn status(&self, status: &StatusUpdate) {
        for socket in self.room(chat_room(&status.conversation_id)) {
            emit_to(&socket, "message:status", status);
        }
    }

    fn typing(&self, typing: &pb::Typing) {
        let payload = json!({ "conversation_id": typing.conversation_id, "user_id": typing.user_id, "typing": typing.typing });
        self.each_except(chat_room(&typing.conversation_id), &typing.origin, "user_typing", &payload);
    }

    fn inbox(&self, event: &str, conversation: &Conversation) {
        let payload = json!({ "conversation": conversation });
        for socket in self.room(AGENTS_ROOM.into()) {
            emit_to(&socket, event, &payload);
        }
    }

    fn presence(&self, presence: &pb::Presence) {
        let payload = json!({
            "conversation_id": presence.conversation_id,
            "user_id": presence.user_id,
            "role": presence.role,
            "online": presence.online,
        });
        self.each_except(chat_room(&presence.conversation_id), &presence.origin, "presence", &payload);
    }
}
