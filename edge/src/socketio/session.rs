//! How a Socket.IO handler answers its event, and the session it belongs to.

use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromMessageParts, Value as PacketValue};
use socketioxide::socket::Socket;

use crate::chat::Responder;
use crate::error::ApiError;
use crate::session::Session;

pub fn session_of(socket: &SocketRef) -> Option<Arc<Session>> {
    socket.extensions.get::<Arc<Session>>()
}

/// Answers an event: through its ack when the client asked for one
/// (`{ok:true,...}` / `{ok:false,error}`), otherwise failures as an `error`
/// event, so nothing fails silently.
pub struct Reply {
    ack: AckSender,
    socket: SocketRef,
    wants_ack: bool,
}

impl FromMessageParts<LocalAdapter> for Reply {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut PacketValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let ack = AckSender::from_message_parts(s, v, ack_id).unwrap_or_else(|_| unreachable!("infallible"));
        let socket =
            SocketRef::from_message_parts(s, v, ack_id).unwrap_or_else(|_| unreachable!("infallible"));
        Ok(Self { ack, socket, wants_ack: ack_id.is_some() })
    }
}

impl Responder for Reply {
    fn send(self, outcome: Result<Value, ApiError>) {
        match outcome {
            Ok(fields) => {
                let mut answer = json!({ "ok": true });
                if let (Some(answer), Value::Object(fields)) = (answer.as_object_mut(), fields) {
                    answer.extend(fields);
                }
                let _ = self.ack.send(&answer);
            }
            Err(error) if self.wants_ack => {
                let _ = self.ack.send(&json!({ "ok": false, "error": error.body() }));
            }
            Err(error) => {
                let _ = self.socket.emit("error", &json!({ "message": error.message, "code": error.code }));
            }
        }
    }
}
