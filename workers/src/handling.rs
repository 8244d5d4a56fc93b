//! Who handles a conversation and in what state: the persist worker's
//! assignment and status commands, the agents seen, and round-robin
//! assignment. Each change is told at once on the inbox subject with what it
//! was before, so edges tell the conversation's sockets and move it between
//! agents' views.

use switchboard_bus::events::{ConversationChange, Event, Previous};
use switchboard_bus::roster::agents_connected;
use switchboard_proto::model::{
    Assignee, Availability, Conversation, ConversationStatus, Malformed, Role, Sender, Timestamp,
};
use switchboard_proto::pb::{self, command_result};
use switchboard_store::{Assignment, Handled, StoreError};

use crate::persist::{Failure, Persist, result};

fn answer(changed: bool, conversation: &Conversation) -> pb::CommandResult {
    result(changed, command_result::Outcome::Conversation(conversation.into()))
}

impl Persist {
    pub(crate) async fn assign(&self, assign: pb::Assign) -> Result<pb::CommandResult, Failure> {
        let by: Sender = assign.by.ok_or(Malformed("by"))?.try_into()?;
        let assignment = if assign.claim {
            if by.role != Role::Agent {
                return Err(Failure::Refused("bad_request", "only an agent claims: name an assignee".into()));
            }
            Assignment::Claim(Assignee { id: by.id, name: by.name })
        } else {
            Assignment::Set(assign.assignee.map(Into::into))
        };
        let at = Timestamp(assign.at_ms);
        let handled = match self.store.assign(&assign.conversation_id, assignment, at).await {
            Err(StoreError::Conflict(why)) => return Err(Failure::Refused("conflict", why)),
            handled => handled?,
        };
        let (conversation, changed) = self.tell(handled).await?;
        Ok(answer(changed, &conversation))
    }

    pub(crate) async fn set_conversation_status(
        &self,
        set: pb::SetConversationStatus,
    ) -> Result<pb::CommandResult, Failure> {
        let status = ConversationStatus::parse(&set.status).ok_or(Malformed("status"))?;
        let handled =
            self.store.set_conversation_status(&set.conversation_id, status, Timestamp(set.at_ms)).await?;
        let (mut conversation, changed) = self.tell(handled).await?;
        if changed && status == ConversationStatus::Pending {
            conversation = self.auto_assign(conversation).await?;
        }
        Ok(answer(changed, &conversation))
    }

    pub(crate) async fn agent_seen(&self, seen: pb::AgentSeen) -> Result<pb::CommandResult, Failure> {
        self.store.agent_seen(&seen.id, &seen.name, Timestamp(seen.at_ms)).await?;
        Ok(result(true, command_result::Outcome::Delivered(0)))
    }

    /// Publishes a change (a redelivered command that changes nothing again
    /// publishes nothing); answers the conversation as it now is, and whether it changed.
    async fn tell(&self, handled: Handled) -> Result<(Conversation, bool), Failure> {
        let Handled { conversation, previous_status, previous_assignee, changed } = handled;
        if changed {
            let previous = Previous { status: previous_status, assignee: previous_assignee };
            let change = ConversationChange { conversation: conversation.clone(), previous: Some(previous) };
            self.announce(Event::ConversationUpdated(change)).await?;
        }
        Ok((conversation, changed))
    }

    /// With round-robin on, gives an unassigned conversation to the online
    /// agent with the fewest open conversations (ties: the one assigned
    /// longest ago, then by id); answers the conversation as it now is.
    /// Nobody online leaves it unassigned, for the first agent to claim.
    pub(crate) async fn auto_assign(&self, conversation: Conversation) -> Result<Conversation, Failure> {
        if !self.policy.auto_assign || conversation.assignee.is_some() {
            return Ok(conversation);
        }
        let online = match agents_connected(self.bus.leases().as_ref()).await {
            Ok(agents) => agents,
            Err(e) => {
                tracing::warn!(error = %e, "agents not read: the conversation stays unassigned");
                return Ok(conversation);
            }
        };
        let records = self.store.agents().await?;
        let chosen = online
            .values()
            .filter(|a| a.availability == Availability::Online)
            .map(|a| {
                let record = records.iter().find(|r| r.id == a.id);
                let load = record.map_or((0, Timestamp(0)), |r| (r.open_assigned, r.last_assigned_at));
                (load, a)
            })
            .min_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.id.cmp(&y.id)))
            .map(|(_, a)| Assignee { id: a.id.clone(), name: a.name.clone() });
        let Some(agent) = chosen else { return Ok(conversation) };
        let at = Timestamp::now();
        // A claim: an agent who took it meanwhile keeps it.
        match self.store.assign(&conversation.id, Assignment::Claim(agent), at).await {
            Ok(handled) => Ok(self.tell(handled).await?.0),
            Err(StoreError::Conflict(_)) => Ok(conversation),
            Err(e) => Err(e.into()),
        }
    }
}
