//! The events that flow from workers (and edges, for ephemeral ones) back out
//! to edges: one function to put each on its subject with its headers, one
//! decoder to read any of them back.

use prost::Message as _;
use switchboard_proto::model::{
    Assignee, Conversation, ConversationStatus, Malformed, Message, StatusUpdate,
};
use switchboard_proto::pb;

use crate::{Bus, Envelope, Result, headers, subjects};

/// Event type names, as they appear in the `Sb-Event` header.
pub mod kind {
    pub const MESSAGE_NEW: &str = "message.new";
    pub const MESSAGE_STATUS: &str = "message.status";
    pub const TYPING: &str = "typing";
    pub const PRESENCE: &str = "presence";
    pub const CONVERSATION_NEW: &str = "conversation.new";
    pub const CONVERSATION_UPDATED: &str = "conversation.updated";
    pub const BOT_REPLY: &str = "bot.reply";
    pub const SYNC_PENDING: &str = "sync.pending";
}

/// Any event an edge can receive.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    MessageNew(Message),
    MessageStatus(StatusUpdate),
    Typing(pb::Typing),
    Presence(pb::Presence),
    ConversationNew(Conversation),
    ConversationUpdated(ConversationChange),
    BotReply(pb::BotReply),
}

/// A conversation that changed: its new state, and, when who handles it or
/// its status changed, what they were before.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationChange {
    pub conversation: Conversation,
    pub previous: Option<Previous>,
}

/// A conversation's handling before a change.
#[derive(Clone, Debug, PartialEq)]
pub struct Previous {
    pub status: ConversationStatus,
    pub assignee: Option<Assignee>,
}

impl ConversationChange {
    /// New messages only: coalesced, for inboxes.
    pub fn activity(conversation: Conversation) -> Self {
        Self { conversation, previous: None }
    }

    /// A customer's message reopened it.
    pub fn reopened(conversation: Conversation) -> Self {
        let previous =
            Previous { status: ConversationStatus::Closed, assignee: conversation.assignee.clone() };
        Self { conversation, previous: Some(previous) }
    }

    /// Its status or assignee changed: told at once, to its own sockets too.
    pub fn is_handling(&self) -> bool {
        self.previous.is_some()
    }
}

impl From<&ConversationChange> for pb::ConversationChange {
    fn from(change: &ConversationChange) -> Self {
        pb::ConversationChange {
            conversation: Some((&change.conversation).into()),
            handling: change.previous.is_some(),
            previous_status: change
                .previous
                .as_ref()
                .map(|p| p.status.as_str().to_owned())
                .unwrap_or_default(),
            previous_assignee: change.previous.as_ref().and_then(|p| p.assignee.as_ref()).map(Into::into),
        }
    }
}

impl TryFrom<pb::ConversationChange> for ConversationChange {
    type Error = Malformed;
    fn try_from(change: pb::ConversationChange) -> Result<Self, Malformed> {
        let previous = if change.handling {
            Some(Previous {
                status: ConversationStatus::parse(&change.previous_status)
                    .ok_or(Malformed("previous status"))?,
                assignee: change.previous_assignee.map(Into::into),
            })
        } else {
            None
        };
        Ok(Self { conversation: change.conversation.ok_or(Malformed("conversation"))?.try_into()?, previous })
    }
}

impl Event {
    pub fn decode(envelope: &Envelope) -> Result<Self, Malformed> {
        let body = &envelope.payload[..];
        let bad = |_| Malformed("event body");
        Ok(match envelope.headers.get(headers::EVENT) {
            Some(kind::MESSAGE_NEW) => Event::MessageNew(pb::Message::decode(body).map_err(bad)?.try_into()?),
            Some(kind::MESSAGE_STATUS) => {
                Event::MessageStatus(pb::MessageStatus::decode(body).map_err(bad)?.try_into()?)
            }
            Some(kind::TYPING) => Event::Typing(pb::Typing::decode(body).map_err(bad)?),
            Some(kind::PRESENCE) => Event::Presence(pb::Presence::decode(body).map_err(bad)?),
            Some(kind::CONVERSATION_NEW) => {
                Event::ConversationNew(pb::Conversation::decode(body).map_err(bad)?.try_into()?)
            }
            Some(kind::CONVERSATION_UPDATED) => {
                Event::ConversationUpdated(pb::ConversationChange::decode(body).map_err(bad)?.try_into()?)
            }
            Some(kind::BOT_REPLY) => Event::BotReply(pb::BotReply::decode(body).map_err(bad)?),
            _ => return Err(Malformed("event type header")),
        })
    }

    /// The conversation the event belongs to, for those that belong to one: a
    /// consumer of one conversation's subject checks it is its own.
    pub fn conversation_id(&self) -> Option<&str> {
        match self {
            Event::MessageNew(m) => Some(&m.conversation_id),
            Event::MessageStatus(s) => Some(&s.conversation_id),
            Event::Typing(t) => Some(&t.conversation_id),
            Event::Presence(p) => Some(&p.conversation_id),
            Event::ConversationNew(_) | Event::ConversationUpdated(_) | Event::BotReply(_) => None,
        }
    }

    /// The envelope this event travels in.
    pub fn envelope(&self) -> Envelope {
        match self {
            Event::MessageNew(m) => {
                Envelope::new(subjects::conv_msg(&m.conversation_id), encode(&pb::Message::from(m)))
                    .header(headers::EVENT, kind::MESSAGE_NEW)
                    .header(headers::CONVERSATION, m.conversation_id.clone())
                    .header(headers::MESSAGE, m.id.to_string())
            }
            Event::MessageStatus(s) => {
                Envelope::new(subjects::conv_status(&s.conversation_id), encode(&pb::MessageStatus::from(s)))
                    .header(headers::EVENT, kind::MESSAGE_STATUS)
                    .header(headers::CONVERSATION, s.conversation_id.clone())
                    .header(headers::MESSAGE, s.message_id.to_string())
            }
            Event::Typing(t) => Envelope::new(subjects::conv_typing(&t.conversation_id), encode(t))
                .header(headers::EVENT, kind::TYPING)
                .header(headers::CONVERSATION, t.conversation_id.clone()),
            Event::Presence(p) => Envelope::new(subjects::conv_presence(&p.conversation_id), encode(p))
                .header(headers::EVENT, kind::PRESENCE)
                .header(headers::CONVERSATION, p.conversation_id.clone()),
            Event::ConversationNew(c) => {
                Envelope::new(subjects::INBOX_NEW, encode(&pb::Conversation::from(c)))
                    .header(headers::EVENT, kind::CONVERSATION_NEW)
                    .header(headers::CONVERSATION, c.id.clone())
            }
            Event::ConversationUpdated(c) => {
                Envelope::new(subjects::INBOX_UPDATED, encode(&pb::ConversationChange::from(c)))
                    .header(headers::EVENT, kind::CONVERSATION_UPDATED)
                    .header(headers::CONVERSATION, c.conversation.id.clone())
            }
            Event::BotReply(r) => Envelope::new(subjects::user_phone_bot(&r.phone), encode(r))
                .header(headers::EVENT, kind::BOT_REPLY)
                .header(headers::MESSAGE, r.id.clone()),
        }
    }

    /// The key JetStream deduplicates a stored event on; `None` for ephemeral ones.
    pub fn durable_id(&self) -> Option<String> {
        match self {
            Event::MessageNew(m) => Some(format!("msg:{}", m.id)),
            Event::MessageStatus(s) => Some(format!("status:{}:{}", s.message_id, s.status)),
            Event::ConversationNew(c) => Some(format!("conv-new:{}", c.id)),
            Event::ConversationUpdated(_) | Event::Typing(_) | Event::Presence(_) | Event::BotReply(_) => {
                None
            }
        }
    }

    /// Stored events go through the events stream (deduplicated, so a worker
    /// that republishes after a crash adds nothing); the rest through core.
    pub async fn publish(&self, bus: &dyn Bus) -> Result<()> {
        match self.durable_id() {
            Some(id) => bus.publish_durable(self.envelope(), &id).await,
            None => bus.publish(self.envelope()).await,
        }
    }
}

pub fn encode(message: &impl prost::Message) -> bytes::Bytes {
    message.encode_to_vec().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::model::{Role, Sender, Source, Timestamp};

    #[test]
    fn an_event_reads_back_from_its_envelope() {
        let message = Message {
            id: uuid::Uuid::now_v7(),
            conversation_id: "c.1".into(),
            offset: 3,
            sender: Sender { id: "u".into(), role: Role::Bot, name: "Botito".into() },
            text: "hi".into(),
            client_msg_id: None,
            source: Source::Bot,
            created_at: Timestamp(5),
            content: None,
            private: false,
        };
        let event = Event::MessageNew(message);
        let envelope = event.envelope();
        assert_eq!(envelope.subject, "sb.conv.c%2E1.msg");
        assert_eq!(envelope.headers.get(headers::CONVERSATION), Some("c.1"));
        assert_eq!(Event::decode(&envelope).unwrap(), event);
    }

    #[test]
    fn a_garbled_event_is_malformed_not_a_panic() {
        let envelope =
            Envelope::new("sb.conv.x.msg", vec![0xff, 0xff, 0xff]).header(headers::EVENT, kind::MESSAGE_NEW);
        assert!(Event::decode(&envelope).is_err());
        assert!(Event::decode(&Envelope::new("sb.conv.x.msg", "")).is_err());
    }
}
