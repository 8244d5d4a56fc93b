//! `worker persist`: handles each durable command once, acknowledging it only
//! after the store committed, then publishes what changed.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use futures_util::StreamExt;
use futures_util::future::join_all;
use prost::Message as _;
use switchboard_bus::events::{Event, encode};
use switchboard_bus::rpc::{Caller, reply};
use switchboard_bus::{Bus, Delivery, DurableStream, Envelope, headers, subjects};
use switchboard_proto::model::{Channel, Customer, DeliveryStatus, ErrorBody, Malformed, Source, Timestamp};
use switchboard_proto::pb::{self, command, command_result};
use switchboard_store::{Appended, NewConversation, NewMessage, QueuedBotReply, Store, StoreError};

/// The durable consumer every persist process shares.
pub const DURABLE: &str = "persist";
/// How long a bot reply waits for an edge to say it reached a socket.
const BOT_REPLY_WAIT: Duration = Duration::from_millis(150);
/// The most commands stored in one transaction.
const BATCH: usize = 128;
/// Pause before a command that hit a transient failure is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long a command that a client waits on is retried through transient
/// failures (a database outage): after that the client is told `unavailable`
/// and the command is dropped, so the answer is true — nothing of it is
/// stored, and the client's retry is a fresh attempt. A command nobody waits
/// on (a bot's, straight from the bus) is retried until it succeeds.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

pub struct Persist {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    caller: Caller,
    bot_reply_ttl: Duration,
}

/// What a command came to: the answer for its caller, and whether to retry.
enum Outcome {
    Done(Box<pb::CommandResult>),
    /// Transient (database or bus down): returned for redelivery. With when
    /// the command was issued, which bounds how long it is retried.
    Retry(String, Timestamp),
}

impl Persist {
    /// `bot_reply_ttl`: how long a bot reply waits for its user when the
    /// reply does not say.
    pub async fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        node: &str,
        bot_reply_ttl: Duration,
    ) -> switchboard_bus::Result<Self> {
        let caller = Caller::start(bus.clone(), node, BOT_REPLY_WAIT).await?;
        Ok(Self { bus, store, caller, bot_reply_ttl })
    }

    /// Consumes commands until the bus closes the consumer. Whatever is ready
    /// is taken together, so messages are stored in batches, one transaction
    /// each, in the order they came.
    ///
    /// When `stop` completes, the batch in hand is finished and nothing more taken.
    pub async fn run(self, stop: impl Future<Output = ()>) -> switchboard_bus::Result<()> {
        let commands = self.bus.consume(DurableStream::Commands, DURABLE, subjects::CHAT_COMMANDS).await?;
        let mut batches = std::pin::pin!(commands.batches_until(BATCH, stop));
        while let Some(batch) = batches.next().await {
            let mut sends = Vec::new();
            for delivery in batch {
                match decode(&delivery.envelope) {
                    Some(command::Kind::SendMessage(send)) => sends.push((delivery, send)),
                    other => {
                        // Keeps order: earlier messages are stored before a later command runs.
                        self.store_messages(std::mem::take(&mut sends)).await;
                        let issued = other.as_ref().map_or(Timestamp::now(), issued_at);
                        let outcome = self.handle(other, issued).await;
                        self.settle(delivery, outcome).await;
                    }
                }
            }
            self.store_messages(sends).await;
        }
        Ok(())
    }

    async fn settle(&self, delivery: Delivery, outcome: Outcome) {
        match outcome {
            Outcome::Done(result) => self.answer(delivery, &result).await,
            Outcome::Retry(e, issued) => {
                tracing::warn!(error = %e, subject = %delivery.envelope.subject, "command failed; retrying");
                self.retry(delivery, issued).await;
            }
        }
    }

    /// Answers a command's caller, then acknowledges the command.
    async fn answer(&self, delivery: Delivery, result: &pb::CommandResult) {
        if let Err(e) = reply(self.bus.as_ref(), &delivery.envelope, encode(result)).await {
            tracing::warn!(error = %e, "command answer not sent");
        }
        if let Err(e) = delivery.ack().await {
            tracing::warn!(error = %e, "command not acknowledged; it will be redelivered");
        }
    }

    /// Returns a command for redelivery after a transient failure, or gives up
    /// on it (see [`GIVE_UP_AFTER`]).
    async fn retry(&self, delivery: Delivery, issued: Timestamp) {
        let waited = Duration::from_millis(Timestamp::now().0.saturating_sub(issued.0).max(0) as u64);
        if waited >= GIVE_UP_AFTER && delivery.envelope.headers.get(headers::REPLY_TO).is_some() {
            let message = "the database is unavailable: nothing was stored, retry later";
            return self.answer(delivery, &error_result("unavailable", message)).await;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
        if let Err(e) = delivery.nak().await {
            tracing::warn!(error = %e, "command not returned; it will be redelivered");
        }
    }

    async fn handle(&self, command: Option<command::Kind>, issued: Timestamp) -> Outcome {
        let outcome = match command {
            Some(command::Kind::CreateConversation(create)) => self.create_conversation(create).await,
            Some(command::Kind::SetStatus(set)) => self.set_status(set).await,
            Some(command::Kind::BotReply(bot)) => self.bot_reply(bot).await,
            Some(command::Kind::SendMessage(_)) | None => {
                Err(Failure::Refused("bad_request", "undecodable command".into()))
            }
        };
        conclude(outcome, issued)
    }

    /// Stores a run of messages in one transaction, then answers each.
    async fn store_messages(&self, sends: Vec<(Delivery, pb::SendMessage)>) {
        if sends.is_empty() {
            return;
        }
        let mut valid = Vec::with_capacity(sends.len());
        for (delivery, send) in sends {
            match new_message(send) {
                Ok(new) => valid.push((delivery, new)),
                Err(refusal) => self.settle(delivery, conclude(Err(refusal), Timestamp::now())).await,
            }
        }
        let batch: Vec<NewMessage> = valid.iter().map(|(_, new)| new.clone()).collect();
        match self.store.append_messages(&batch).await {
            Ok(outcomes) => {
                // An inbox needs each conversation's newest state, once per batch.
                let mut updated = HashMap::new();
                for appended in outcomes.iter().flatten().filter(|a| a.created) {
                    updated.insert(appended.conversation.id.clone(), appended.conversation.clone());
                }
                // Concurrently, so the bus pipelines the publishes and acks.
                join_all(valid.into_iter().zip(outcomes).map(|((delivery, new), appended)| async move {
                    let outcome = match appended {
                        Ok(appended) => self.announce_message(appended).await,
                        Err(e) => Err(Failure::Store(e)),
                    };
                    self.settle(delivery, conclude(outcome, new.created_at)).await;
                }))
                .await;
                // Advisory: a lost update is corrected by the next one.
                for outcome in
                    join_all(updated.into_values().map(|c| self.announce(Event::ConversationUpdated(c))))
                        .await
                {
                    if let Err(Failure::Bus(e)) = outcome {
                        tracing::warn!(error = %e, "inbox update not published");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = valid.len(), "message batch not stored; retrying");
                join_all(valid.into_iter().map(|(delivery, new)| self.retry(delivery, new.created_at))).await;
            }
        }
    }

    async fn announce_message(&self, appended: Appended) -> Result<pb::CommandResult, Failure> {
        if appended.conversation_created {
            self.announce(Event::ConversationNew(appended.conversation.clone())).await?;
        }
        // Published again on a retry too: the first publish may have been lost
        // with a process that died after the commit; edges drop what they have.
        self.announce(Event::MessageNew(appended.message.clone())).await?;
        // Before the ack, so a message for WhatsApp is never left unsent.
        crate::whatsapp::outbound::forward(self.bus.as_ref(), &appended).await.map_err(Failure::Bus)?;
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
        let (conversation, created) = self.store.create_conversation(new).await?;
        if created {
            self.announce(Event::ConversationNew(conversation.clone())).await?;
        }
        Ok(result(created, command_result::Outcome::Conversation((&conversation).into())))
    }

    async fn set_status(&self, set: pb::SetStatus) -> Result<pb::CommandResult, Failure> {
        let id = set
            .message_id
            .parse()
            .map_err(|_| Failure::Refused("bad_request", "message id is not a UUID".into()))?;
        let status = DeliveryStatus::parse(&set.status).ok_or(Malformed("status"))?;
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
            bot.expires_at_ms = bot.at_ms.saturating_add(self.bot_reply_ttl.as_millis() as i64);
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

    /// Events are part of handling a command: one that cannot be published
    /// fails the command, which is redelivered and republishes (the store and
    /// the events stream both deduplicate).
    async fn announce(&self, event: Event) -> Result<(), Failure> {
        event.publish(self.bus.as_ref()).await.map_err(Failure::Bus)
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
    })
}

/// A handler's result as the answer to its command, or a retry.
fn conclude(outcome: Result<pb::CommandResult, Failure>, issued: Timestamp) -> Outcome {
    match outcome {
        Ok(result) => Outcome::Done(Box::new(result)),
        Err(Failure::Refused(code, message)) => refused(code, &message),
        Err(Failure::Store(StoreError::ConversationNotFound(id))) => {
            refused("not_found", &format!("conversation {id} not found"))
        }
        Err(Failure::Store(e)) => Outcome::Retry(e.to_string(), issued),
        Err(Failure::Bus(e)) => Outcome::Retry(e.to_string(), issued),
    }
}

/// When the client issued a command (the edge stamps each one).
/// A bot publishing straight onto the bus may leave the time out: then it is now.
fn issued_at(command: &command::Kind) -> Timestamp {
    let at = match command {
        command::Kind::SendMessage(send) => send.created_at_ms,
        command::Kind::CreateConversation(create) => create.at_ms,
        command::Kind::SetStatus(set) => set.at_ms,
        command::Kind::BotReply(bot) => bot.at_ms,
    };
    if at > 0 { Timestamp(at) } else { Timestamp::now() }
}

enum Failure {
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

fn result(created: bool, outcome: command_result::Outcome) -> pb::CommandResult {
    pb::CommandResult { created, outcome: Some(outcome) }
}

fn refused(code: &str, message: &str) -> Outcome {
    Outcome::Done(Box::new(error_result(code, message)))
}

fn error_result(code: &str, message: &str) -> pb::CommandResult {
    let error = ErrorBody { code: code.into(), message: message.into() };
    result(false, command_result::Outcome::Error((&error).into()))
}
