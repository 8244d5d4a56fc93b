//! Socket.IO, through socketioxide.
//!
//! - [`chat`]: namespace `/`, the chat operations; [`session`]: how events are
//!   answered.
//! - [`fanout`]: conversation events onto sockets; rooms; slow sockets.
//! - [`relays`]: bot replies per phone number. [`sync`]: namespace `/sync`,
//!   sync notifications for point-of-sale clients. Both are counted relays
//!   ([`crate::relay`]), one bus subscription per phone or tenant.
//! - [`hub`]: what the Socket.IO side owns, built by [`start`].

pub mod chat;
pub mod fanout;
pub mod hub;
pub mod relays;
pub mod session;
pub mod sync;

use std::sync::Arc;

use socketioxide::SocketIo;

pub use self::chat::{detach_handshake_head, layer};
use self::hub::Hub;
use crate::state::EdgeState;

/// Attaches the namespaces' handlers to `io` (made by [`layer`]) once the
/// edge state exists.
pub fn start(edge: Arc<EdgeState>, io: SocketIo) -> Arc<Hub> {
    let phones = relays::phone_relays(edge.bus.clone(), io.clone());
    let tenants = sync::tenant_relays(edge.bus.clone(), io.clone());
    let hub = Arc::new(Hub { edge, io, phones, tenants });
    chat::register(hub.clone());
    sync::register(hub.clone());
    hub
}
