//! Who handles a conversation, and in what state: assignment, status, read
//! cursors and the agents seen. The rules are here, once; each store supplies
//! the statements ([`Handling`]).

use std::future::Future;

use switchboard_proto::model::{Assignee, Conversation, ConversationStatus, Timestamp};

use crate::{Result, StoreError};

/// What `assign_conversation` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Assignment {
    /// The agent takes it, unless another agent holds it.
    Claim(Assignee),
    /// This agent (or nobody) gets it, whoever held it.
    Set(Option<Assignee>),
}

/// A conversation after a change of who handles it or of its status.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    /// As it is now, with its last message.
    pub conversation: Conversation,
    pub previous_status: ConversationStatus,
    pub previous_assignee: Option<Assignee>,
    /// False when nothing changed (claiming what one holds, closing what is closed).
    pub changed: bool,
}

/// Which conversations a listing keeps by their assignee.
#[derive(Clone, Debug, PartialEq)]
pub enum AssigneeFilter {
    Unassigned,
    Agent(String),
}

/// An agent as the store knows it; availability is live, on the bus.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub name: String,
    /// Conversations assigned to it that are not closed.
    pub open_assigned: u64,
    pub last_assigned_at: Timestamp,
}

/// The handling state `assignment` leads to from `current`; `None` when it
/// changes nothing.
pub(crate) fn assigned(
    current: &Conversation,
    assignment: &Assignment,
) -> Result<Option<(ConversationStatus, Option<Assignee>)>> {
    let assignee = match assignment {
        Assignment::Claim(agent) => match &current.assignee {
            Some(holder) if holder.id == agent.id => return Ok(None),
            Some(holder) => {
                return Err(StoreError::Conflict(format!(
                    "conversation {} is assigned to {}",
                    current.id, holder.name
                )));
            }
            None => Some(agent.clone()),
        },
        Assignment::Set(assignee) => assignee.clone(),
    };
    // Someone now handles a conversation that waited for a human.
    let status = match (&assignee, current.status) {
        (Some(_), ConversationStatus::Pending) => ConversationStatus::Open,
        (_, status) => status,
    };
    if status == current.status
        && assignee.as_ref().map(|a| &a.id) == current.assignee.as_ref().map(|a| &a.id)
    {
        return Ok(None);
    }
    Ok(Some((status, assignee)))
}

/// The handling state a status change leads to; `None` when it is the status already.
pub(crate) fn status_set(
    current: &Conversation,
    status: ConversationStatus,
) -> Option<(ConversationStatus, Option<Assignee>)> {
    (current.status != status).then(|| (status, current.assignee.clone()))
}

/// The statements a change of handling needs, inside the store's write transaction.
pub(crate) trait Handling: Send {
    /// The conversation, held until the transaction ends where the database
    /// does not already serialise writers.
    fn locked(&mut self, id: &str) -> impl Future<Output = Result<Option<Conversation>>> + Send;
    /// Writes status and assignee (status changes stamp `status_changed_at`);
    /// `newly_assigned`, when it takes the conversation over, has its agent
    /// row record the time, for round-robin's ties.
    fn write_handling(
        &mut self,
        id: &str,
        status: ConversationStatus,
        assignee: Option<&Assignee>,
        newly_assigned: Option<&Assignee>,
        at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Applies `decide` to the conversation as it is, under its lock.
pub(crate) async fn handle(
    db: &mut impl Handling,
    id: &str,
    at: Timestamp,
    decide: impl FnOnce(&Conversation) -> Result<Option<(ConversationStatus, Option<Assignee>)>>,
) -> Result<Handled> {
    let current = db.locked(id).await?.ok_or_else(|| StoreError::ConversationNotFound(id.to_owned()))?;
    let (previous_status, previous_assignee) = (current.status, current.assignee.clone());
    let Some((status, assignee)) = decide(&current)? else {
        return Ok(Handled { conversation: current, previous_status, previous_assignee, changed: false });
    };
    let newly_assigned =
        assignee.as_ref().filter(|a| previous_assignee.as_ref().is_none_or(|p| p.id != a.id));
    db.write_handling(id, status, assignee.as_ref(), newly_assigned, at).await?;
    let conversation = Conversation { status, assignee, updated_at: at, ..current };
    Ok(Handled { conversation, previous_status, previous_assignee, changed: true })
}

/// The statements both stores run the same (SQLite and PostgreSQL read these
/// alike), with their values bound in the order they number them.
pub(crate) mod sql {
    /// $1 id, $2 status, $3 assignee id, $4 assignee name, $5 at.
    pub const WRITE_HANDLING: &str = "UPDATE conversations SET status_changed_at = CASE WHEN status = $2 \
         THEN status_changed_at ELSE $5 END, status = $2, assignee = $3, assignee_name = $4, updated_at = $5 \
         WHERE id = $1";
    /// $1 id, $2 name, $3 at.
    pub const ASSIGNED: &str = "INSERT INTO agents (id, name, last_seen_at, last_assigned_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO UPDATE SET last_assigned_at = excluded.last_assigned_at";
    /// $1 id, $2 name, $3 at.
    pub const SEEN: &str = "INSERT INTO agents (id, name, last_seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, last_seen_at = excluded.last_seen_at";
    pub const AGENTS: &str = "SELECT a.id, a.name, a.last_assigned_at, (SELECT count(*) FROM conversations c \
         WHERE c.assignee = a.id AND c.status <> 'closed') AS open_assigned FROM agents a ORDER BY a.id";
}

/// The assignee columns of a conversation row.
pub(crate) fn assignee_from(id: Option<String>, name: Option<String>) -> Option<Assignee> {
    id.map(|id| Assignee { name: name.unwrap_or_else(|| id.clone()), id })
}
