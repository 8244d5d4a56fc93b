//! Who handles a conversation and in what state (contract §11), checked the
//! same way whoever asks, over a socket or HTTP: assignment, status, the
//! agents and their availability. Every change is a command to the workers.

use serde::Deserialize;
use switchboard_bus::roster::agents_connected;
use switchboard_proto::model::{Agent, Assignee, Availability, Conversation, ConversationStatus, Role};
use utoipa::ToSchema;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::rules::check_id;
use crate::state::EdgeState;

/// What `assign_conversation` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The calling agent takes it, unless another agent holds it.
    Claim,
    /// This agent, or nobody, gets it, whoever held it.
    Transfer(Option<Assignee>),
}

/// An agent named as the new assignee; its name defaults to its id.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct AssigneeInput {
    #[schema(schema_with = crate::rules::id_schema)]
    id: String,
    name: Option<String>,
}

/// `assign_conversation`'s body: no `assignee` claims it for the calling
/// agent, `null` unassigns it, an agent transfers it.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AssignRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AssigneeInput>, nullable)]
    assignee: Option<Option<AssigneeInput>>,
}

/// Tells a `null` (`Some(None)`) from an absent field (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<AssigneeInput>>, D::Error> {
    Option::deserialize(d).map(Some)
}

impl AssignRequest {
    pub fn target(self) -> Result<Target, ApiError> {
        match self.assignee {
            None => Ok(Target::Claim),
            Some(None) => Ok(Target::Transfer(None)),
            Some(Some(input)) => Ok(Target::Transfer(Some(input.into_assignee()?))),
        }
    }
}

impl AssigneeInput {
    fn into_assignee(self) -> Result<Assignee, ApiError> {
        check_id("assignee.id", &self.id)?;
        let name = self.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| self.id.clone());
        Ok(Assignee { id: self.id, name })
    }
}

/// Agents and services work the inbox; customers and bots do not.
fn require_handler(who: &Identity, what: &str) -> Result<(), ApiError> {
    match who.role {
        Role::Agent | Role::Service => Ok(()),
        _ => Err(ApiError::forbidden(format!("only agents and services may {what}"))),
    }
}

pub fn require_agent(who: &Identity, what: &str) -> Result<(), ApiError> {
    match who.role {
        Role::Agent => Ok(()),
        _ => Err(ApiError::forbidden(format!("only agents may {what}"))),
    }
}

pub async fn assign(
    state: &EdgeState,
    who: &Identity,
    conversation_id: &str,
    target: Target,
) -> Result<Conversation, ApiError> {
    require_handler(who, "assign conversations")?;
    state.conversation_for(who, conversation_id).await?;
    let by = who.sender();
    match target {
        Target::Claim if who.role != Role::Agent => {
            Err(ApiError::forbidden("only an agent claims a conversation: name an assignee"))
        }
        Target::Claim => state.commands.assign(conversation_id, &by, true, None).await,
        Target::Transfer(assignee) => {
            state.commands.assign(conversation_id, &by, false, assignee.as_ref()).await
        }
    }
}

/// `close_conversation` (closed), `reopen_conversation` (open) and
/// `request_human` (pending: a customer in its own conversation, a bot or a service).
pub async fn set_status(
    state: &EdgeState,
    who: &Identity,
    conversation_id: &str,
    status: ConversationStatus,
) -> Result<Conversation, ApiError> {
    match status {
        ConversationStatus::Pending if who.role == Role::Agent => {
            return Err(ApiError::forbidden("an agent assigns a conversation rather than ask for a human"));
        }
        ConversationStatus::Pending => {}
        ConversationStatus::Open => require_handler(who, "reopen conversations")?,
        ConversationStatus::Closed => require_handler(who, "close conversations")?,
    }
    state.conversation_for(who, conversation_id).await?;
    let conversation = state.commands.set_conversation_status(conversation_id, &who.sender(), status).await?;
    Ok(if who.is_customer() { conversation.for_customer() } else { conversation })
}

/// Parses `set_availability`'s status: an agent says `online` or `away`;
/// `offline` is what its leaving says.
pub fn availability(status: &str) -> Result<Availability, ApiError> {
    match Availability::parse(status) {
        Some(a @ (Availability::Online | Availability::Away)) => Ok(a),
        _ => Err(ApiError::bad_request(format!("status is \"online\" or \"away\", not {status:?}"))),
    }
}

/// Every agent seen, with its availability anywhere in the cluster.
pub async fn agents(state: &EdgeState) -> Result<Vec<Agent>, ApiError> {
    let wait = state.config.limits.command_timeout;
    let (records, connected) = tokio::time::timeout(wait, async {
        let connected = agents_connected(state.bus.leases().as_ref()).await;
        (state.store.agents().await, connected)
    })
    .await
    .map_err(|_| ApiError::unavailable("the database or the bus did not answer in time"))?;
    let (records, mut connected) = (records?, connected?);
    let mut agents: Vec<Agent> = records
        .into_iter()
        .map(|record| {
            let live = connected.remove(&record.id);
            Agent {
                availability: live.as_ref().map_or(Availability::Offline, |l| l.availability),
                name: live.map_or(record.name, |l| l.name),
                id: record.id,
                open_assigned: record.open_assigned,
            }
        })
        .collect();
    // Connected before the workers recorded them.
    agents.extend(connected.into_values().map(|live| Agent {
        id: live.id,
        name: live.name,
        availability: live.availability,
        open_assigned: 0,
    }));
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(agents)
}

/// An agent's own entry after it said how available it is.
pub async fn agent(state: &EdgeState, who: &Identity, availability: Availability) -> Result<Agent, ApiError> {
    let open_assigned =
        state.store.agents().await?.into_iter().find(|a| a.id == who.user_id).map_or(0, |a| a.open_assigned);
    Ok(Agent { id: who.user_id.clone(), name: who.name.clone(), availability, open_assigned })
}
