//! `worker persist`: handles each durable command once, acknowledging it only
//! after the store committed, then publishes what changed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use switchboard_bus::events::{Event, encode};
use switchboard_bus::rpc::{Caller, reply};
use switchboard_bus::{Bus, Delivery, DurableStream, Envelope};
use switchboard_proto::model::{
    Channel, Customer, DeliveryStatus, ErrorBody, Malformed, Sender, Source, Timestamp,
};
use switchboard_proto::pb::{self, command, command_result};
use switchboard_store::{NewConversation, NewMessage, QueuedBotReply, Store, StoreError};

/// The durable consumer every persist process shares.
pub const DURABLE: &str = "persist";
/// How long a bot reply waits for an edge to say it reached a socket.
const BOT_REPLY_WAIT: Duration = Duration::from_millis(150);
/// Pause before a command that hit a transient failure is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub struct Persist {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    caller: Caller,
}

/// What a command came to: the answer for its caller, and whether to retry.
enum Outcome {
    Done(Box<pb::CommandResult>),
    Retry(StoreError),
}

impl Persist {
    pub async fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>, node: &str) -> switchboard_bus::Result<Self> {
        let caller = Caller::start(bus.clone(), node, BOT_REPLY_WAIT).await?;
        Ok(Self { bus, store, caller })
    }

    /// Consumes commands until the bus closes the consumer.
    pub async fn run(self) -> switchboard_bus::Result<()> {
        let mut commands = self.bus.consume(DurableStream::Commands, DURABLE).await?;
        while let Some(delivery) = commands.next().await {
            self.settle(delivery).await;
        }
        Ok(())
    }

    async fn settle(&self, delivery: Delivery) {
        match self.handle(&delivery.envelope).await {
            Outcome::Done(result) => {
                if let Err(e) = reply(self.bus.as_ref(), &delivery.envelope, encode(&result)).await {
                    tracing::warn!(error = %e, "command answer not sent");
                }
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(error = %e, "command not acknowledged; it will be redelivered");
                }
            }
            Outcome::Retry(e) => {
                tracing::warn!(error = %e, subject = %delivery.envelope.subject, "command failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                if let Err(e) = delivery.nak().await {
                    tracing::warn!(error = %e, "command not returned; it will be redelivered");
                }
            }
        }
    }

    async fn handle(&self, envelope: &Envelope) -> Outcome {
        let command = match pb::Command::decode(&envelope.payload[..]) {
            Ok(pb::Command { kind: Some(kind) }) => kind,
            _ => return refused("bad_request", "undecodable command"),
        };
        let outcome = match command {
            command::Kind::SendMessage(send) => self.send_message(send).await,
            command::Kind::CreateConversation(create) => self.create_conversation(create).await,
            command::Kind::SetStatus(set) => self.set_status(set).await,
            command::Kind::BotReply(bot) => self.bot_reply(bot).await,
        };
        match outcome {
            Ok(result) => Outcome::Done(Box::new(result)),
            Err(Failure::Refused(code, message)) => refused(code, &message),
            Err(Failure::Store(StoreError::ConversationNotFound(id))) => {
                refused("not_found", &format!("conversation {id} not found"))
            }
            Err(Failure::Store(e)) => Outcome::Retry(e),
        }
    }

    async fn send_message(&self, send: pb::SendMessage) -> Result<pb::CommandResult, Failure> {
        let sender: Sender = send.sender.ok_or(Malformed("sender"))?.try_into()?;
        let new = NewMessage {
            id: send.message_id.parse().map_err(|_| Malformed("message id"))?,
            conversation_id: send.conversation_id,
            sender,
            text: send.text,
            client_msg_id: send.client_msg_id,
            source: Source::parse(&send.source).ok_or(Malformed("source"))?,
            created_at: Timestamp(send.created_at_ms),
            create_for: send.create_for.map(Customer::from),
        };
        let appended = self.store.append_message(new).await?;
        if appended.conversation_created {
            self.announce(Event::ConversationNew(appended.conversation.clone())).await;
        }
        // Published again on a retry too: the first publish may have been lost
        // with a process that died after the commit; edges drop what they have.
        self.announce(Event::MessageNew(appended.message.clone())).await;
        if appended.created {
            self.announce(Event::ConversationUpdated(appended.conversation)).await;
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
        let (conversation, created) = self.store.create_conversation(new).await?;
        if created {
            self.announce(Event::ConversationNew(conversation.clone())).await;
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
            self.announce(Event::MessageStatus(change.update.clone())).await;
        }
        Ok(result(change.changed, command_result::Outcome::Status((&change.update).into())))
    }

    /// Queued first, so a reply is never lost; removed again once an edge says
    /// a socket of that user got it.
    async fn bot_reply(&self, bot: pb::BotReply) -> Result<pb::CommandResult, Failure> {
        let queued = QueuedBotReply {
            id: bot.id.clone(),
            phone: bot.phone.clone(),
            text: bot.text.clone(),
            at: Timestamp(bot.at_ms),
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

    async fn announce(&self, event: Event) {
        if let Err(e) = event.publish(self.bus.as_ref()).await {
            // Stored already; edges fill the gap from the store when they notice.
            tracing::warn!(error = %e, "event not published");
        }
    }
}

enum Failure {
    Refused(&'static str, String),
    Store(StoreError),
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
    let error = ErrorBody { code: code.into(), message: message.into() };
    Outcome::Done(Box::new(result(false, command_result::Outcome::Error((&error).into()))))
}
