//! The statements of the inbox (see [`crate::inbox`]) on SQLite, where
//! `BEGIN IMMEDIATE` already serialises writers.

use sqlx::{Row, SqliteConnection};
use switchboard_proto::model::{Assignee, Conversation, ConversationStatus, Timestamp};
use uuid::Uuid;

use super::{SqliteStore, conversation_in};
use crate::Result;
use crate::inbox::{AgentRecord, Handling};

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
        sqlx::query(
            "UPDATE conversations SET status_changed_at = CASE WHEN status = $2 THEN status_changed_at \
             ELSE $5 END, status = $2, assignee = $3, assignee_name = $4, updated_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(assignee.map(|a| a.id.as_str()))
        .bind(assignee.map(|a| a.name.as_str()))
        .bind(at.0)
        .execute(&mut *self)
        .await?;
        if let Some(agent) = newly_assigned {
            sqlx::query(
                "INSERT INTO agents (id, name, last_seen_at, last_assigned_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET last_assigned_at = excluded.last_assigned_at",
            )
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
        sqlx::query(
            "INSERT INTO agents (id, name, last_seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, last_seen_at = excluded.last_seen_at",
        )
        .bind(id)
        .bind(name)
        .bind(at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn agents_in(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.last_assigned_at, (SELECT count(*) FROM conversations c \
             WHERE c.assignee = a.id AND c.status <> 'closed') AS open_assigned FROM agents a ORDER BY a.id",
        )
        .fetch_all(&self.pool)
        .await?;
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
