//! How many sockets this edge holds (the `switchboard_sockets` gauge per
//! transport, and the total an edge announces to the cluster for
//! `switchboard status`), and each socket's refusal or end: counted by
//! reason, and one log line per socket, never one per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry;

#[derive(Clone, Default)]
pub struct Sockets(Arc<AtomicU64>);

/// Why a socket ended, as the `reason` label and log field say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or its namespace.
    ClientClosed,
    /// No pong, or a write that waited too long for the client.
    TimedOut,
    /// Its queue filled: disconnected, it recovers by offset.
    StoppedReading,
    /// The node is draining.
    ServerShutdown,
    /// The server ended it for another reason.
    ServerDisconnect,
    /// Frames the protocol does not allow (too big, broken, not UTF-8).
    ProtocolError,
    /// The connection broke under it.
    TransportError,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::ClientClosed => "client_closed",
            Closed::TimedOut => "timed_out",
            Closed::StoppedReading => "stopped_reading",
            Closed::ServerShutdown => "server_shutdown",
            Closed::ServerDisconnect => "server_disconnect",
            Closed::ProtocolError => "protocol_error",
            Closed::TransportError => "transport_error",
        }
    }
}

impl Sockets {
    pub fn opened(&self, transport: &'static str) {
        self.0.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::SOCKETS, "transport" => transport).increment(1.0);
    }

    pub fn closed(&self, transport: &'static str, user: &str, reason: Closed) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::SOCKETS, "transport" => transport).decrement(1.0);
        metrics::counter!(telemetry::CONNECTIONS_CLOSED, "transport" => transport, "reason" => reason.as_str())
            .increment(1);
        tracing::info!(transport, user, reason = reason.as_str(), "connection closed");
    }

    /// A socket turned away at connect; `reason` is the error code it was told.
    pub fn refused(&self, transport: &'static str, reason: &'static str) {
        metrics::counter!(telemetry::CONNECTIONS_REFUSED, "transport" => transport, "reason" => reason)
            .increment(1);
        tracing::info!(transport, reason, "connection refused");
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
