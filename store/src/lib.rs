//! Where conversations and messages live.
//!
//! - [`Store`]: the one interface the workers write through; [`ReadStore`],
//!   the part of it edges get (reads only). [`open`]: either store, from its
//!   URL (`sqlite:<path>` or `postgres://…`). Their schemas are in
//!   `migrations/` at the repository's root.
//! - [`sqlite`]: the embedded store of `switchboard dev`.
//! - [`postgres`]: the shared store of a deployment, written by many processes.
//! - [`sync`]: the tenants' outboxes of sync changes (point-of-sale sync clients).
//! - [`whatsapp`]: the outbox of messages sent through the WhatsApp Graph API.
//! - [`inbox`]: who handles a conversation and in what state (assignment,
//!   status), read cursors, the agents seen.
//! - `append`: a batch of messages in a handful of statements, for both stores,
//!   or in one round trip (SQLite: one multi-statement string; PostgreSQL:
//!   one statement).
//! - [`partitions`]: the epochs that fence a partition's old owner out.
//!
//! The store is the sequencer: a message's offset is assigned in the same
//! transaction that stores it, from its conversation's `last_offset`, so
//! offsets start at 1 and have no gaps whoever writes.

mod append;
pub mod inbox;
pub mod partitions;
pub mod postgres;
pub mod sqlite;
pub mod sync;
pub mod whatsapp;

use async_trait::async_trait;
use switchboard_proto::model::{
    Channel, Conversation, ConversationStatus, Customer, DeliveryStatus, Message, Role, Sender, Source,
    StatusUpdate, Timestamp,
};
use uuid::Uuid;

pub use inbox::{AgentRecord, AssigneeFilter, Assignment, Handled};
pub use partitions::{Fence, PartitionStore};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use sync::{Change, Confirm, NewChange, SyncReads, SyncStore};
pub use whatsapp::{OutboxClaim, WhatsappStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conversation {0} not found")]
    ConversationNotFound(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database holds an unreadable value in {0}")]
    Corrupt(&'static str),
    #[error("a store URL starts with sqlite: or postgres://, not {0:?}")]
    UnknownUrl(String),
    #[error("partition {partition} of {kind} has a newer owner")]
    Fenced { kind: String, partition: u32 },
    /// Another agent holds the conversation a claim asked for.
    #[error("{0}")]
    Conflict(String),
}

/// Opens the store a URL names: `sqlite:<path>` (the file is created when
/// missing) or `postgres://…`; either is migrated before it is returned.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        return Ok(std::sync::Arc::new(SqliteStore::open(std::path::Path::new(path)).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(PgStore::connect(url).await?));
    }
    // The scheme only: the rest may hold a password.
    Err(StoreError::UnknownUrl(url.split(':').next().unwrap_or_default().to_owned()))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct NewConversation {
    pub id: String,
    pub channel: Channel,
    pub customer: Customer,
    pub at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: Uuid,
    pub conversation_id: String,
    pub sender: Sender,
    pub text: String,
    pub client_msg_id: Option<String>,
    pub source: Source,
    pub created_at: Timestamp,
    /// What a non-text message carries (`Message::content`).
    pub content: Option<serde_json::Value>,
    /// Create the conversation for this customer when it does not exist.
    pub create_for: Option<Customer>,
    /// A staff-only note.
    pub private: bool,
}

/// What storing a message did.
#[derive(Clone, Debug)]
pub struct Appended {
    pub message: Message,
    /// False when the message was already stored (same id or client_msg_id).
    pub created: bool,
    /// The conversation afterwards, with this message as its last.
    pub conversation: Conversation,
    pub conversation_created: bool,
    /// A customer's message reopened the closed conversation.
    pub reopened: bool,
}

impl Appended {
    /// `new` stored at `offset` in `conversation` (as read before the insert):
    /// what both stores answer without reading the conversation again.
    fn inserted(
        new: &NewMessage,
        offset: u64,
        mut conversation: Conversation,
        conversation_created: bool,
        reopened: bool,
    ) -> Self {
        let message = Message {
            id: new.id,
            conversation_id: new.conversation_id.clone(),
            offset,
            sender: new.sender.clone(),
            text: new.text.clone(),
            client_msg_id: new.client_msg_id.clone(),
            source: new.source,
            created_at: new.created_at,
            content: new.content.clone(),
            private: new.private,
        };
        conversation.updated_at = new.created_at;
        conversation.last_message = Some(message.clone());
        Self { message, created: true, conversation, conversation_created, reopened }
    }
}

impl NewMessage {
    /// The conversation to create when the message's does not exist yet.
    fn conversation_to_create(&self) -> Option<NewConversation> {
        let customer = self.create_for.clone()?;
        Some(NewConversation {
            id: self.conversation_id.clone(),
            channel: Channel::Web,
            customer,
            at: self.created_at,
        })
    }

    /// A customer writing into a closed conversation reopens it.
    fn reopens(&self) -> bool {
        self.sender.role == Role::Customer
    }
}

#[derive(Clone, Debug)]
pub struct StatusChange {
    pub update: StatusUpdate,
    /// False when the status would have moved backwards (or stayed put).
    pub changed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct InboxFilter {
    pub channel: Option<Channel>,
    pub phone: Option<String>,
    pub status: Option<ConversationStatus>,
    pub customer_id: Option<String>,
    pub assignee: Option<AssigneeFilter>,
    /// Count each conversation's `unread` for this user.
    pub reader: Option<String>,
    pub limit: u32,
}

/// A bot reply waiting for its user to connect.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedBotReply {
    pub id: String,
    pub phone: String,
    pub text: String,
    pub at: Timestamp,
    /// Not delivered after this; dropped when next looked at.
    pub expires_at: Timestamp,
}

/// What an edge may do with the store: read. Everything that changes it goes
/// through a command to a worker, which holds the whole [`Store`].
#[async_trait]
pub trait ReadStore: SyncReads + Send + Sync + 'static {
    async fn conversation(&self, id: &str) -> Result<Option<Conversation>>;
    /// Most recently active first.
    async fn list_conversations(&self, filter: &InboxFilter) -> Result<Vec<Conversation>>;
    /// Messages with offset > `after`, ascending, at most `limit`.
    async fn messages_after(&self, conversation_id: &str, after: u64, limit: u32) -> Result<Vec<Message>>;
    /// The newest `limit` messages, ascending.
    async fn latest_messages(&self, conversation_id: &str, limit: u32) -> Result<Vec<Message>>;
    async fn message(&self, id: Uuid) -> Result<Option<Message>>;
    /// Every agent seen, by id.
    async fn agents(&self) -> Result<Vec<AgentRecord>>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;
}

/// The whole store, for workers.
#[async_trait]
pub trait Store: ReadStore + SyncStore + WhatsappStore + PartitionStore {
    /// Creates it, or returns the existing one (`false`) when the id is taken.
    async fn create_conversation(&self, new: NewConversation) -> Result<(Conversation, bool)>;
    /// Stores one message with the next offset, idempotently: a batch of one,
    /// outside any partition.
    async fn append_message(&self, new: NewMessage) -> Result<Appended> {
        let mut outcomes = self.append_messages(std::slice::from_ref(&new), &Fence::none()).await?;
        outcomes.pop().unwrap_or(Err(StoreError::Corrupt("a batch of one answered nothing")))
    }
    /// Stores a batch in one transaction, in order; a message whose
    /// conversation is missing gets its own `ConversationNotFound` and does
    /// not stop the others. `Err` only when the transaction itself failed
    /// (then nothing of the batch was stored), [`StoreError::Fenced`] among
    /// them when a partition of `fence` has a newer owner.
    async fn append_messages(&self, batch: &[NewMessage], fence: &Fence) -> Result<Vec<Result<Appended>>>;
    /// Moves a message's status forward; `None` when the message is unknown.
    async fn set_status(
        &self,
        message_id: Uuid,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<Option<StatusChange>>;
    async fn queue_bot_reply(&self, reply: QueuedBotReply) -> Result<()>;
    /// Removes the replies queued for a phone and returns those not expired
    /// at `now`, oldest first.
    async fn take_bot_replies(&self, phone: &str, now: Timestamp) -> Result<Vec<QueuedBotReply>>;
    /// True when this call removed it (it was still queued).
    async fn remove_bot_reply(&self, id: &str) -> Result<bool>;
    /// Changes who handles a conversation; [`StoreError::Conflict`] when a
    /// claim finds another agent holding it.
    async fn assign(&self, conversation_id: &str, assignment: Assignment, at: Timestamp) -> Result<Handled>;
    async fn set_conversation_status(
        &self,
        conversation_id: &str,
        status: ConversationStatus,
        at: Timestamp,
    ) -> Result<Handled>;
    /// Moves `reader`'s read cursor in the message's conversation up to it
    /// (never back); false when the message is unknown.
    async fn read_up_to(&self, message_id: Uuid, reader: &str) -> Result<bool>;
    /// Remembers an agent that connected.
    async fn agent_seen(&self, id: &str, name: &str, at: Timestamp) -> Result<()>;
}
