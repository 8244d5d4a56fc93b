//! What every handler of an edge node shares, and the access rules that both
//! the socket and the HTTP side apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_bus::Bus;
use switchboard_proto::model::{Channel, Conversation, Customer};
use switchboard_store::Store;

use crate::auth::{Identity, Verifier};
use crate::commands::Commands;
use crate::config::EdgeConfig;
use crate::error::ApiError;
use crate::feed::Feeds;
use crate::socketio::relays::PhoneRelays;
use crate::socketio::sync::SyncRelays;

pub struct EdgeState {
    pub config: EdgeConfig,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub commands: Commands,
    pub feeds: Feeds,
    pub phones: PhoneRelays,
    /// Sync notifications, per tenant (namespace `/sync`).
    pub sync: SyncRelays,
    pub verifier: Verifier,
    pub io: socketioxide::SocketIo,
    pub metrics: PrometheusHandle,
    draining: AtomicBool,
}

/// The longest conversation id or client_msg_id accepted.
const MAX_ID_LEN: usize = 128;

impl EdgeState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: EdgeConfig,
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        commands: Commands,
        feeds: Feeds,
        phones: PhoneRelays,
        io: socketioxide::SocketIo,
        metrics: PrometheusHandle,
    ) -> Self {
        let verifier = Verifier::hs256(&config.jwt_secret);
        let sync = SyncRelays::new(bus.clone(), io.clone());
        Self {
            config,
            sync,
            bus,
            store,
            commands,
            feeds,
            phones,
            verifier,
            io,
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    /// The conversation, when this caller may use it. A customer's listed
    /// conversation that does not exist yet is created for it.
    pub async fn conversation_for(&self, who: &Identity, id: &str) -> Result<Conversation, ApiError> {
        check_id("conversation_id", id)?;
        match self.store.conversation(id).await? {
            Some(conversation) => {
                who.check_access(&conversation)?;
                Ok(conversation)
            }
            None if who.is_customer() && who.lists(id) => {
                let customer =
                    Customer { id: who.user_id.clone(), name: who.name.clone(), phone: who.phone.clone() };
                let (conversation, _) =
                    self.commands.create_conversation(id.to_owned(), Channel::Web, customer).await?;
                // Another customer may have created it first.
                who.check_access(&conversation)?;
                Ok(conversation)
            }
            None if who.is_customer() => {
                Err(ApiError::forbidden(format!("not allowed in conversation {id}")))
            }
            None => Err(ApiError::not_found(format!("conversation {id} not found"))),
        }
    }

    /// Text a client wants stored, within the limits.
    pub fn check_text(&self, text: &str) -> Result<(), ApiError> {
        if text.trim().is_empty() {
            return Err(ApiError::bad_request("text must not be empty"));
        }
        let max = self.config.limits.max_text_len;
        if text.chars().count() > max {
            return Err(ApiError::too_large(format!("text is longer than {max} characters")));
        }
        Ok(())
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Ids become bus subject tokens and database keys: keep them short and printable.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{field} must be 1 to {MAX_ID_LEN} printable characters")));
    }
    Ok(())
}
