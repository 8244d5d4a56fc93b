//! What the Socket.IO side of an edge owns: socketioxide's handle, and the
//! relays its sockets share (bot replies per phone, sync notices per tenant).

use std::sync::Arc;

use socketioxide::SocketIo;

use crate::relay::Relays;
use crate::state::EdgeState;

pub struct Hub {
    pub edge: Arc<EdgeState>,
    pub io: SocketIo,
    pub phones: Relays,
    pub tenants: Relays,
}
