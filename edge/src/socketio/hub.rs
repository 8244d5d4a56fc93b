//! What the Socket.IO side of an edge owns: socketioxide's handle, and the
//! relays its sockets share (bot replies per phone, sync notices per tenant).

use std::fmt::Display;
use std::sync::Arc;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use super::fanout::is_evicted;
use crate::error::ErrorCode;
use crate::relay::Relays;
use crate::sockets::Closed;
use crate::state::EdgeState;

pub struct Hub {
    pub edge: Arc<EdgeState>,
    pub io: SocketIo,
    pub phones: Relays,
    pub tenants: Relays,
}

/// Why a namespace turned a socket away: its `connect_error` message, and
/// the error code it is counted under.
pub trait Refused: Display {
    fn code(&self) -> ErrorCode;
}

impl Hub {
    /// Binds a namespace: `admit` runs before the client is told it is
    /// connected (its error is the client's `connect_error` message, and is
    /// counted for `transport`), then `connected`; both are given the hub and
    /// the socket.
    pub fn namespace<Admit, Admitted, Refusal, Connect, Connected>(
        self: &Arc<Self>,
        path: &'static str,
        transport: &'static str,
        admit: Admit,
        connected: Connect,
    ) where
        Admit: Fn(Arc<Hub>, SocketRef, Option<Value>) -> Admitted + Clone + Send + Sync + 'static,
        Admitted: Future<Output = Result<(), Refusal>> + Send + 'static,
        Refusal: Refused + Send + 'static,
        Connect: Fn(Arc<Hub>, SocketRef) -> Connected + Clone + Send + Sync + 'static,
        Connected: Future<Output = ()> + Send + 'static,
    {
        let hub = self.clone();
        let middleware = move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let (hub, admit) = (hub.clone(), admit.clone());
            async move {
                let admitted = admit(hub.clone(), socket, auth.ok()).await;
                if let Err(refusal) = &admitted {
                    hub.edge.sockets.refused(transport, refusal.code().as_str());
                }
                admitted
            }
        };
        let hub = self.clone();
        let handler = move |socket: SocketRef| connected(hub.clone(), socket);
        self.io.ns(path, handler.with(middleware));
    }
}

/// How a Socket.IO socket's end is counted: an evicted one stopped reading,
/// whatever ended it after (its disconnect, or its heartbeat).
pub fn closed(socket: &SocketRef, reason: DisconnectReason) -> Closed {
    match reason {
        _ if is_evicted(socket) => Closed::StoppedReading,
        DisconnectReason::TransportClose | DisconnectReason::ClientNSDisconnect => Closed::ClientClosed,
        DisconnectReason::HeartbeatTimeout => Closed::TimedOut,
        DisconnectReason::MultipleHttpPollingError | DisconnectReason::PacketParsingError => {
            Closed::ProtocolError
        }
        DisconnectReason::TransportError => Closed::TransportError,
        DisconnectReason::ClosingServer => Closed::ServerShutdown,
        DisconnectReason::ServerNSDisconnect => Closed::ServerDisconnect,
    }
}
