//! Domain types, serialised exactly as clients see them (the JSON of every
//! transport's events, acks and HTTP bodies).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::pb;

/// Milliseconds since the Unix epoch; RFC 3339 in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_millis())
    }

    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| Self(t.timestamp_millis()))
            .map_err(serde::de::Error::custom)
    }
}

/// Declares a string-valued enum with its wire names, once.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        // By hand: the derive does not see a `rename` a macro passes it, and
        // would document the variants' Rust names.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Who a token speaks for (its `role` claim).
    Role { Customer = "customer", Agent = "agent", Bot = "bot", Service = "service" }
);
wire_enum!(
    /// Where a message came from.
    Source { Widget = "widget", Agent = "agent", Whatsapp = "whatsapp", Bot = "bot", Api = "api" }
);
wire_enum!(
    /// The channel a conversation lives on.
    Channel { Web = "web", Whatsapp = "whatsapp" }
);
wire_enum!(
    /// Whether a conversation is being worked on, waits for a human, or is done.
    ConversationStatus { Open = "open", Pending = "pending", Closed = "closed" }
);
wire_enum!(
    /// A message's delivery state.
    DeliveryStatus { Sent = "sent", Delivered = "delivered", Read = "read", Failed = "failed" }
);

wire_enum!(
    /// Whether an agent takes conversations now: `offline` once no socket of it is connected.
    Availability { Online = "online", Away = "away", Offline = "offline" }
);

/// An agent as `GET /api/v1/agents` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub availability: Availability,
    /// Conversations assigned to it that are not closed.
    pub open_assigned: u64,
}

impl Role {
    /// Staff see private notes and work the inbox; customers do neither.
    pub fn is_staff(self) -> bool {
        self != Role::Customer
    }

    /// The source of a message sent by someone holding this role.
    pub fn source(self) -> Source {
        match self {
            Role::Customer => Source::Widget,
            Role::Agent => Source::Agent,
            Role::Bot => Source::Bot,
            Role::Service => Source::Api,
        }
    }
}

impl DeliveryStatus {
    /// Statuses only move forward: a late `delivered` never undoes `read`.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Sent => 0,
            DeliveryStatus::Delivered => 1,
            DeliveryStatus::Read => 2,
            DeliveryStatus::Failed => 3,
        }
    }

    pub fn advances(self, from: DeliveryStatus) -> bool {
        self.rank() > from.rank()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sender {
    pub id: String,
    pub role: Role,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: String,
    pub offset: u64,
    pub sender: Sender,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub source: Source,
    pub created_at: Timestamp,
    /// What a non-text message carries (WhatsApp media, location, interactive
    /// reply, contacts), as `{type, ...}`; `text` then holds a caption or summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub content: Option<serde_json::Value>,
    /// A staff-only note: customers never receive it (absent when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Customer {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// As a widget visitor gave it in the pre-chat form (§12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The agent a conversation is assigned to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignee {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: String,
    pub channel: Channel,
    pub status: ConversationStatus,
    pub customer: Customer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Assignee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    /// For an agent's listing: messages after its last `mark_read`, not its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Conversation {
    /// As a customer may see it: without a staff-only note as its last message.
    pub fn for_customer(mut self) -> Self {
        self.last_message = self.last_message.filter(|m| !m.private);
        self
    }
}

/// `message:status` as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusUpdate {
    pub message_id: Uuid,
    pub conversation_id: String,
    pub status: DeliveryStatus,
    pub timestamp: Timestamp,
    /// Why a `failed` message failed (the provider's code and title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StatusError>,
    /// The message is a private note: its receipts go to staff only. Not on
    /// the wire to clients.
    #[serde(skip)]
    #[schema(ignore)]
    pub private: bool,
}

/// A provider's reason for a `failed` status (WhatsApp: Graph API code and title).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusError {
    pub code: i64,
    pub title: String,
}

/// A stable error code and a human message: the one error shape of HTTP
/// answers, socket acks and bus command results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// An envelope that does not carry what its type promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed envelope: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

fn parse_wire<T>(parse: fn(&str) -> Option<T>, text: &str, what: &'static str) -> Result<T, Malformed> {
    parse(text).ok_or(Malformed(what))
}

impl From<&Sender> for pb::Sender {
    fn from(s: &Sender) -> Self {
        pb::Sender { id: s.id.clone(), role: s.role.as_str().into(), name: s.name.clone() }
    }
}

impl TryFrom<pb::Sender> for Sender {
    type Error = Malformed;
    fn try_from(s: pb::Sender) -> Result<Self, Malformed> {
        Ok(Sender { id: s.id, role: parse_wire(Role::parse, &s.role, "sender role")?, name: s.name })
    }
}

impl From<&Message> for pb::Message {
    fn from(m: &Message) -> Self {
        pb::Message {
            id: m.id.to_string(),
            conversation_id: m.conversation_id.clone(),
            offset: m.offset,
            sender: Some((&m.sender).into()),
            text: m.text.clone(),
            client_msg_id: m.client_msg_id.clone(),
            source: m.source.as_str().into(),
            created_at_ms: m.created_at.0,
            content_json: m.content.as_ref().map(|c| c.to_string()),
            private: m.private,
        }
    }
}

impl TryFrom<pb::Message> for Message {
    type Error = Malformed;
    fn try_from(m: pb::Message) -> Result<Self, Malformed> {
        Ok(Message {
            id: m.id.parse().map_err(|_| Malformed("message id"))?,
            conversation_id: m.conversation_id,
            offset: m.offset,
            sender: m.sender.ok_or(Malformed("sender"))?.try_into()?,
            text: m.text,
            client_msg_id: m.client_msg_id,
            source: parse_wire(Source::parse, &m.source, "source")?,
            created_at: Timestamp(m.created_at_ms),
            content: m
                .content_json
                .map(|c| serde_json::from_str(&c).map_err(|_| Malformed("content")))
                .transpose()?,
            private: m.private,
        })
    }
}

impl From<&Customer> for pb::Customer {
    fn from(c: &Customer) -> Self {
        pb::Customer {
            id: c.id.clone(),
            name: c.name.clone(),
            phone: c.phone.clone(),
            email: c.email.clone(),
        }
    }
}

impl From<pb::Customer> for Customer {
    fn from(c: pb::Customer) -> Self {
        Customer { id: c.id, name: c.name, phone: c.phone, email: c.email }
    }
}

impl From<&Conversation> for pb::Conversation {
    fn from(c: &Conversation) -> Self {
        pb::Conversation {
            id: c.id.clone(),
            channel: c.channel.as_str().into(),
            status: c.status.as_str().into(),
            customer: Some((&c.customer).into()),
            assignee: c.assignee.as_ref().map(Into::into),
            last_message: c.last_message.as_ref().map(Into::into),
            created_at_ms: c.created_at.0,
            updated_at_ms: c.updated_at.0,
        }
    }
}

impl TryFrom<pb::Conversation> for Conversation {
    type Error = Malformed;
    fn try_from(c: pb::Conversation) -> Result<Self, Malformed> {
        Ok(Conversation {
            id: c.id,
            channel: parse_wire(Channel::parse, &c.channel, "channel")?,
            status: parse_wire(ConversationStatus::parse, &c.status, "status")?,
            customer: c.customer.ok_or(Malformed("customer"))?.into(),
            assignee: c.assignee.map(Into::into),
            last_message: c.last_message.map(TryInto::try_into).transpose()?,
            unread: None,
            created_at: Timestamp(c.created_at_ms),
            updated_at: Timestamp(c.updated_at_ms),
        })
    }
}

impl From<&Assignee> for pb::Assignee {
    fn from(a: &Assignee) -> Self {
        pb::Assignee { id: a.id.clone(), name: a.name.clone() }
    }
}

impl From<pb::Assignee> for Assignee {
    fn from(a: pb::Assignee) -> Self {
        Assignee { id: a.id, name: a.name }
    }
}

impl From<&StatusUpdate> for pb::MessageStatus {
    fn from(s: &StatusUpdate) -> Self {
        pb::MessageStatus {
            message_id: s.message_id.to_string(),
            conversation_id: s.conversation_id.clone(),
            status: s.status.as_str().into(),
            at_ms: s.timestamp.0,
            error_code: s.error.as_ref().map(|e| e.code),
            error_title: s.error.as_ref().map(|e| e.title.clone()),
            private: s.private,
        }
    }
}

impl TryFrom<pb::MessageStatus> for StatusUpdate {
    type Error = Malformed;
    fn try_from(s: pb::MessageStatus) -> Result<Self, Malformed> {
        Ok(StatusUpdate {
            message_id: s.message_id.parse().map_err(|_| Malformed("message id"))?,
            conversation_id: s.conversation_id,
            status: parse_wire(DeliveryStatus::parse, &s.status, "status")?,
            timestamp: Timestamp(s.at_ms),
            error: s.error_code.map(|code| StatusError { code, title: s.error_title.unwrap_or_default() }),
            private: s.private,
        })
    }
}

impl From<&ErrorBody> for pb::Error {
    fn from(e: &ErrorBody) -> Self {
        pb::Error { code: e.code.clone(), message: e.message.clone() }
    }
}

impl From<pb::Error> for ErrorBody {
    fn from(e: pb::Error) -> Self {
        ErrorBody { code: e.code, message: e.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            id: Uuid::now_v7(),
            conversation_id: "c1".into(),
            offset: 7,
            sender: Sender { id: "u1".into(), role: Role::Agent, name: "Ana".into() },
            text: "hola".into(),
            client_msg_id: Some("k1".into()),
            source: Source::Agent,
            created_at: Timestamp(1_700_000_000_123),
            content: None,
            private: false,
        }
    }

    #[test]
    fn message_survives_the_bus() {
        let m = message();
        let back = Message::try_from(pb::Message::from(&m)).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn message_json_has_the_shape_clients_read() {
        let json = serde_json::to_value(message()).unwrap();
        assert_eq!(json["created_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["sender"]["role"], "agent");
        assert_eq!(json["source"], "agent");
        assert_eq!(json["offset"], 7);
    }

    #[test]
    fn an_unknown_role_is_malformed() {
        let mut m = pb::Message::from(&message());
        m.sender.as_mut().unwrap().role = "admin".into();
        assert_eq!(Message::try_from(m), Err(Malformed("sender role")));
    }

    #[test]
    fn statuses_only_move_forward() {
        assert!(DeliveryStatus::Read.advances(DeliveryStatus::Delivered));
        assert!(!DeliveryStatus::Delivered.advances(DeliveryStatus::Read));
        assert!(!DeliveryStatus::Read.advances(DeliveryStatus::Read));
    }
}
