//! What a client sees, defined once for every transport: event names, their
//! payloads, the greeting and the answer to an operation. Socket.IO emits
//! these values as they are; the native protocol wraps them in its frames.

use serde::Serialize;
use serde_json::{Value, json};
use switchboard_proto::model::{Conversation, Message, Role, StatusUpdate};
use switchboard_proto::pb;

use crate::error::ApiError;

/// Server-to-client event names.
pub mod event {
    pub const CONNECTED: &str = "connected";
    pub const JOINED: &str = "joined_conversation";
    pub const LEFT: &str = "left_conversation";
    pub const MESSAGE_NEW: &str = "message:new";
    pub const MESSAGE_STATUS: &str = "message:status";
    pub const USER_TYPING: &str = "user_typing";
    pub const PRESENCE: &str = "presence";
    pub const CONVERSATION_NEW: &str = "conversation:new";
    pub const CONVERSATION_UPDATED: &str = "conversation:updated";
    pub const PONG: &str = "pong";
    pub const ERROR: &str = "error";
    /// The room-string style's message event (`join "chat:<id>"`).
    pub const LEGACY_MESSAGE: &str = "new-message";
    /// A bot's reply to a WhatsApp user's widget.
    pub const BOT_RESPONSE: &str = "bot-response";
}

/// `connected`, the first thing a connection is told.
pub fn greeting(user_id: &str) -> Value {
    json!({ "message": "connected", "user_id": user_id })
}

pub fn joined(conversation_id: &str) -> Value {
    json!({ "conversation_id": conversation_id, "message": "joined" })
}

pub fn conversation_ref(conversation_id: &str) -> Value {
    json!({ "conversation_id": conversation_id })
}

pub fn message(message: &Message) -> Value {
    serde_json::to_value(message).unwrap_or_default()
}

pub fn status(status: &StatusUpdate) -> Value {
    serde_json::to_value(status).unwrap_or_default()
}

pub fn typing(typing: &pb::Typing) -> Value {
    json!({ "conversation_id": typing.conversation_id, "user_id": typing.user_id, "typing": typing.typing })
}

pub fn presence(presence: &pb::Presence) -> Value {
    json!({
        "conversation_id": presence.conversation_id,
        "user_id": presence.user_id,
        "role": presence.role,
        "online": presence.online,
    })
}

/// `conversation:new` and `conversation:updated`.
pub fn conversation(conversation: &Conversation) -> Value {
    json!({ "conversation": conversation })
}

/// `new-message` `{message, from}`, where `from` is who wrote it as a
/// room-string widget understands it. Borrowed, not built: most messages go
/// to no room-string socket at all.
#[derive(Serialize)]
pub struct LegacyMessage<'a> {
    message: &'a Message,
    from: &'static str,
}

pub fn legacy_message(message: &Message) -> LegacyMessage<'_> {
    let from = match message.sender.role {
        Role::Customer => "customer",
        Role::Bot => "bot",
        Role::Agent | Role::Service => "agent",
    };
    LegacyMessage { message, from }
}

/// The answer to an operation: `{ok:true, ...fields}` or `{ok:false, error}`.
pub fn answer(outcome: &Result<Value, ApiError>) -> Value {
    match outcome {
        Ok(fields) => {
            let mut answer = json!({ "ok": true });
            if let (Some(answer), Value::Object(fields)) = (answer.as_object_mut(), fields) {
                answer.extend(fields.clone());
            }
            answer
        }
        Err(error) => json!({ "ok": false, "error": error.body() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_merges_its_fields_into_ok() {
        assert_eq!(answer(&Ok(json!({ "offset": 3 }))), json!({ "ok": true, "offset": 3 }));
        let refused = answer(&Err(ApiError::forbidden("no")));
        assert_eq!(refused, json!({ "ok": false, "error": { "code": "forbidden", "message": "no" } }));
    }
}
