//! The edge's side of the command stream: every write a client asks for
//! becomes a durable command, and the edge answers the client with what the
//! worker stored.

use prost::Message as _;
use switchboard_bus::events::encode;
use switchboard_bus::rpc::Caller;
use switchboard_bus::subjects::{Family, op};
use switchboard_bus::{Envelope, Partitions, headers};
use switchboard_proto::model::{
    Assignee, Channel, Conversation, ConversationStatus, Customer, DeliveryStatus, Message, Sender, Source,
    StatusUpdate, Timestamp,
};
use switchboard_proto::pb::{self, command, command_result};
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};
use crate::telemetry;

/// A message to be stored.
pub struct Draft {
    pub conversation_id: String,
    pub sender: Sender,
    pub text: String,
    pub client_msg_id: Option<String>,
    pub source: Source,
    /// Create the conversation for this customer if it is missing.
    pub create_for: Option<Customer>,
    /// A staff-only note.
    pub private: bool,
}

#[derive(Clone)]
pub struct Commands {
    caller: Caller,
    partitions: Partitions,
}

impl Commands {
    pub fn new(caller: Caller, partitions: Partitions) -> Self {
        Self { caller, partitions }
    }

    /// The subject of `op` for the commands keyed by `key` (a conversation,
    /// a phone, a tenant): every command of one key goes to one partition.
    fn subject(&self, family: Family, key: &str, op: &str) -> String {
        family.command(self.partitions.of(key), op)
    }

    /// Stores a message; `false` when it was already stored (a retry).
    pub async fn send_message(&self, draft: Draft) -> Result<(Message, bool), ApiError> {
        let id = Uuid::now_v7();
        let send = pb::SendMessage {
            message_id: id.to_string(),
            conversation_id: draft.conversation_id.clone(),
            sender: Some((&draft.sender).into()),
            text: draft.text,
            client_msg_id: draft.client_msg_id,
            source: draft.source.as_str().into(),
            created_at_ms: Timestamp::now().0,
            create_for: draft.create_for.as_ref().map(Into::into),
            private: draft.private,
        };
        let subject = self.subject(Family::Chat, &draft.conversation_id, op::SEND_MESSAGE);
        let envelope = Envelope::new(subject, encode(&command(command::Kind::SendMessage(send))))
            .header(headers::CONVERSATION, draft.conversation_id)
            .header(headers::MESSAGE, id.to_string());
        let result = self.call(envelope).await?;
        match result.outcome {
            Some(command_result::Outcome::Message(m)) => {
                Ok((m.try_into().map_err(malformed)?, result.created))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Creates a conversation, or returns the existing one (`false`).
    pub async fn create_conversation(
        &self,
        id: String,
        channel: Channel,
        customer: Customer,
    ) -> Result<(Conversation, bool), ApiError> {
        let create = pb::CreateConversation {
            id: id.clone(),
            channel: channel.as_str().into(),
            customer: Some((&customer).into()),
            at_ms: Timestamp::now().0,
        };
        let subject = self.subject(Family::Chat, &id, op::CREATE_CONVERSATION);
        let envelope = Envelope::new(subject, encode(&command(command::Kind::CreateConversation(create))))
            .header(headers::CONVERSATION, id);
        let result = self.call(envelope).await?;
        match result.outcome {
            Some(command_result::Outcome::Conversation(c)) => {
                Ok((c.try_into().map_err(malformed)?, result.created))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Moves a message's status forward; answers the status it now has.
    /// `reader`: who read it, whose read cursor moves to it.
    pub async fn set_status(
        &self,
        conversation_id: &str,
        message_id: Uuid,
        status: DeliveryStatus,
        reader: Option<&str>,
    ) -> Result<StatusUpdate, ApiError> {
        let set = pb::SetStatus {
            message_id: message_id.to_string(),
            status: status.as_str().into(),
            at_ms: Timestamp::now().0,
            reader: reader.map(str::to_owned),
        };
        let subject = self.subject(Family::Chat, conversation_id, op::SET_STATUS);
        let envelope = Envelope::new(subject, encode(&command(command::Kind::SetStatus(set))))
            .header(headers::CONVERSATION, conversation_id)
            .header(headers::MESSAGE, message_id.to_string());
        let result = self.call(envelope).await?;
        match result.outcome {
            Some(command_result::Outcome::Status(s)) => s.try_into().map_err(malformed),
            other => Err(unexpected(other)),
        }
    }

    /// Who handles a conversation: `claim` for `by` itself, else `assignee`
    /// (none: unassigned); answers the conversation as it now is.
    pub async fn assign(
        &self,
        conversation_id: &str,
        by: &Sender,
        claim: bool,
        assignee: Option<&Assignee>,
    ) -> Result<Conversation, ApiError> {
        let assign = pb::Assign {
            conversation_id: conversation_id.to_owned(),
            by: Some(by.into()),
            claim,
            assignee: assignee.map(Into::into),
            at_ms: Timestamp::now().0,
        };
        self.handling(conversation_id, op::ASSIGN, command::Kind::Assign(assign)).await
    }

    /// Closes, reopens or hands a conversation to a human (`pending`).
    pub async fn set_conversation_status(
        &self,
        conversation_id: &str,
        by: &Sender,
        status: ConversationStatus,
    ) -> Result<Conversation, ApiError> {
        let set = pb::SetConversationStatus {
            conversation_id: conversation_id.to_owned(),
            status: status.as_str().into(),
            by: Some(by.into()),
            at_ms: Timestamp::now().0,
        };
        self.handling(conversation_id, op::SET_CONVERSATION_STATUS, command::Kind::SetConversationStatus(set))
            .await
    }

    async fn handling(
        &self,
        conversation_id: &str,
        op: &str,
        kind: command::Kind,
    ) -> Result<Conversation, ApiError> {
        let subject = self.subject(Family::Chat, conversation_id, op);
        let envelope =
            Envelope::new(subject, encode(&command(kind))).header(headers::CONVERSATION, conversation_id);
        match self.call(envelope).await?.outcome {
            Some(command_result::Outcome::Conversation(c)) => c.try_into().map_err(malformed),
            other => Err(unexpected(other)),
        }
    }

    /// Has the workers remember an agent that connected.
    pub async fn agent_seen(&self, agent: &Sender) -> Result<(), ApiError> {
        let seen =
            pb::AgentSeen { id: agent.id.clone(), name: agent.name.clone(), at_ms: Timestamp::now().0 };
        let subject = self.subject(Family::Chat, &agent.id, op::AGENT_SEEN);
        let envelope = Envelope::new(subject, encode(&command(command::Kind::AgentSeen(seen))));
        self.call(envelope).await.map(drop)
    }

    /// Hands a bot reply over; answers how many sockets got it (0: queued).
    pub async fn bot_reply(&self, phone: String, text: String) -> Result<u32, ApiError> {
        let subject = self.subject(Family::Chat, &phone, op::BOT_REPLY);
        let reply = pb::BotReply {
            id: Uuid::now_v7().to_string(),
            phone,
            text,
            at_ms: Timestamp::now().0,
            expires_at_ms: 0,
        };
        let envelope = Envelope::new(subject, encode(&command(command::Kind::BotReply(reply))));
        match self.call(envelope).await?.outcome {
            Some(command_result::Outcome::Delivered(n)) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// The bot replies that waited for this phone's user, oldest first; the
    /// worker removes them from the queue.
    pub async fn take_bot_replies(&self, phone: &str) -> Result<Vec<pb::BotReply>, ApiError> {
        let take = pb::TakeBotReplies { phone: phone.to_owned(), at_ms: Timestamp::now().0 };
        let subject = self.subject(Family::Chat, phone, op::TAKE_BOT_REPLIES);
        let envelope = Envelope::new(subject, encode(&command(command::Kind::TakeBotReplies(take))));
        match self.call(envelope).await?.outcome {
            Some(command_result::Outcome::BotReplies(replies)) => Ok(replies.replies),
            other => Err(unexpected(other)),
        }
    }

    async fn call(&self, envelope: Envelope) -> Result<pb::CommandResult, ApiError> {
        let answer = self.exchange(envelope).await?;
        let result = pb::CommandResult::decode(&answer[..])
            .map_err(|_| ApiError::unavailable("undecodable worker answer"))?;
        match result.outcome {
            Some(command_result::Outcome::Error(e)) => Err(ApiError::from_body(e.into())),
            _ => Ok(result),
        }
    }
}

/// Sync changes for point-of-sale clients: the sync worker answers in JSON.
impl Commands {
    /// Puts a change in a tenant's outbox; answers the stored change as clients see it.
    pub async fn sync_change(
        &self,
        tenant: &str,
        entity: String,
        op: String,
        data: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let change = pb::SyncChange {
            id: Uuid::now_v7().to_string(),
            tenant: tenant.to_owned(),
            entity,
            op,
            data_json: data.to_string(),
            at_ms: Timestamp::now().0,
        };
        let envelope = Envelope::new(self.subject(Family::Sync, tenant, op::SYNC_CHANGE), encode(&change))
            .header(headers::TENANT, tenant)
            .header(headers::MESSAGE, change.id.clone());
        let mut answer = self.sync_call(envelope).await?;
        answer.get_mut("change").map(serde_json::Value::take).ok_or_else(|| unexpected(None))
    }

    /// Confirms a tenant's changes through `cursor`, or those in `ids`; answers how many.
    pub async fn sync_confirm(
        &self,
        tenant: &str,
        cursor: Option<u64>,
        ids: Vec<String>,
    ) -> Result<u64, ApiError> {
        let confirm = pb::SyncConfirm { tenant: tenant.to_owned(), cursor, ids };
        let subject = self.subject(Family::Sync, tenant, op::SYNC_CONFIRM);
        let envelope = Envelope::new(subject, encode(&confirm)).header(headers::TENANT, tenant);
        let answer = self.sync_call(envelope).await?;
        answer.get("confirmed").and_then(serde_json::Value::as_u64).ok_or_else(|| unexpected(None))
    }

    async fn sync_call(&self, envelope: Envelope) -> Result<serde_json::Value, ApiError> {
        let answer = self.exchange(envelope).await?;
        let value: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|_| ApiError::unavailable("undecodable worker answer"))?;
        match value.get("error") {
            Some(error) => Err(ApiError::from_body(switchboard_proto::model::ErrorBody {
                code: error["code"].as_str().unwrap_or("unavailable").to_owned(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
            })),
            None => Ok(value),
        }
    }
}

impl Commands {
    /// Hands a command to the workers and waits for its answer. Once the bus
    /// has the command, no answer in time does not mean it failed: a worker
    /// may still do it, so the caller is told the outcome is unknown, never a
    /// plain failure.
    async fn exchange(&self, envelope: Envelope) -> Result<bytes::Bytes, ApiError> {
        // A fresh id per call: the bus must not drop a deliberate second call;
        // idempotency is the store's (message id, client_msg_id).
        let started = std::time::Instant::now();
        let answer = self.caller.call(envelope, &Uuid::now_v7().to_string()).await;
        metrics::histogram!(telemetry::COMMAND_DURATION).record(started.elapsed().as_secs_f64());
        match answer {
            Err(switchboard_bus::BusError::Timeout(wait)) => Err(ApiError::new(
                ErrorCode::OutcomeUnknown,
                format!(
                    "no answer from the workers within {wait:?}: it may still be stored; \
                     retry with the same client_msg_id to get it"
                ),
            )),
            answer => Ok(answer?),
        }
    }
}

fn command(kind: command::Kind) -> pb::Command {
    pb::Command { kind: Some(kind) }
}

fn malformed(e: switchboard_proto::model::Malformed) -> ApiError {
    ApiError::unavailable(format!("worker answered with a {e}"))
}

fn unexpected(outcome: Option<command_result::Outcome>) -> ApiError {
    ApiError::unavailable(format!("worker answered with an unexpected {outcome:?}"))
}
