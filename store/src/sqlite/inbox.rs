//! The statements of the inbox (see [`crate::inbox`]) on SQLite, where
//! `BEGIN IMMEDIATE` already serialises writers.

use sqlx::{Row, SqliteConnection};
use switchboard_proto::model::{Assignee, Conversation, ConversationStatus, Timestamp};
use uuid::Uuid;

use super::{SqliteStore, conversation_in};
use crate::Result;
use crate::inbox::{AgentRecord, Handling, sql};

impl Handling for SqliteConnection {
    async fn locked(&mut self, id: &str) -> Result<Option<Conversation>> {
        conversation_in(self, id).await
    }

    async fn write_handling(
        &mut self,
        id: &str,
        status: ConversationStatus,
        assignee: Option<&Assignee>,
        newly_assigned: Option<&Assignee>,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(sql::WRITE_HANDLING)
            .bind(id)
            .bind(status.as_str())
            .bind(assignee.map(|a| a.id.as_str()))
            .bind(assignee.map(|a| a.name.as_str()))
            .bind(at.0)
            .execute(&mut *self)
            .await?;
        if let Some(agent) = newly_assigned {
            sqlx::query(sql::ASSIGNED)
                .bind(&agent.id)
                .bind(&agent.name)
                .bind(at.0)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}

impl SqliteStore {
    pub(super) async fn read_up_to_in(&self, message_id: Uuid, reader: &str) -> Result<bool> {
        let moved = sqlx::query(
            "INSERT INTO read_cursors (conversation_id, user_id, seq) \
             SELECT conversation_id, $2, seq FROM messages WHERE id = $1 \
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET seq = max(seq, excluded.seq)",
        )
        .bind(message_id.to_string())
        .bind(reader)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() > 0)
    }

    pub(super) async fn agent_seen_in(&self, id: &str, name: &str, at: Timestamp) -> Result<()> {
        sqlx::query(sql::SEEN).bind(id).bind(name).bind(at.0).execute(&self.pool).await?;
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
                    last_assigned_at: Timestamp(row.try_get("last_assigned_at")?),
                })
            })
            .collect()
    }
}
