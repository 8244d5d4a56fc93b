//! The embedded store: one SQLite file in WAL mode. The statements of a batch
//! append are in [`append`], the log's checkpoints in [`checkpoint`];
//! everything else is here.

mod append;
mod checkpoint;
mod inbox;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use switchboard_proto::model::{
    Channel, Conversation, ConversationStatus, Customer, DeliveryStatus, Message, Role, Sender, Source,
    StatusUpdate, Timestamp,
};
use uuid::Uuid;

use crate::inbox::{AgentRecord, AssigneeFilter, Assignment, Handled, assigned, handle, status_set};
use crate::partitions::{Epochs, claimed};
use crate::{
    Appended, Fence, InboxFilter, NewConversation, NewMessage, PartitionStore, QueuedBotReply, ReadStore,
    Result, StatusChange, Store, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

const CONVERSATION_COLUMNS: &str = "c.id, c.channel, c.status, c.customer_id, c.customer_name, \
     c.customer_phone, c.customer_email, c.assignee, c.assignee_name, c.created_at, c.updated_at, \
     m.id AS m_id, m.seq AS m_seq, m.sender_id AS m_sender_id, m.sender_role AS m_sender_role, \
     m.sender_name AS m_sender_name, m.text AS m_text, m.client_msg_id AS m_client_msg_id, \
     m.source AS m_source, m.created_at AS m_created_at, m.content AS m_content, m.private AS m_private";

/// Pages of write-ahead log (about 40 MB) after which the writer checkpoints
/// it itself: the backstop for when [`checkpoint`] cannot finish, under a
/// writer that never pauses.
const CHECKPOINT_PAGES: u32 = 10_000;

#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The one connection batch appends and write transactions go through.
    /// SQLite takes one writer at a time anyway, and a connection drops its
    /// page cache and memory map whenever another connection has written
    /// since its last transaction: a writer that is always the same keeps
    /// both, instead of reading its pages back and remapping the file on
    /// every batch.
    writer: SqlitePool,
    /// Keeps the log's checkpoints running while any clone of the store lives
    /// (a file's store only).
    _checkpoints: Option<Arc<()>>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and migrates it.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Reads through the OS page cache rather than copying pages in
            // per connection: index lookups stay cheap as the file grows far
            // beyond SQLite's own small cache. File-backed, so reclaimable.
            .pragma("mmap_size", "268435456");
        let store = Self::connect(options.clone(), 8).await?;
        // The readers never write, so never checkpoint.
        let writer = options.clone().pragma("wal_autocheckpoint", CHECKPOINT_PAGES.to_string());
        let checkpoints = checkpoint::start(options);
        Ok(Self { writer: pool(writer, 1), _checkpoints: Some(checkpoints), ..store })
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // Each connection to `:memory:` is its own database: keep exactly
        // one, for writes too.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, connections: u32) -> Result<Self> {
        let pool = pool(options, connections);
        // One connection first, alone: switching a new file to WAL while a
        // second connection opens fails with "database is locked" rather
        // than waiting for the busy timeout.
        let mut first = pool.acquire().await?;
        MIGRATOR.run(&mut *first).await.map_err(|e| StoreError::Database(e.into()))?;
        drop(first);
        Ok(Self { writer: pool.clone(), pool, _checkpoints: None })
    }

    /// Runs `work` in a write transaction, committed when it succeeds and
    /// rolled back at once when it fails: SQLite's write lock must not wait
    /// for a dropped transaction to be cleaned up.
    pub(crate) async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        // IMMEDIATE takes the write lock first, so two writers cannot both
        // read the same last_offset.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        match work(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }
}

fn pool(options: SqliteConnectOptions, connections: u32) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(connections)
        // Never closed once open: `:memory:` lives as long as its one connection.
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options)
}

fn parse<T>(value: &str, parse: fn(&str) -> Option<T>, column: &'static str) -> Result<T> {
    parse(value).ok_or(StoreError::Corrupt(column))
}

fn message_from_row(row: &SqliteRow, prefix: &str, conversation_id: &str) -> Result<Message> {
    let col = |name: &str| format!("{prefix}{name}");
    let id: String = row.try_get(col("id").as_str())?;
    let seq: i64 = row.try_get(col("seq").as_str())?;
    Ok(Message {
        id: id.parse().map_err(|_| StoreError::Corrupt("messages.id"))?,
        conversation_id: conversation_id.to_owned(),
        offset: seq as u64,
        sender: Sender {
            id: row.try_get(col("sender_id").as_str())?,
            role: parse(row.try_get(col("sender_role").as_str())?, Role::parse, "messages.sender_role")?,
            name: row.try_get(col("sender_name").as_str())?,
        },
        text: row.try_get(col("text").as_str())?,
        client_msg_id: row.try_get(col("client_msg_id").as_str())?,
        source: parse(row.try_get(col("source").as_str())?, Source::parse, "messages.source")?,
        created_at: Timestamp(row.try_get(col("created_at").as_str())?),
        content: content_from(row.try_get(col("content").as_str())?)?,
        private: row.try_get(col("private").as_str())?,
    })
}

pub(crate) fn content_from(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|_| StoreError::Corrupt("messages.content"))).transpose()
}

fn conversation_from_row(row: &SqliteRow) -> Result<Conversation> {
    let id: String = row.try_get("id")?;
    let last_id: Option<String> = row.try_get("m_id")?;
    let last_message = match last_id {
        Some(_) => Some(message_from_row(row, "m_", &id)?),
        None => None,
    };
    Ok(Conversation {
        channel: parse(row.try_get("channel")?, Channel::parse, "conversations.channel")?,
        status: parse(row.try_get("status")?, ConversationStatus::parse, "conversations.status")?,
        customer: Customer {
            id: row.try_get("customer_id")?,
            name: row.try_get("customer_name")?,
            phone: row.try_get("customer_phone")?,
            email: row.try_get("customer_email")?,
        },
        assignee: crate::inbox::assignee_from(row.try_get("assignee")?, row.try_get("assignee_name")?),
        last_message,
        unread: unread_from(row)?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        id,
    })
}

/// A listing's `unread` column, where it counted one.
fn unread_from(row: &SqliteRow) -> Result<Option<u64>> {
    if row.try_column("unread").is_err() {
        return Ok(None);
    }
    let unread: Option<i64> = row.try_get("unread")?;
    Ok(unread.map(|n| n.max(0) as u64))
}

const MESSAGE_COLUMNS: &str =
    "id, seq, sender_id, sender_role, sender_name, text, client_msg_id, source, created_at, content, private";

/// A new conversation's columns, in the order both inserts give them.
const INSERT_CONVERSATIONS: &str = "INSERT INTO conversations (id, channel, status, customer_id, \
     customer_name, customer_phone, customer_email, created_at, updated_at)";

async fn insert_conversation(conn: &mut SqliteConnection, new: &NewConversation) -> Result<bool> {
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{INSERT_CONVERSATIONS} VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING"
    )))
    .bind(&new.id)
    .bind(new.channel.as_str())
    .bind(&new.customer.id)
    .bind(&new.customer.name)
    .bind(&new.customer.phone)
    .bind(&new.customer.email)
    .bind(new.at.0)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

async fn conversation_in(conn: &mut SqliteConnection, id: &str) -> Result<Option<Conversation>> {
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c \
         LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_offset \
         WHERE c.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(conversation_from_row).transpose()
}

async fn set_status_in(
    conn: &mut SqliteConnection,
    message_id: Uuid,
    status: DeliveryStatus,
    at: Timestamp,
) -> Result<Option<StatusChange>> {
    let row = sqlx::query(
        "SELECT conversation_id, status, status_at, created_at, private FROM messages WHERE id = $1",
    )
    .bind(message_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let conversation_id: String = row.try_get("conversation_id")?;
    let private: bool = row.try_get("private")?;
    let current = parse(row.try_get("status")?, DeliveryStatus::parse, "messages.status")?;
    if !status.advances(current) {
        let since: Option<i64> = row.try_get("status_at")?;
        let timestamp = Timestamp(since.unwrap_or(row.try_get("created_at")?));
        let update =
            StatusUpdate { message_id, conversation_id, status: current, timestamp, error: None, private };
        return Ok(Some(StatusChange { update, changed: false }));
    }
    sqlx::query("UPDATE messages SET status = $2, status_at = $3 WHERE id = $1")
        .bind(message_id.to_string())
        .bind(status.as_str())
        .bind(at.0)
        .execute(&mut *conn)
        .await?;
    let update = StatusUpdate { message_id, conversation_id, status, timestamp: at, error: None, private };
    Ok(Some(StatusChange { update, changed: true }))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_conversation(&self, new: NewConversation) -> Result<(Conversation, bool)> {
        self.write(async |conn| {
            let created = insert_conversation(conn, &new).await?;
            let conversation = conversation_in(conn, &new.id).await?;
            Ok((conversation.ok_or_else(|| StoreError::ConversationNotFound(new.id.clone()))?, created))
        })
        .await
    }

    /// In one round trip when it can; the careful way when the batch holds
    /// a copy, or the round trip failed (a message stored before breaks a
    /// unique index; the careful way finds it).
    async fn append_messages(&self, batch: &[NewMessage], fence: &Fence) -> Result<Vec<Result<Appended>>> {
        if let Some(groups) = crate::append::distinct_groups(batch) {
            let mut conn = self.writer.acquire().await?;
            match append::at_once(&mut conn, batch, &groups, fence).await {
                Ok(stored) if stored.fence_held => {
                    return Ok(crate::append::outcomes_at_once(batch, &groups, stored));
                }
                // Fenced: nothing was written, and the careful way names the partition that moved.
                Ok(_) => {}
                // Nothing of it stays: a failed statement is undone with its
                // transaction (and "no transaction" when BEGIN itself failed).
                Err(_) => drop(sqlx::query("ROLLBACK").execute(&mut *conn).await),
            }
        }
        self.write(async |conn| crate::append::append_batch(conn, batch, fence).await).await
    }

    async fn set_status(
        &self,
        message_id: Uuid,
        status: DeliveryStatus,
        at: Timestamp,
    ) -> Result<Option<StatusChange>> {
        self.write(async |conn| set_status_in(conn, message_id, status, at).await).await
    }

    async fn queue_bot_reply(&self, reply: QueuedBotReply) -> Result<()> {
        sqlx::query(
            "INSERT INTO bot_replies (id, phone, text, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&reply.id)
        .bind(&reply.phone)
        .bind(&reply.text)
        .bind(reply.at.0)
        .bind(reply.expires_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_bot_replies(&self, phone: &str, now: Timestamp) -> Result<Vec<QueuedBotReply>> {
        let rows = sqlx::query(
            "DELETE FROM bot_replies WHERE phone = $1 RETURNING id, phone, text, created_at, expires_at",
        )
        .bind(phone)
        .fetch_all(&self.pool)
        .await?;
        let mut replies = rows
            .iter()
            .map(|r| {
                Ok(QueuedBotReply {
                    id: r.try_get("id")?,
                    phone: r.try_get("phone")?,
                    text: r.try_get("text")?,
                    at: Timestamp(r.try_get("created_at")?),
                    expires_at: Timestamp(r.try_get("expires_at")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        replies.retain(|r| r.expires_at > now);
        replies.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        Ok(replies)
    }

    async fn remove_bot_reply(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM bot_replies WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn assign(&self, conversation_id: &str, assignment: Assignment, at: Timestamp) -> Result<Handled> {
        self.write(async |conn| handle(conn, conversation_id, at, |c| assigned(c, &assignment)).await).await
    }

    async fn set_conversation_status(
        &self,
        conversation_id: &str,
        status: ConversationStatus,
        at: Timestamp,
    ) -> Result<Handled> {
        self.write(async |conn| handle(conn, conversation_id, at, |c| Ok(status_set(c, status))).await).await
    }

    async fn read_up_to(&self, message_id: Uuid, reader: &str) -> Result<bool> {
        self.read_up_to_in(message_id, reader).await
    }

    async fn agent_seen(&self, id: &str, name: &str, at: Timestamp) -> Result<()> {
        self.agent_seen_in(id, name, at).await
    }
}

#[async_trait]
impl PartitionStore for SqliteStore {
    async fn claim_partitions(&self, kind: &str, partitions: &[u32], owner: &str) -> Result<Vec<(u32, u64)>> {
        // One writer at a time: nothing is ever locked by another batch here.
        let ids = serde_json::to_string(partitions).expect("numbers serialise");
        let rows = self
            .write(async |conn| {
                sqlx::query(
                    "INSERT INTO partition_epochs (kind, partition_id, epoch, owner) \
                     SELECT ?1, value, 0, ?2 FROM json_each(?3) WHERE true ON CONFLICT DO NOTHING",
                )
                .bind(kind)
                .bind(owner)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
                Ok(sqlx::query_as(
                    "UPDATE partition_epochs SET epoch = epoch + 1, owner = ?2 \
                     WHERE kind = ?1 AND partition_id IN (SELECT value FROM json_each(?3)) \
                     RETURNING partition_id, epoch",
                )
                .bind(kind)
                .bind(owner)
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?)
            })
            .await?;
        Ok(claimed(rows))
    }
}

/// `BEGIN IMMEDIATE` already keeps every other writer out until the commit.
impl Epochs for SqliteConnection {
    async fn epochs(&mut self, kind: &str, partitions: &[i64]) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT partition_id, epoch FROM partition_epochs WHERE kind = $1")
                .bind(kind)
                .fetch_all(self)
                .await?;
        Ok(rows.into_iter().filter(|(p, _)| partitions.contains(p)).collect())
    }
}

#[async_trait]
impl ReadStore for SqliteStore {
    async fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        let mut conn = self.pool.acquire().await?;
        conversation_in(&mut conn, id).await
    }

    async fn list_conversations(&self, filter: &InboxFilter) -> Result<Vec<Conversation>> {
        // $6: 0 any assignee, 1 none, 2 the one in $7; $8 the reader whose unread is counted.
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS}, CASE WHEN $8 IS NULL THEN NULL ELSE \
             (SELECT count(*) FROM messages u WHERE u.conversation_id = c.id AND u.sender_id <> $8 \
              AND u.seq > COALESCE((SELECT r.seq FROM read_cursors r \
                WHERE r.conversation_id = c.id AND r.user_id = $8), 0)) END AS unread \
             FROM conversations c \
             LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_offset \
             WHERE ($1 IS NULL OR c.channel = $1) AND ($2 IS NULL OR c.customer_phone = $2) \
             AND ($3 IS NULL OR c.status = $3) AND ($4 IS NULL OR c.customer_id = $4) \
             AND ($6 = 0 OR ($6 = 1 AND c.assignee IS NULL) OR ($6 = 2 AND c.assignee = $7)) \
             ORDER BY c.updated_at DESC, c.id LIMIT $5"
        );
        let (by_assignee, assignee) = match &filter.assignee {
            None => (0, None),
            Some(AssigneeFilter::Unassigned) => (1, None),
            Some(AssigneeFilter::Agent(id)) => (2, Some(id.as_str())),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.channel.map(Channel::as_str))
            .bind(&filter.phone)
            .bind(filter.status.map(ConversationStatus::as_str))
            .bind(&filter.customer_id)
            .bind(i64::from(filter.limit))
            .bind(by_assignee)
            .bind(assignee)
            .bind(&filter.reader)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>> {
        self.agents_in().await
    }

    async fn messages_after(&self, conversation_id: &str, after: u64, limit: u32) -> Result<Vec<Message>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        )))
        .bind(conversation_id)
        // Beyond i64 nothing can follow; a cast would wrap to -1 and return everything.
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| message_from_row(r, "", conversation_id)).collect()
    }

    async fn latest_messages(&self, conversation_id: &str, limit: u32) -> Result<Vec<Message>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2"
        )))
        .bind(conversation_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().rev().map(|r| message_from_row(r, "", conversation_id)).collect()
    }

    async fn message(&self, id: Uuid) -> Result<Option<Message>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT conversation_id, {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let conversation_id: String = r.try_get("conversation_id")?;
            message_from_row(&r, "", &conversation_id)
        })
        .transpose()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
