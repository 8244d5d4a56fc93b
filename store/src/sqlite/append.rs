//! The statements of a batch append (see [`crate::append`]) on SQLite, where
//! `BEGIN IMMEDIATE` already serialises writers.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use switchboard_proto::model::{Conversation, Message, Timestamp};

use super::{MESSAGE_COLUMNS, conversation_from_row, conversation_in, insert_conversation, message_from_row};
use crate::append::{Appender, Bump, Bumped};
use crate::{Fence, NewConversation, NewMessage, Result};

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

    /// `UPDATE ... FROM (VALUES ...)`: SQLite names the columns of a
    /// `VALUES` table `column1`, `column2`, ...
    /// The right-hand sides read the row as it was, so the status test sees
    /// the status before the reopen.
    async fn bump_offsets(&mut self, bumps: &[Bump<'_>]) -> Result<Vec<Bumped>> {
        if bumps.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Sqlite>::new(
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
        query.push(
            ") AS v WHERE conversations.id = v.column1 RETURNING id, channel, status, customer_id, \
             customer_name, customer_phone, customer_email, assignee, assignee_name, created_at, updated_at, last_offset, \
             status_changed_at, NULL AS m_id",
        );
        let rows = query.build().fetch_all(&mut *self).await?;
        rows.iter()
            .map(|row| {
                let last_offset: i64 = row.try_get("last_offset")?;
                Ok(Bumped {
                    conversation: conversation_from_row(row)?,
                    last_offset: last_offset as u64,
                    status_changed_at: Timestamp(row.try_get("status_changed_at")?),
                })
            })
            .collect()
    }

    async fn create_conversation(&mut self, new: &NewConversation) -> Result<bool> {
        insert_conversation(self, new).await
    }

    async fn insert_all(&mut self, batch: &[NewMessage], rows: &[(usize, u64)]) -> Result<()> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (conversation_id, seq, id, sender_id, sender_role, sender_name, text, \
             client_msg_id, source, created_at, content, private) ",
        );
        query.push_values(rows, |mut row, &(i, offset)| {
            let new = &batch[i];
            row.push_bind(new.conversation_id.clone())
                .push_bind(offset as i64)
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
        });
        query.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        conversation_in(self, id).await
    }
}
