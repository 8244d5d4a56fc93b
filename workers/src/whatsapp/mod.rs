//! `worker whatsapp`: the WhatsApp Cloud API.
//!
//! - [`inbound`]: signed webhook bodies from `sb.wa.in` become conversations,
//!   messages (source `whatsapp`) and forward-only statuses.
//! - [`outbound`]: messages for WhatsApp conversations, put on `sb.wa.out` by
//!   the persist worker's [`outbound::Forward`] hook, go out through the Graph
//!   API once each (the outbox), paced, with retries.
//! - [`graph`]: the Graph API client and how its errors are classified.

pub mod graph;
pub mod inbound;
pub mod outbound;

use std::sync::Arc;

use switchboard_bus::Bus;
use switchboard_bus::events::Event;
use switchboard_store::Store;

/// The durable consumers every whatsapp process shares.
pub const DURABLE_IN: &str = "whatsapp-in";
pub const DURABLE_OUT: &str = "whatsapp-out";

#[derive(Clone, Debug)]
pub struct WhatsappConfig {
    /// Bearer token for the Graph API; without it every send fails at once.
    pub access_token: Option<String>,
    /// The business number messages are sent from.
    pub phone_number_id: Option<String>,
    /// e.g. `https://graph.facebook.com/v21.0`.
    pub graph_base: String,
    /// Sends per second per phone number (also the burst).
    pub rate: u32,
}

impl Default for WhatsappConfig {
    fn default() -> Self {
        Self {
            access_token: None,
            phone_number_id: None,
            graph_base: "https://graph.facebook.com/v21.0".into(),
            rate: 80,
        }
    }
}

/// Both halves, in one process.
pub struct Whatsapp {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    config: WhatsappConfig,
}

impl Whatsapp {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>, config: WhatsappConfig) -> Self {
        Self { bus, store, config }
    }

    /// Consumes both streams until the bus closes them or `stop` completes
    /// (work in hand is finished, nothing more taken).
    pub async fn run(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let inbound = inbound::Inbound::new(self.bus.clone(), self.store.clone());
        let outbound = outbound::Outbound::new(self.bus.clone(), self.store.clone(), self.config.clone())?;
        let stop = futures_util::FutureExt::shared(Box::pin(stop));
        let (a, b) = tokio::join!(inbound.run(stop.clone()), outbound.run(stop));
        a?;
        b?;
        Ok(())
    }
}

async fn announce(bus: &dyn Bus, event: Event) -> switchboard_bus::Result<()> {
    event.publish(bus).await
}
