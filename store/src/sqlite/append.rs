//! The statements of a batch append (see [`crate::append`]) on SQLite, where
//! `BEGIN IMMEDIATE` already serialises writers; and the whole append in one
//! round trip to SQLite's thread ([`at_once`]).

use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, QueryBuilder, Row, Sqlite, SqliteConnection};
use switchboard_proto::model::{Conversation, Message, Timestamp};

use super::{
    INSERT_CONVERSATIONS, MESSAGE_COLUMNS, conversation_from_row, conversation_in, insert_conversation,
    message_from_row,
};
use crate::append::{Appender, AtOnce, Bump, Bumped, Group};
use crate::{Fence, NewConversation, NewMessage, Result};

const INSERT_MESSAGES: &str = "INSERT INTO messages (conversation_id, seq, id, sender_id, sender_role, \
     sender_name, text, client_msg_id, source, created_at, content, private) ";

/// The batch in one multi-statement string, so SQLite's thread is woken once
/// per batch rather than once per statement: `BEGIN IMMEDIATE`, the fence's
/// state, the missing conversations created, the messages inserted at their
/// conversations' offsets, the offsets bumped, `COMMIT`. Each write is
/// guarded by the fence, so a fenced batch writes nothing. On an error (a
/// message stored before breaks a unique index) the transaction is left
/// open for the caller to roll back.
pub(super) async fn at_once(
    conn: &mut SqliteConnection,
    batch: &[NewMessage],
    groups: &[Group<'_>],
    fence: &Fence,
) -> Result<AtOnce> {
    let mut query = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; SELECT ");
    push_fence_held(&mut query, fence);
    query.push(" AS fence_held;");
    let creators: Vec<NewConversation> = groups.iter().filter_map(|g| g.creator(batch)).collect();
    if !creators.is_empty() {
        query.push(" ").push(INSERT_CONVERSATIONS).push(
            " SELECT column1, column2, 'open', column3, column4, column5, column6, column7, column7 FROM (",
        );
        query.push_values(&creators, |mut row, new| {
            row.push_bind(new.id.clone())
                .push_bind(new.channel.as_str())
                .push_bind(new.customer.id.clone())
                .push_bind(new.customer.name.clone())
                .push_bind(new.customer.phone.clone())
                .push_bind(new.customer.email.clone())
                .push_bind(new.at.0);
        });
        // The WHERE tells SQLite's parser that ON CONFLICT is the upsert's.
        query.push(") WHERE ");
        push_fence_held(&mut query, fence);
        query.push(" ON CONFLICT (id) DO NOTHING RETURNING id AS created_id;");
    }
    // Each message at its conversation's last offset plus its place in its group.
    let places: Vec<(usize, u64)> =
        groups.iter().flat_map(|g| g.indices.iter().enumerate().map(|(n, &i)| (i, n as u64 + 1))).collect();
    query.push(INSERT_MESSAGES).push(
        "SELECT v.column1, c.last_offset + v.column2, v.column3, v.column4, v.column5, v.column6, \
         v.column7, v.column8, v.column9, v.column10, v.column11, v.column12 FROM (",
    );
    query.push_values(&places, |mut row, &(i, place)| push_message(&mut row, &batch[i], place));
    query.push(") AS v JOIN conversations c ON c.id = v.column1 WHERE ");
    push_fence_held(&mut query, fence);
    query.push("; ");
    let bumps: Vec<Bump> = groups.iter().map(|g| g.bump(batch)).collect();
    push_bump(&mut query, &bumps);
    query.push(" AND ");
    push_fence_held(&mut query, fence);
    query.push(BUMP_RETURNING).push("; COMMIT");
    let mut stored = AtOnce { fence_held: false, created: Vec::new(), bumped: Vec::new() };
    for row in query.build().fetch_all(&mut *conn).await? {
        match row.columns().first().map(|c| c.name()) {
            Some("fence_held") => stored.fence_held = row.try_get("fence_held")?,
            Some("created_id") => stored.created.push(row.try_get("created_id")?),
            _ => stored.bumped.push(bumped_from_row(&row)?),
        }
    }
    Ok(stored)
}

/// True while every partition of `fence` is at the epoch its owner claimed
/// (see [`crate::partitions`]).
fn push_fence_held(query: &mut QueryBuilder<Sqlite>, fence: &Fence) {
    if fence.held.is_empty() {
        query.push("1");
        return;
    }
    // Terms, not `IN (VALUES ...)`, which SQLite builds a temporary index for each time.
    query.push("(SELECT count(*) FROM partition_epochs WHERE kind = ").push_bind(fence.kind).push(" AND (");
    for (n, &(partition, epoch)) in fence.held.iter().enumerate() {
        query.push(if n == 0 { "(" } else { " OR (" });
        query.push("partition_id = ").push_bind(i64::from(partition));
        query.push(" AND epoch = ").push_bind(epoch as i64).push(")");
    }
    query.push(")) = ").push(fence.held.len());
}

/// `UPDATE ... FROM (VALUES ...)`: SQLite names the columns of a `VALUES`
/// table `column1`, `column2`, ... The right-hand sides read the row as it
/// was, so the status test sees the status before the reopen. Ends in its
/// WHERE clause, for the caller to extend.
fn push_bump(query: &mut QueryBuilder<Sqlite>, bumps: &[Bump<'_>]) {
    query.push(
        "UPDATE conversations SET last_offset = last_offset + v.column2, updated_at = v.column3, \
         status_changed_at = CASE WHEN v.column4 AND status = 'closed' THEN v.column3 \
         ELSE status_changed_at END, \
         status = CASE WHEN v.column4 AND status = 'closed' THEN 'open' ELSE status END FROM (",
    );
    query.push_values(bumps, |mut row, bump| {
        row.push_bind(bump.conversation_id)
            .push_bind(bump.count as i64)
            .push_bind(bump.at.0)
            .push_bind(bump.reopen);
    });
    query.push(") AS v WHERE conversations.id = v.column1");
}

const BUMP_RETURNING: &str = " RETURNING id, channel, status, customer_id, customer_name, customer_phone, \
     customer_email, assignee, assignee_name, created_at, updated_at, last_offset, status_changed_at, \
     NULL AS m_id";

fn bumped_from_row(row: &SqliteRow) -> Result<Bumped> {
    let last_offset: i64 = row.try_get("last_offset")?;
    Ok(Bumped {
        conversation: conversation_from_row(row)?,
        last_offset: last_offset as u64,
        status_changed_at: Timestamp(row.try_get("status_changed_at")?),
    })
}

/// A message's row, `second` in the place of its offset.
fn push_message(row: &mut Separated<'_, Sqlite, &'static str>, new: &NewMessage, second: u64) {
    row.push_bind(new.conversation_id.clone())
        .push_bind(second as i64)
        .push_bind(new.id.to_string())
        .push_bind(new.sender.id.clone())
        .push_bind(new.sender.role.as_str())
        .push_bind(new.sender.name.clone())
        .push_bind(new.text.clone())
        .push_bind(new.client_msg_id.clone())
        .push_bind(new.source.as_str())
        .push_bind(new.created_at.0)
        .push_bind(new.content.as_ref().map(|c| c.to_string()))
        .push_bind(new.private);
}

impl Appender for SqliteConnection {
    async fn lock(&mut self, _: &[&str], fence: &Fence) -> Result<()> {
        crate::partitions::check(self, fence).await
    }

    /// One statement: each term of the `OR` is answered by a unique index.
    async fn stored_already(&mut self, batch: &[NewMessage]) -> Result<Vec<Message>> {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "SELECT conversation_id, {MESSAGE_COLUMNS} FROM messages WHERE id IN ("
        ));
        let mut ids = query.separated(", ");
        for new in batch {
            ids.push_bind(new.id.to_string());
        }
        query.push(")");
        for new in batch.iter().filter(|n| n.client_msg_id.is_some()) {
            query.push(" OR (conversation_id = ").push_bind(new.conversation_id.clone());
            query.push(" AND sender_id = ").push_bind(new.sender.id.clone());
            query.push(" AND client_msg_id = ").push_bind(new.client_msg_id.clone()).push(")");
        }
        let rows = query.build().fetch_all(&mut *self).await?;
        rows.iter()
            .map(|row| {
                let conversation_id: String = row.try_get("conversation_id")?;
                message_from_row(row, "", &conversation_id)
            })
            .collect()
    }

    async fn bump_offsets(&mut self, bumps: &[Bump<'_>]) -> Result<Vec<Bumped>> {
        if bumps.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Sqlite>::new("");
        push_bump(&mut query, bumps);
        query.push(BUMP_RETURNING);
        query.build().fetch_all(&mut *self).await?.iter().map(bumped_from_row).collect()
    }

    async fn create_conversation(&mut self, new: &NewConversation) -> Result<bool> {
        insert_conversation(self, new).await
    }

    async fn insert_all(&mut self, batch: &[NewMessage], rows: &[(usize, u64)]) -> Result<()> {
        let mut query = QueryBuilder::<Sqlite>::new(INSERT_MESSAGES);
        query.push_values(rows, |mut row, &(i, offset)| push_message(&mut row, &batch[i], offset));
        query.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        conversation_in(self, id).await
    }
}
