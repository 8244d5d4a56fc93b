//! The statements of a batch append (see [`crate::append`]) on PostgreSQL,
//! where several workers write at once: conversation rows are locked in id
//! order, so two batches sharing conversations wait for each other rather
//! than deadlock.

use sqlx::{PgConnection, Row};
use switchboard_proto::model::{Conversation, Message};

use super::{
    conversation_from_row, conversation_in, from_time, insert_conversation, located_message_from_row, to_time,
};
use crate::append::{Appender, Bump, Bumped};
use crate::{Fence, NewConversation, NewMessage, Result};

impl Appender for PgConnection {
    /// One statement: the conversations locked (in id order, so two batches
    /// wait for each other rather than deadlock) and the fence's epochs read
    /// under a share lock (see [`crate::partitions`]); the count of locked
    /// rows joins them so that both always run.
    async fn lock(&mut self, conversation_ids: &[&str], fence: &Fence) -> Result<()> {
        let rows: Vec<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "WITH locked AS (SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE) \
             SELECT e.partition_id, e.epoch FROM (SELECT count(*) FROM locked) l LEFT JOIN \
             (SELECT partition_id::bigint, epoch FROM partition_epochs \
              WHERE kind = $2 AND partition_id = ANY($3::int[]) FOR SHARE) e ON true",
        )
        .bind(conversation_ids)
        .bind(fence.kind)
        .bind(crate::partitions::partition_ids(fence).iter().map(|&p| p as i32).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await?;
        let current: Vec<(i64, i64)> = rows.into_iter().filter_map(|(p, e)| Some((p?, e?))).collect();
        crate::partitions::verify(fence, &current)
    }

    /// One statement whose text never changes (so it stays prepared). The
    /// lateral join makes each key an index lookup whatever the planner guesses
    /// of the array's length (a join would scan the table).
    async fn stored_already(&mut self, batch: &[NewMessage]) -> Result<Vec<Message>> {
        let keyed: Vec<&NewMessage> = batch.iter().filter(|n| n.client_msg_id.is_some()).collect();
        let rows = sqlx::query(concat!(
            "SELECT conversation_id, ",
            message_columns!(),
            " FROM messages WHERE id = ANY($1) UNION SELECT m.conversation_id, ",
            "m.id, m.seq, m.sender_id, m.sender_role, m.sender_name, m.text, m.client_msg_id, m.source, \
             m.created_at, m.content, m.private \
             FROM UNNEST($2::text[], $3::text[], $4::text[]) AS k (conversation_id, sender_id, client_msg_id) \
             CROSS JOIN LATERAL (SELECT * FROM messages WHERE conversation_id = k.conversation_id \
             AND sender_id = k.sender_id AND client_msg_id = k.client_msg_id) m"
        ))
        .bind(batch.iter().map(|n| n.id).collect::<Vec<_>>())
        .bind(keyed.iter().map(|n| n.conversation_id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|n| n.sender.id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|n| n.client_msg_id.as_deref()).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await?;
        rows.iter().map(located_message_from_row).collect()
    }

    /// One statement whose text never changes: the counts travel as arrays.
    /// The right-hand sides read the row as it was, so the status test sees
    /// the status before the reopen.
    async fn bump_offsets(&mut self, bumps: &[Bump<'_>]) -> Result<Vec<Bumped>> {
        if bumps.is_empty() {
            return Ok(Vec::new());
        }
        let mut at = Vec::with_capacity(bumps.len());
        for bump in bumps {
            at.push(to_time(bump.at)?);
        }
        let rows = sqlx::query(
            "UPDATE conversations c SET last_offset = c.last_offset + v.n, updated_at = v.at, \
             status_changed_at = CASE WHEN v.reopen AND c.status = 'closed' THEN v.at \
             ELSE c.status_changed_at END, \
             status = CASE WHEN v.reopen AND c.status = 'closed' THEN 'open' ELSE c.status END \
             FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::bool[]) AS v (id, n, at, reopen) \
             WHERE c.id = v.id \
             RETURNING c.id, c.channel, c.status, c.customer_id, c.customer_name, c.customer_phone, \
             c.customer_email, c.assignee, c.assignee_name, c.created_at, c.updated_at, c.last_offset, c.status_changed_at, \
             NULL::uuid AS m_id",
        )
        .bind(bumps.iter().map(|b| b.conversation_id).collect::<Vec<_>>())
        .bind(bumps.iter().map(|b| b.count as i64).collect::<Vec<_>>())
        .bind(at)
        .bind(bumps.iter().map(|b| b.reopen).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await?;
        rows.iter()
            .map(|row| {
                let last_offset: i64 = row.try_get("last_offset")?;
                Ok(Bumped {
                    conversation: conversation_from_row(row)?,
                    last_offset: last_offset as u64,
                    status_changed_at: from_time(row.try_get("status_changed_at")?),
                })
            })
            .collect()
    }

    async fn create_conversation(&mut self, new: &NewConversation) -> Result<bool> {
        insert_conversation(self, new).await
    }

    /// One statement whose text never changes: the rows travel as arrays.
    async fn insert_all(&mut self, batch: &[NewMessage], rows: &[(usize, u64)]) -> Result<()> {
        let new = |&(i, _): &(usize, u64)| &batch[i];
        let mut created_at = Vec::with_capacity(rows.len());
        for row in rows {
            created_at.push(to_time(new(row).created_at)?);
        }
        sqlx::query(
            "INSERT INTO messages (conversation_id, seq, id, sender_id, sender_role, sender_name, text, \
             client_msg_id, source, created_at, content, private) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::bool[])",
        )
        .bind(rows.iter().map(|r| new(r).conversation_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|&(_, offset)| offset as i64).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).sender.id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).sender.role.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).sender.name.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).text.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).client_msg_id.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).source.as_str()).collect::<Vec<_>>())
        .bind(created_at)
        .bind(rows.iter().map(|r| new(r).content.as_ref().map(|c| c.to_string())).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| new(r).private).collect::<Vec<_>>())
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        conversation_in(self, id).await
    }
}
