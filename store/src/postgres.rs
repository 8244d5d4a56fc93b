//! The shared store: one PostgreSQL database written by many workers in many processes.
//!
//! Appends serialise per conversation on the conversation's row lock, so offsets stay
//! gap-free and duplicate checks stay exact however many processes write. The statements
//! of a batch append are in [`append`]; everything else is here.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Our transactions never wait on their client: one idle this long belongs to
/// a frozen or stuck process, and is ended so its locks (a partition's epoch
/// held for a batch) do not keep the partition's next owner out.
const IDLE_IN_TRANSACTION: &str = "5s";

/// Per process: the server's connection limit is shared by every worker and edge.
const MAX_CONNECTIONS: u32 = 16;

// Macros rather than consts so that `concat!` keeps every query a static string.
macro_rules! message_columns {
    () => {
        "id, seq, sender_id, sender_role, sender_name, text, client_msg_id, source, created_at, content, private"
    };
}

macro_rules! conversation_select {
    () => {
        "SELECT c.id, c.channel, c.status, c.customer_id, c.customer_name, c.customer_phone, \
         c.customer_email, c.assignee, c.assignee_name, c.created_at, c.updated_at, \
         m.id AS m_id, m.seq AS m_seq, m.sender_id AS m_sender_id, m.sender_role AS m_sender_role, \
         m.sender_name AS m_sender_name, m.text AS m_text, m.client_msg_id AS m_client_msg_id, \
         m.source AS m_source, m.created_at AS m_created_at, m.content AS m_content, m.private AS m_private \
         FROM conversations c \
         LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_offset "
    };
}

// After the macros, which they use.
mod append;
mod inbox;

/// How long a statement waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url.parse()?).await
    }

    /// Connects and migrates; safe to run from many processes at once, as the
    /// migrator takes an advisory lock.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // Short: during an outage, callers are told so in seconds
            // (readiness, `unavailable`) rather than left waiting.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]))
            .await?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Database(e.into()))?;
        Ok(Self { pool })
    }

    /// Runs `work` in a transaction, committed when it succeeds and rolled back
    /// at once when it fails: a dropped transaction is only rolled back when its
    /// connection is next used, and would hold its row locks until then.
    pub(crate) async fn write<T>(&self, work: impl AsyncFnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        let mut tx = self.pool.begin().await?;
        match work(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // The work's error says what went wrong; a failed rollback only
                // means the connection is gone, which ends the transaction too.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

fn parse<T>(value: &str, parse: fn(&str) -> Option<T>, column: &'static str) -> Result<T> {
    parse(value).ok_or(StoreError::Corrupt(column))
}

fn to_time(at: Timestamp) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(at.0).ok_or_else(|| {
        StoreError::Database(sqlx::Error::Encode(format!("timestamp {} ms is out of range", at.0).into()))
    })
}

fn from_time(at: DateTime<Utc>) -> Timestamp {
    Timestamp(at.timestamp_millis())
}

fn offset_from(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt("messages.seq"))
}

fn message_from_row(row: &PgRow, prefix: &str, conversation_id: &str) -> Result<Message> {
    let col = |name: &str| format!("{prefix}{name}");
    Ok(Message {
        id: row.try_get(col("id").as_str())?,
        conversation_id: conversation_id.to_owned(),
        offset: offset_from(row.try_get(col("seq").as_str())?)?,
        sender: Sender {
            id: row.try_get(col("sender_id").as_str())?,
            role: parse(row.try_get(col("sender_role").as_str())?, Role::parse, "messages.sender_role")?,
            name: row.try_get(col("sender_name").as_str())?,
        },
        text: row.try_get(col("text").as_str())?,
        client_msg_id: row.try_get(col("client_msg_id").as_str())?,
        source: parse(row.try_get(col("source").as_str())?, Source::parse, "messages.source")?,
        created_at: from_time(row.try_get(col("created_at").as_str())?),
        content: crate::sqlite::content_from(row.try_get(col("content").as_str())?)?,
        private: row.try_get(col("private").as_str())?,
    })
}

/// For rows that carry their own `conversation_id` column.
fn located_message_from_row(row: &PgRow) -> Result<Message> {
    let conversation_id: &str = row.try_get("conversation_id")?;
    message_from_row(row, "", conversation_id)
}

fn conversation_from_row(row: &PgRow) -> Result<Conversation> {
    let id: String = row.try_get("id")?;
    let last_id: Option<Uuid> = row.try_get("m_id")?;
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
        unread: match row.try_column("unread") {
            Ok(_) => row.try_get::<Option<i64>, _>("unread")?.map(|n| n.max(0) as u64),
            Err(_) => None,
        },
        created_at: from_time(row.try_get("created_at")?),
        updated_at: from_time(row.try_get("updated_at")?),
        id,
    })
}

fn bot_reply_from_row(row: &PgRow) -> Result<QueuedBotReply> {
    Ok(QueuedBotReply {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
        text: row.try_get("text")?,
        at: from_time(row.try_get("created_at")?),
        expires_at: from_time(row.try_get("expires_at")?),
    })
}

async fn insert_conversation(conn: &mut PgConnection, new: &NewConversation) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO conversations (id, channel, status, customer_id, customer_name, customer_phone, \
         customer_email, created_at, updated_at) VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&new.id)
    .bind(new.channel.as_str())
    .bind(&new.customer.id)
    .bind(&new.customer.name)
    .bind(&new.customer.phone)
    .bind(&new.customer.email)
    .bind(to_time(new.at)?)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

async fn conversation_in(conn: &mut PgConnection, id: &str) -> Result<Option<Conversation>> {
    let row =
        sqlx::query(concat!(conversation_select!(), "WHERE c.id = $1")).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(conversation_from_row).transpose()
}

async fn set_status_in(
    conn: &mut PgConnection,
    message_id: Uuid,
    status: DeliveryStatus,
    at: Timestamp,
) -> Result<Option<StatusChange>> {
    // Locked, so that two concurrent updates cannot both read the old status and
    // the later writer move it backwards (`delivered` over `read`).
    let row = sqlx::query(
        "SELECT conversation_id, status, COALESCE(status_at, created_at) AS since, private FROM messages \
         WHERE id = $1 FOR UPDATE",
    )
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let conversation_id: String = row.try_get("conversation_id")?;
    let private: bool = row.try_get("private")?;
    let current = parse(row.try_get("status")?, DeliveryStatus::parse, "messages.status")?;
    if !status.advances(current) {
        let timestamp = from_time(row.try_get("since")?);
        let update =
            StatusUpdate { message_id, conversation_id, status: current, timestamp, error: None, private };
        return Ok(Some(StatusChange { update, changed: false }));
    }
    sqlx::query("UPDATE messages SET status = $2, status_at = $3 WHERE id = $1")
        .bind(message_id)
        .bind(status.as_str())
        .bind(to_time(at)?)
        .execute(conn)
        .await?;
    let update = StatusUpdate { message_id, conversation_id, status, timestamp: at, error: None, private };
    Ok(Some(StatusChange { update, changed: true }))
}

#[async_trait]
impl Store for PgStore {
    async fn create_conversation(&self, new: NewConversation) -> Result<(Conversation, bool)> {
        self.write(async |conn| {
            let created = insert_conversation(conn, &new).await?;
            let conversation = conversation_in(conn, &new.id).await?;
            Ok((conversation.ok_or_else(|| StoreError::ConversationNotFound(new.id.clone()))?, created))
        })
        .await
    }

    /// In one statement when it can; the careful way when the batch holds a
    /// copy, or the statement failed (a message stored before breaks a
    /// unique index, and the careful way finds it) or was fenced (nothing was
    /// written, and the careful way names the partition that moved).
    async fn append_messages(&self, batch: &[NewMessage], fence: &Fence) -> Result<Vec<Result<Appended>>> {
        if let Some(groups) = crate::append::distinct_groups(batch)
            && let Ok(stored) = append::at_once(&mut *self.pool.acquire().await?, batch, &groups, fence).await
            && stored.fence_held
        {
            return Ok(crate::append::outcomes_at_once(batch, &groups, stored));
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
        .bind(to_time(reply.at)?)
        .bind(to_time(reply.expires_at)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_bot_replies(&self, phone: &str, now: Timestamp) -> Result<Vec<QueuedBotReply>> {
        // One statement: concurrent takers each get a row at most once.
        let rows = sqlx::query(
            "DELETE FROM bot_replies WHERE phone = $1 RETURNING id, phone, text, created_at, expires_at",
        )
        .bind(phone)
        .fetch_all(&self.pool)
        .await?;
        let mut replies = rows.iter().map(bot_reply_from_row).collect::<Result<Vec<_>>>()?;
        replies.retain(|r| r.expires_at > now);
        // RETURNING has no order of its own.
        replies.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        Ok(replies)
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

    async fn remove_bot_reply(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM bot_replies WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl PartitionStore for PgStore {
    async fn claim_partitions(&self, kind: &str, partitions: &[u32], owner: &str) -> Result<Vec<(u32, u64)>> {
        let ids: Vec<i32> = partitions.iter().map(|&p| p as i32).collect();
        let rows = self
            .write(async |conn| {
                sqlx::query(
                    "INSERT INTO partition_epochs (kind, partition_id, epoch, owner) \
                     SELECT $1, p, 0, $2 FROM unnest($3::int[]) AS p ON CONFLICT DO NOTHING",
                )
                .bind(kind)
                .bind(owner)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
                // SKIP LOCKED: a row held FOR SHARE is a batch of the previous
                // owner in flight; the other partitions need not wait for it.
                Ok(sqlx::query_as(
                    "UPDATE partition_epochs SET epoch = epoch + 1, owner = $2 \
                     WHERE kind = $1 AND partition_id IN (SELECT partition_id FROM partition_epochs \
                       WHERE kind = $1 AND partition_id = ANY($3::int[]) FOR UPDATE SKIP LOCKED) \
                     RETURNING partition_id::bigint, epoch",
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

/// Held shared until the batch commits, so a claim waits for it.
impl Epochs for PgConnection {
    async fn epochs(&mut self, kind: &str, partitions: &[i64]) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT partition_id::bigint, epoch FROM partition_epochs \
             WHERE kind = $1 AND partition_id = ANY($2::int[]) FOR SHARE",
        )
        .bind(kind)
        .bind(partitions.iter().map(|&p| p as i32).collect::<Vec<_>>())
        .fetch_all(self)
        .await?)
    }
}

#[async_trait]
impl ReadStore for PgStore {
    async fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        let mut conn = self.pool.acquire().await?;
        conversation_in(&mut conn, id).await
    }

    async fn list_conversations(&self, filter: &InboxFilter) -> Result<Vec<Conversation>> {
        // $6: 0 any assignee, 1 none, 2 the one in $7; $8 the reader whose unread is counted.
        let (by_assignee, assignee) = match &filter.assignee {
            None => (0, None),
            Some(AssigneeFilter::Unassigned) => (1, None),
            Some(AssigneeFilter::Agent(id)) => (2, Some(id.as_str())),
        };
        let rows = sqlx::query(concat!(
            "SELECT * FROM (",
            conversation_select!(),
            "WHERE ($1::text IS NULL OR c.channel = $1) AND ($2::text IS NULL OR c.customer_phone = $2) \
             AND ($3::text IS NULL OR c.status = $3) AND ($4::text IS NULL OR c.customer_id = $4) \
             AND ($6::int = 0 OR ($6 = 1 AND c.assignee IS NULL) OR ($6 = 2 AND c.assignee = $7::text)) \
             ORDER BY c.updated_at DESC, c.id LIMIT $5) l \
             CROSS JOIN LATERAL (SELECT CASE WHEN $8::text IS NULL THEN NULL ELSE \
             (SELECT count(*) FROM messages u WHERE u.conversation_id = l.id AND u.sender_id <> $8 \
              AND u.seq > COALESCE((SELECT r.seq FROM read_cursors r \
                WHERE r.conversation_id = l.id AND r.user_id = $8), 0)) END AS unread) n \
             ORDER BY l.updated_at DESC, l.id"
        ))
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(conversation_id)
        // Beyond i64 nothing can follow; a cast would wrap to -1 and return everything.
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| message_from_row(r, "", conversation_id)).collect()
    }

    async fn latest_messages(&self, conversation_id: &str, limit: u32) -> Result<Vec<Message>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(conversation_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().rev().map(|r| message_from_row(r, "", conversation_id)).collect()
    }

    async fn message(&self, id: Uuid) -> Result<Option<Message>> {
        let row = sqlx::query(concat!(
            "SELECT conversation_id, ",
            message_columns!(),
            " FROM messages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(located_message_from_row).transpose()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
