//! The WhatsApp outbox: one row per message sent through the Graph API.
//!
//! The Graph API has no idempotency key, so a message is sent only by the
//! worker that claimed its row, and never again once Meta's id (`wamid`) is
//! recorded. A claim is a lease: a worker that died mid-send leaves the row
//! `sending`, and another may claim it once the lease ran out.

use async_trait::async_trait;
use sqlx::Row;
use switchboard_proto::model::Timestamp;
use uuid::Uuid;

use crate::{PgStore, Result, SqliteStore, StoreError};

/// What claiming a send found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxClaim {
    /// This caller holds the lease and should send; `attempts` so far.
    Send { attempts: u32 },
    /// Another worker holds an unexpired lease.
    InFlight,
    /// Already accepted by Meta under this id: never send again.
    Sent(String),
    /// Given up on.
    Failed,
}

#[async_trait]
pub trait WhatsappStore: Send + Sync + 'static {
    /// Records the send when new, and takes its lease unless it was sent,
    /// failed, or is leased by someone else (a lease older than `lease_ms` is expired).
    async fn claim_send(
        &self,
        message_id: Uuid,
        to: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<OutboxClaim>;
    /// Records Meta's id; false when one was already recorded (nothing changed).
    async fn record_sent(&self, message_id: Uuid, wamid: &str, now: Timestamp) -> Result<bool>;
    /// Counts a failed attempt; with `last` the send is given up (`failed`).
    /// True when this call moved it to `failed`.
    async fn record_failure(&self, message_id: Uuid, error: &str, last: bool, now: Timestamp)
    -> Result<bool>;
    /// Our message for a `wamid` Meta reports a status of.
    async fn message_by_wamid(&self, wamid: &str) -> Result<Option<Uuid>>;
}

fn claim_from(state: &str, wamid: Option<String>) -> OutboxClaim {
    match (state, wamid) {
        (_, Some(wamid)) => OutboxClaim::Sent(wamid),
        ("failed", None) => OutboxClaim::Failed,
        _ => OutboxClaim::InFlight,
    }
}

const INSERT: &str = "INSERT INTO wa_outbox (message_id, to_phone, state, attempts, updated_at) \
     VALUES ($1, $2, 'pending', 0, $3) ON CONFLICT (message_id) DO NOTHING";
const LEASE: &str = "UPDATE wa_outbox SET state = 'sending', updated_at = $2 WHERE message_id = $1 \
     AND wamid IS NULL AND state <> 'failed' AND (state <> 'sending' OR updated_at < $3) RETURNING attempts";
const LOOK: &str = "SELECT state, wamid FROM wa_outbox WHERE message_id = $1";
const SENT: &str = "UPDATE wa_outbox SET wamid = $2, state = 'sent', updated_at = $3 \
     WHERE message_id = $1 AND wamid IS NULL";
const FAILURE: &str = "UPDATE wa_outbox SET attempts = attempts + 1, last_error = $2, updated_at = $3, \
     state = CASE WHEN $4 THEN 'failed' ELSE state END WHERE message_id = $1 AND wamid IS NULL \
     AND state <> 'failed'";
const BY_WAMID: &str = "SELECT message_id FROM wa_outbox WHERE wamid = $1";

/// Both databases run the same statements; only the id's column type differs.
macro_rules! whatsapp_store {
    ($store:ty, $id:expr, $read_id:expr) => {
        #[async_trait]
        impl WhatsappStore for $store {
            async fn claim_send(
                &self,
                message_id: Uuid,
                to: &str,
                now: Timestamp,
                lease_ms: i64,
            ) -> Result<OutboxClaim> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(INSERT).bind(($id)(message_id)).bind(to).bind(now.0).execute(&mut *tx).await?;
                let leased: Option<i32> = sqlx::query_scalar(LEASE)
                    .bind(($id)(message_id))
                    .bind(now.0)
                    .bind(now.0 - lease_ms)
                    .fetch_optional(&mut *tx)
                    .await?;
                let claim = match leased {
                    Some(attempts) => OutboxClaim::Send { attempts: attempts.max(0) as u32 },
                    None => {
                        let row = sqlx::query(LOOK).bind(($id)(message_id)).fetch_one(&mut *tx).await?;
                        claim_from(row.try_get::<&str, _>("state")?, row.try_get("wamid")?)
                    }
                };
                tx.commit().await?;
                Ok(claim)
            }

            async fn record_sent(&self, message_id: Uuid, wamid: &str, now: Timestamp) -> Result<bool> {
                let done = sqlx::query(SENT)
                    .bind(($id)(message_id))
                    .bind(wamid)
                    .bind(now.0)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_failure(
                &self,
                message_id: Uuid,
                error: &str,
                last: bool,
                now: Timestamp,
            ) -> Result<bool> {
                let done = sqlx::query(FAILURE)
                    .bind(($id)(message_id))
                    .bind(error)
                    .bind(now.0)
                    .bind(last)
                    .execute(&self.pool)
                    .await?;
                Ok(last && done.rows_affected() == 1)
            }

            async fn message_by_wamid(&self, wamid: &str) -> Result<Option<Uuid>> {
                let row = sqlx::query(BY_WAMID).bind(wamid).fetch_optional(&self.pool).await?;
                row.map(|r| ($read_id)(&r)).transpose()
            }
        }
    };
}

whatsapp_store!(SqliteStore, |id: Uuid| id.to_string(), |r: &sqlx::sqlite::SqliteRow| {
    let id: String = r.try_get("message_id")?;
    id.parse::<Uuid>().map_err(|_| StoreError::Corrupt("wa_outbox.message_id"))
});
whatsapp_store!(PgStore, |id: Uuid| id, |r: &sqlx::postgres::PgRow| -> Result<Uuid> {
    Ok(r.try_get("message_id")?)
});
