//! The statements of the inbox (see [`crate::inbox`]) on PostgreSQL, where
//! several workers write at once: a conversation's row is locked before its
//! handling is decided, so of two claims one sees the other's assignee.

use sqlx::{PgConnection, Row};
use switchboard_proto::model::{Assignee, Conversation, ConversationStatus, Timestamp};
use uuid::Uuid;

use super::{PgStore, conversation_from_row, from_time, to_time};
use crate::Result;
use crate::inbox::{AgentRecord, Handling, sql};

impl Handling for PgConnection {
    async fn locked(&mut self, id: &str) -> Result<Option<Conversation>> {
        let row = sqlx::query(concat!(conversation_select!(), "WHERE c.id = $1 FOR UPDATE OF c"))
            .bind(id)
            .fetch_optional(&mut *self)
            .await?;
        row.as_ref().map(conversation_from_row).transpose()
    }

    async fn write_handling(
        &mut self,
        id: &str,
        status: ConversationStatus,
        assignee: Option<&Assignee>,
        newly_assigned: Option<&Assignee>,
        at: Timestamp,
    ) -> Result<()> {
        let at = to_time(at)?;
        sqlx::query(sql::WRITE_HANDLING)
            .bind(id)
            .bind(status.as_str())
            .bind(assignee.map(|a| a.id.as_str()))
            .bind(assignee.map(|a| a.name.as_str()))
            .bind(at)
            .execute(&mut *self)
            .await?;
        if let Some(agent) = newly_assigned {
            sqlx::query(sql::ASSIGNED).bind(&agent.id).bind(&agent.name).bind(at).execute(&mut *self).await?;
        }
        Ok(())
    }
}

impl PgStore {
    pub(super) async fn read_up_to_in(&self, message_id: Uuid, reader: &str) -> Result<bool> {
        let moved = sqlx::query(
            "INSERT INTO read_cursors (conversation_id, user_id, seq) \
             SELECT conversation_id, $2, seq FROM messages WHERE id = $1 \
             ON CONFLICT (conversation_id, user_id) \
             DO UPDATE SET seq = GREATEST(read_cursors.seq, excluded.seq)",
        )
        .bind(message_id)
        .bind(reader)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() > 0)
    }

    pub(super) async fn agent_seen_in(&self, id: &str, name: &str, at: Timestamp) -> Result<()> {
        sqlx::query(sql::SEEN).bind(id).bind(name).bind(to_time(at)?).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn agents_in(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(sql::AGENTS).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let open: i64 = row.try_get("open_assigned")?;
                Ok(AgentRecord {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    open_assigned: open.max(0) as u64,
                    last_assigned_at: from_time(row.try_get("last_assigned_at")?),
                })
            })
            .collect()
    }
}
