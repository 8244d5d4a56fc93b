//! How many sockets this edge holds: the `switchboard_sockets` gauge per
//! transport, and the total an edge announces to the cluster
//! (`switchboard status`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry;

#[derive(Clone, Default)]
pub struct Sockets(Arc<AtomicU64>);

impl Sockets {
    pub fn opened(&self, transport: &'static str) {
        self.0.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::SOCKETS, "transport" => transport).increment(1.0);
    }

    pub fn closed(&self, transport: &'static str) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::SOCKETS, "transport" => transport).decrement(1.0);
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
