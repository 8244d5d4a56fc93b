//! What the Socket.IO side of an edge owns: socketioxide's handle, and the
//! relays its sockets share (bot replies per phone, sync notices per tenant).

use std::fmt::Display;
use std::sync::Arc;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

use crate::relay::Relays;
use crate::state::EdgeState;

pub struct Hub {
    pub edge: Arc<EdgeState>,
    pub io: SocketIo,
    pub phones: Relays,
    pub tenants: Relays,
}

impl Hub {
    /// Binds a namespace: `admit` runs before the client is told it is
    /// connected (its error is the client's `connect_error` message), then
    /// `connected`; both are given the hub and the socket.
    pub fn namespace<Admit, Admitted, Refusal, Connect, Connected>(
        self: &Arc<Self>,
        path: &'static str,
        admit: Admit,
        connected: Connect,
    ) where
        Admit: Fn(Arc<Hub>, SocketRef, Option<Value>) -> Admitted + Clone + Send + Sync + 'static,
        Admitted: Future<Output = Result<(), Refusal>> + Send + 'static,
        Refusal: Display + Send + 'static,
        Connect: Fn(Arc<Hub>, SocketRef) -> Connected + Clone + Send + Sync + 'static,
        Connected: Future<Output = ()> + Send + 'static,
    {
        let hub = self.clone();
        let middleware =
            move |socket: SocketRef, TryData(auth): TryData<Value>| admit(hub.clone(), socket, auth.ok());
        let hub = self.clone();
        let handler = move |socket: SocketRef| connected(hub.clone(), socket);
        self.io.ns(path, handler.with(middleware));
    }
}
