//! The statements of a batch append (see [`crate::append`]) on SQLite, where
//! `BEGIN IMMEDIATE` already serialises writers.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use switchboard_proto::model::{Conversation, Message, Timestamp};

use super::{MESSAGE_COLUMNS, conversation_from_row, conversation_in, insert_conversation, message_from_row};
use crate::append::Appender;
use crate::{NewConversation, NewMessage, Result};

impl Appender for SqliteConnection {
    async fn lock(&mut self, _: &[&str]) -> Result<()> {
        Ok(())
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

    async fn bump_offset(
        &mut self,
        conversation_id: &str,
        count: usize,
        at: Timestamp,
    ) -> Result<Option<(Conversation, u64)>> {
        let row = sqlx::query(
            "UPDATE conversations SET last_offset = last_offset + $3, updated_at = $2 WHERE id = $1 \
             RETURNING id, channel, status, customer_id, customer_name, customer_phone, assignee, \
             created_at, updated_at, last_offset, NULL AS m_id",
        )
        .bind(conversation_id)
        .bind(at.0)
        .bind(count as i64)
        .fetch_optional(&mut *self)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let last_offset: i64 = row.try_get("last_offset")?;
        Ok(Some((conversation_from_row(&row)?, last_offset as u64)))
    }

    async fn create_conversation(&mut self, new: &NewConversation) -> Result<bool> {
        insert_conversation(self, new).await
    }

    async fn insert_all(&mut self, batch: &[NewMessage], rows: &[(usize, u64)]) -> Result<()> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (conversation_id, seq, id, sender_id, sender_role, sender_name, text, \
             client_msg_id, source, created_at, content) ",
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
                .push_bind(new.content.as_ref().map(|c| c.to_string()));
        });
        query.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        conversation_in(self, id).await
    }
}
