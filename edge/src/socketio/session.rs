//! How a Socket.IO handler answers its event, and the session it belongs to.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromMessageParts, Value as PacketValue};
use socketioxide::socket::Socket;

use crate::chat::Responder;
use crate::error::ApiError;
use crate::session::Session;
use crate::wire::{self, event};

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
            Err(error) if !self.wants_ack => {
                let _ = self.socket.emit(event::ERROR, &error.event());
            }
            outcome => {
                let _ = self.ack.send(&wire::answer(&outcome));
            }
        }
    }
}
