//! What every handler of an edge node shares, and the access rules that both
//! the socket and the HTTP side apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use switchboard_bus::Bus;
use switchboard_proto::model::{Channel, Conversation};
use switchboard_store::ReadStore;

use crate::agents::AgentsHere;
use crate::auth::{Identity, Verifier};
use crate::commands::Commands;
use crate::config::EdgeConfig;
use crate::error::ApiError;
use crate::feed::Feeds;
use crate::limits::PerClient;
use crate::rules::check_id;
use crate::sockets::Sockets;
use crate::telemetry::Scrape;
use crate::visitors::VisitorIds;

pub struct EdgeState {
    pub config: EdgeConfig,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn ReadStore>,
    pub commands: Commands,
    pub feeds: Feeds,
    pub verifier: Verifier,
    pub metrics: Scrape,
    pub sockets: Sockets,
    pub agents: AgentsHere,
    pub visitor_ids: VisitorIds,
    /// Widget session requests, counted per client address.
    pub widget_sessions: PerClient,
    draining: AtomicBool,
}

impl EdgeState {
    pub fn new(
        config: EdgeConfig,
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadStore>,
        commands: Commands,
        feeds: Feeds,
        metrics: Scrape,
    ) -> Self {
        let verifier = Verifier::hs256(&config.jwt_secret);
        let visitor_ids = VisitorIds::new(&config.jwt_secret);
        let widget_sessions = PerClient::per_minute(config.widget.session_rate);
        let sockets = Sockets::default();
        Self {
            config,
            bus,
            store,
            commands,
            feeds,
            verifier,
            metrics,
            sockets,
            agents: AgentsHere::default(),
            visitor_ids,
            widget_sessions,
            draining: AtomicBool::new(false),
        }
    }

    /// The conversation, when this caller may use it and it has started.
    pub async fn conversation_for(&self, who: &Identity, id: &str) -> Result<Conversation, ApiError> {
        self.access(who, id).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "conversation {id} has not started: it starts with the visitor's first message"
            ))
        })
    }

    /// The conversation, when this caller may use it (as a customer may see
    /// it, for a customer); `None` for a widget visitor's own that has not
    /// started. A customer's listed conversation that does not exist yet is
    /// created for it, except a widget visitor's, which waits for its first
    /// message.
    pub async fn access(&self, who: &Identity, id: &str) -> Result<Option<Conversation>, ApiError> {
        check_id("conversation_id", id)?;
        // Bounded like a command: during an outage the caller hears so in time.
        let wait = self.config.limits.command_timeout;
        let found = tokio::time::timeout(wait, self.store.conversation(id))
            .await
            .map_err(|_| ApiError::unavailable("the database did not answer in time"))??;
        match found {
            Some(conversation) if who.is_customer() => {
                who.check_access(&conversation)?;
                Ok(Some(conversation.for_customer()))
            }
            Some(conversation) => Ok(Some(conversation)),
            None if who.starts_on_first_message(id) => Ok(None),
            None if who.is_customer() && who.lists(id) => {
                let (conversation, _) =
                    self.commands.create_conversation(id.to_owned(), Channel::Web, who.customer()).await?;
                // Another customer may have created it first.
                who.check_access(&conversation)?;
                Ok(Some(conversation))
            }
            None if who.is_customer() => {
                Err(ApiError::forbidden(format!("not allowed in conversation {id}")))
            }
            None => Err(ApiError::not_found(format!("conversation {id} not found"))),
        }
    }

    /// An agent's socket connected: counted here, and remembered by the
    /// workers the first time this edge sees it.
    pub fn agent_connected(self: &std::sync::Arc<Self>, who: &Identity) {
        if self.agents.connect(who) {
            let (state, agent) = (self.clone(), who.sender());
            tokio::spawn(async move {
                if let Err(e) = state.commands.agent_seen(&agent).await {
                    tracing::warn!(error = %e, agent = %agent.id, "agent not recorded; listed while connected");
                }
            });
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
