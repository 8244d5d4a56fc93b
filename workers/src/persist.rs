//! `worker persist`: handles each durable command once, acknowledging it only
//! after the store committed, then publishes what changed.
//!
//! It takes the chat commands of the partitions it owns. Messages are stored
//! under the partitions' epochs, so a worker that lost a partition appends
//! nothing after its successor; the other commands need no fence, being
//! idempotent (a conversation's creation, a queued bot reply) or only moving
//! forward (a status).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::join_all;
use prost::Message as _;
use switchboard_bus::events::{ConversationChange, Event, encode};
use switchboard_bus::rpc::Caller;
use switchboard_bus::subjects::Family;
use switchboard_bus::{Bus, Delivery, Envelope, Partitions};
use switchboard_proto::model::{
    Channel, Conversation, Customer, DeliveryStatus, ErrorBody, Malformed, Source, Timestamp,
};
use switchboard_proto::pb::{self, command, command_result};
use switchboard_store::{Appended, Fence, NewConversation, NewMessage, QueuedBotReply, Store, StoreError};

use crate::inbox::InboxUpdates;
use crate::runner::{self, Handler, Outcome, Partitioned};
use crate::telemetry;

/// How long a bot reply waits for an edge to say it reached a socket.
const BOT_REPLY_WAIT: Duration = Duration::from_millis(150);
/// The most commands stored in one transaction.
const BATCH: usize = 128;
/// Pause before a command that hit a transient failure is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// More to do for each stored message before its command is acknowledged,
/// so it is never skipped (a WhatsApp send, for one). Runs again when a
/// command is redelivered: it must be idempotent.
#[async_trait]
pub trait AfterAppend: Send + Sync {
    async fn appended(&self, appended: &Appended) -> switchboard_bus::Result<()>;
}

pub struct Persist {
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) store: Arc<dyn Store>,
    node: String,
    partitions: Partitions,
    caller: Caller,
    pub(crate) policy: Policy,
    after_append: Vec<Arc<dyn AfterAppend>>,
    inbox: Arc<InboxUpdates>,
}

/// What a deployment chooses of the persist worker's behaviour.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// How long a bot reply waits for its user when the reply does not say.
    pub bot_reply_ttl: Duration,
    /// New and pending conversations go round-robin to online agents.
    pub auto_assign: bool,
}

impl Persist {
    pub async fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        node: &str,
        partitions: Partitions,
        policy: Policy,
        after_append: Vec<Arc<dyn AfterAppend>>,
    ) -> switchboard_bus::Result<Self> {
        let caller = Caller::start(bus.clone(), node, BOT_REPLY_WAIT).await?;
        let inbox = InboxUpdates::start(bus.clone());
        Ok(Self { bus, store, node: node.to_owned(), partitions, caller, policy, after_append, inbox })
    }

    /// Consumes commands until the bus closes the consumer. Whatever is ready
    /// is taken together, so messages are stored in batches, one transaction
    /// each, in the order they came.
    ///
    /// When `stop` completes, the batch in hand is finished and nothing more taken.
    pub async fn run(self, stop: impl Future<Output = ()>) -> switchboard_bus::Result<()> {
        let intake = Partitioned { family: Family::Chat, partitions: self.partitions, batch: BATCH };
        let (bus, store) = (self.bus.clone(), self.store.clone());
        runner::run_partitioned(bus, store, &self.node, intake, &self, stop).await
    }

    async fn handle_one(&self, command: Option<command::Kind>) -> Outcome {
        let issued = command.as_ref().map_or(Timestamp::now(), issued_at);
        let outcome = match command {
            Some(command::Kind::CreateConversation(create)) => self.create_conversation(create).await,
            Some(command::Kind::SetStatus(set)) => self.set_status(set).await,
            Some(command::Kind::BotReply(bot)) => self.bot_reply(bot).await,
            Some(command::Kind::TakeBotReplies(take)) => self.take_bot_replies(take).await,
            Some(command::Kind::Assign(assign)) => self.assign(assign).await,
            Some(command::Kind::SetConversationStatus(set)) => self.set_conversation_status(set).await,
            Some(command::Kind::AgentSeen(seen)) => self.agent_seen(seen).await,
            Some(command::Kind::SendMessage(_)) | None => {
                Err(Failure::Refused("bad_request", "undecodable command".into()))
            }
        };
        conclude(outcome, issued)
    }

    /// Stores a run of messages in one transaction; the outcome of each, by
    /// its place in the batch.
    async fn store_messages(
        &self,
        sends: Vec<(usize, pb::SendMessage)>,
        fence: &Fence,
        outcomes: &mut [Option<Outcome>],
    ) {
        // The valid messages, and where each stands in the commands' batch.
        let (mut places, mut batch) = (Vec::with_capacity(sends.len()), Vec::with_capacity(sends.len()));
        for (at, send) in sends {
            match new_message(send) {
                Ok(new) => {
                    places.push(at);
                    batch.push(new);
                }
                Err(refusal) => outcomes[at] = Some(conclude(Err(refusal), Timestamp::now())),
            }
        }
        if batch.is_empty() {
            return;
        }
        metrics::histogram!(telemetry::BATCH_SIZE).record(batch.len() as f64);
        let started = std::time::Instant::now();
        let stored = self.store.append_messages(&batch, fence).await;
        metrics::histogram!(telemetry::STORE_DURATION).record(started.elapsed().as_secs_f64());
        let appended = match stored {
            Ok(appended) => appended,
            Err(StoreError::Fenced { partition, .. }) => {
                for at in places {
                    outcomes[at] = Some(Outcome::Fenced(partition));
                }
                return;
            }
            Err(e) => {
                // Nothing of the batch was stored: each is retried.
                let error = e.to_string();
                for (at, new) in places.into_iter().zip(batch) {
                    let (error, issued) = (error.clone(), new.created_at);
                    outcomes[at] = Some(Outcome::Retry { error: Some(error), issued, pause: RETRY_PAUSE });
                }
                return;
            }
        };
        // An inbox needs each conversation's newest state, once per batch;
        // a reopened one is told at once, as a change of status.
        let mut updated = HashMap::new();
        for appended in appended.iter().flatten().filter(|a| a.created) {
            updated.insert(appended.conversation.id.clone(), appended.conversation.clone());
        }
        let reopened: Vec<Conversation> =
            appended.iter().flatten().filter(|a| a.reopened).map(|a| a.conversation.clone()).collect();
        for conversation in &reopened {
            updated.remove(&conversation.id);
        }
        // Concurrently, so the bus pipelines the publishes.
        let announced =
            join_all(places.into_iter().zip(batch).zip(appended).map(|((at, new), appended)| async move {
                let outcome = match appended {
                    Ok(appended) => self.announce_message(appended).await,
                    Err(e) => Err(Failure::Store(e)),
                };
                (at, conclude(outcome, new.created_at))
            }))
            .await;
        for (at, outcome) in announced {
            outcomes[at] = Some(outcome);
        }
        self.inbox.offer(updated.into_values()).await;
        for conversation in reopened {
            let change = ConversationChange::reopened(conversation);
            // Advisory like every inbox update: the store has the status.
            if let Err(e) = Event::ConversationUpdated(change).publish(self.bus.as_ref()).await {
                tracing::warn!(error = %e, "a reopened conversation's update was not published");
            }
        }
    }

    async fn announce_message(&self, appended: Appended) -> Result<pb::CommandResult, Failure> {
        if appended.conversation_created {
            self.announce(Event::ConversationNew(appended.conversation.clone())).await?;
            self.auto_assign(appended.conversation.clone()).await?;
        }
        // Published again on a retry too: the first publish may have been lost
        // with a process that died after the commit; edges drop what they have.
        self.announce(Event::MessageNew(appended.message.clone())).await?;
        for hook in &self.after_append {
            hook.appended(&appended).await.map_err(Failure::Bus)?;
        }
        Ok(result(appended.created, command_result::Outcome::Message((&appended.message).into())))
    }

    async fn create_conversation(
        &self,
        create: pb::CreateConversation,
    ) -> Result<pb::CommandResult, Failure> {
        let new = NewConversation {
            id: create.id,
            channel: Channel::parse(&create.channel).ok_or(Malformed("channel"))?,
            customer: create.customer.ok_or(Malformed("customer"))?.into(),
            at: Timestamp(create.at_ms),
        };
        let (mut conversation, created) = self.store.create_conversation(new).await?;
        if created {
            self.announce(Event::ConversationNew(conversation.clone())).await?;
            conversation = self.auto_assign(conversation).await?;
        }
        Ok(result(created, command_result::Outcome::Conversation((&conversation).into())))
    }

    async fn set_status(&self, set: pb::SetStatus) -> Result<pb::CommandResult, Failure> {
        let id = set
            .message_id
            .parse()
            .map_err(|_| Failure::Refused("bad_request", "message id is not a UUID".into()))?;
        let status = DeliveryStatus::parse(&set.status).ok_or(Malformed("status"))?;
        if let Some(reader) = &set.reader {
            self.store.read_up_to(id, reader).await?;
        }
        let Some(change) = self.store.set_status(id, status, Timestamp(set.at_ms)).await? else {
            return Err(Failure::Refused("not_found", format!("message {id} not found")));
        };
        if change.changed {
            self.announce(Event::MessageStatus(change.update.clone())).await?;
        }
        Ok(result(change.changed, command_result::Outcome::Status((&change.update).into())))
    }

    /// Queued first, so a reply is never lost; removed again once an edge says
    /// a socket of that user got it.
    async fn bot_reply(&self, mut bot: pb::BotReply) -> Result<pb::CommandResult, Failure> {
        if bot.id.is_empty() || bot.phone.is_empty() {
            return Err(Failure::Refused("bad_request", "a bot reply needs an id and a phone".into()));
        }
        if bot.at_ms == 0 {
            bot.at_ms = Timestamp::now().0;
        }
        if bot.expires_at_ms == 0 {
            bot.expires_at_ms = bot.at_ms.saturating_add(self.policy.bot_reply_ttl.as_millis() as i64);
        }
        let queued = QueuedBotReply {
            id: bot.id.clone(),
            phone: bot.phone.clone(),
            text: bot.text.clone(),
            at: Timestamp(bot.at_ms),
            expires_at: Timestamp(bot.expires_at_ms),
        };
        self.store.queue_bot_reply(queued).await?;
        let delivered =
            match self.caller.request(Event::BotReply(bot.clone()).envelope(), BOT_REPLY_WAIT).await {
                Ok(Some(answer)) => {
                    pb::CommandResult::decode(&answer[..]).ok().and_then(|r| match r.outcome {
                        Some(command_result::Outcome::Delivered(n)) => Some(n),
                        _ => None,
                    })
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "bot reply kept queued");
                    None
                }
            };
        let delivered = delivered.unwrap_or(0);
        if delivered > 0 {
            self.store.remove_bot_reply(&bot.id).await?;
        }
        Ok(result(true, command_result::Outcome::Delivered(delivered)))
    }

    async fn take_bot_replies(&self, take: pb::TakeBotReplies) -> Result<pb::CommandResult, Failure> {
        let replies = self.store.take_bot_replies(&take.phone, Timestamp(take.at_ms)).await?;
        let replies = replies
            .into_iter()
            .map(|queued| pb::BotReply {
                id: queued.id,
                phone: queued.phone,
                text: queued.text,
                at_ms: queued.at.0,
                expires_at_ms: queued.expires_at.0,
            })
            .collect();
        Ok(result(true, command_result::Outcome::BotReplies(pb::BotReplies { replies })))
    }

    /// Events are part of handling a command: one that cannot be published
    /// fails the command, which is redelivered and republishes (the store and
    /// the events stream both deduplicate).
    pub(crate) async fn announce(&self, event: Event) -> Result<(), Failure> {
        event.publish(self.bus.as_ref()).await.map_err(Failure::Bus)
    }
}

#[async_trait]
impl Handler for Persist {
    /// Runs of messages are stored together; any other command runs between
    /// them, after the messages before it, so order is kept.
    async fn handle(&self, batch: &[Delivery], fence: &Fence) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = batch.iter().map(|_| None).collect();
        let mut sends = Vec::new();
        for (at, delivery) in batch.iter().enumerate() {
            match decode(&delivery.envelope) {
                Some(command::Kind::SendMessage(send)) => sends.push((at, send)),
                other => {
                    self.store_messages(std::mem::take(&mut sends), fence, &mut outcomes).await;
                    outcomes[at] = Some(self.handle_one(other).await);
                }
            }
        }
        self.store_messages(sends, fence, &mut outcomes).await;
        outcomes.into_iter().map(|o| o.expect("every command has an outcome")).collect()
    }

    fn unavailable(&self) -> Bytes {
        encode(&error_result("unavailable", "the database is unavailable: nothing was stored, retry later"))
    }
}

fn decode(envelope: &Envelope) -> Option<command::Kind> {
    pb::Command::decode(&envelope.payload[..]).ok().and_then(|c| c.kind)
}

fn new_message(send: pb::SendMessage) -> Result<NewMessage, Failure> {
    Ok(NewMessage {
        id: send.message_id.parse().map_err(|_| Malformed("message id"))?,
        conversation_id: send.conversation_id,
        sender: send.sender.ok_or(Malformed("sender"))?.try_into()?,
        text: send.text,
        client_msg_id: send.client_msg_id,
        source: Source::parse(&send.source).ok_or(Malformed("source"))?,
        created_at: Timestamp(send.created_at_ms),
        content: None,
        create_for: send.create_for.map(Customer::from),
        private: send.private,
    })
}

/// A handler's result as the answer to its command, or a retry.
fn conclude(outcome: Result<pb::CommandResult, Failure>, issued: Timestamp) -> Outcome {
    let retry = |error: String| Outcome::Retry { error: Some(error), issued, pause: RETRY_PAUSE };
    match outcome {
        Ok(result) => Outcome::Done(Some(encode(&result))),
        Err(Failure::Refused(code, message)) => refused(code, &message),
        Err(Failure::Store(StoreError::ConversationNotFound(id))) => {
            refused("not_found", &format!("conversation {id} not found"))
        }
        Err(Failure::Store(e)) => retry(e.to_string()),
        Err(Failure::Bus(e)) => retry(e.to_string()),
    }
}

/// A bot publishing straight onto the bus may leave the time out: then it is now.
fn issued_at(command: &command::Kind) -> Timestamp {
    let at = match command {
        command::Kind::SendMessage(send) => send.created_at_ms,
        command::Kind::CreateConversation(create) => create.at_ms,
        command::Kind::SetStatus(set) => set.at_ms,
        command::Kind::BotReply(bot) => bot.at_ms,
        command::Kind::TakeBotReplies(take) => take.at_ms,
        command::Kind::Assign(assign) => assign.at_ms,
        command::Kind::SetConversationStatus(set) => set.at_ms,
        command::Kind::AgentSeen(seen) => seen.at_ms,
    };
    if at > 0 { Timestamp(at) } else { Timestamp::now() }
}

pub(crate) enum Failure {
    Refused(&'static str, String),
    Store(StoreError),
    Bus(switchboard_bus::BusError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Malformed> for Failure {
    fn from(e: Malformed) -> Self {
        Failure::Refused("bad_request", e.to_string())
    }
}

pub(crate) fn result(created: bool, outcome: command_result::Outcome) -> pb::CommandResult {
    pb::CommandResult { created, outcome: Some(outcome) }
}

fn refused(code: &str, message: &str) -> Outcome {
    Outcome::Done(Some(encode(&error_result(code, message))))
}

fn error_result(code: &str, message: &str) -> pb::CommandResult {
    let error = ErrorBody { code: code.into(), message: message.into() };
    result(false, command_result::Outcome::Error((&error).into()))
}
