//! The kinds of worker, one table for `switchboard worker <kind>` and for
//! `switchboard dev`, which runs them all in one process.

use std::sync::Arc;
use std::time::Duration;

use switchboard_bus::{Bus, Partitions};
use switchboard_store::Store;

use crate::persist::{Persist, Policy};
use crate::sync::SyncWorker;
use crate::whatsapp::outbound::Forward;
use crate::whatsapp::{Whatsapp, WhatsappConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Commands into the store: messages, conversations, statuses, bot replies.
    Persist,
    /// Sync changes into the tenants' outboxes, and their notifications.
    Sync,
    /// The WhatsApp Cloud API: webhook bodies into conversations, agent messages out.
    Whatsapp,
}

/// What a worker is given.
#[derive(Clone)]
pub struct Deps {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    /// This process's name on the bus.
    pub node: String,
    /// How chat and sync commands are partitioned (the same in every process).
    pub partitions: Partitions,
    /// How long a bot reply waits for its user when it does not say.
    pub bot_reply_ttl: Duration,
    /// Round-robin assignment of new and pending conversations.
    pub auto_assign: bool,
    pub whatsapp: WhatsappConfig,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Persist, Kind::Sync, Kind::Whatsapp];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Persist => "persist",
            Kind::Sync => "sync",
            Kind::Whatsapp => "whatsapp",
        }
    }

    /// Runs until the bus closes its consumers or `stop` completes (work in
    /// hand is finished, nothing more taken).
    pub async fn run(self, deps: Deps, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Deps { bus, store, node, partitions, bot_reply_ttl, auto_assign, whatsapp } = deps;
        match self {
            Kind::Persist => {
                // WhatsApp's sends are queued before a message's command is acknowledged.
                let forward = Arc::new(Forward { bus: bus.clone() });
                let policy = Policy { bot_reply_ttl, auto_assign };
                let persist = Persist::new(bus, store, &node, partitions, policy, vec![forward]).await?;
                persist.run(stop).await?
            }
            Kind::Sync => SyncWorker::new(bus, store, &node, partitions).run(stop).await?,
            Kind::Whatsapp => Whatsapp::new(bus, store, whatsapp).run(stop).await?,
        }
        Ok(())
    }
}
