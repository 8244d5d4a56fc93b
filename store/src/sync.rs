//! Sync notifications: a per-tenant outbox of changes that a point-of-sale
//! client pulls and confirms.
//!
//! A change's `seq` is its tenant's `last_seq + 1`, assigned in the same
//! transaction that stores it under the tenant row's lock (as a message's
//! offset is), so a tenant's changes are numbered from 1 without gaps.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, Row, SqliteConnection};
use switchboard_proto::model::Timestamp;
use uuid::Uuid;

use crate::{Fence, PgStore, Result, SqliteStore, StoreError};

/// A change to put in a tenant's outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChange {
    /// Appending the same id again stores nothing new.
    pub id: Uuid,
    pub tenant: String,
    pub entity: String,
    pub op: String,
    /// A JSON document, as text.
    pub data: String,
    pub at: Timestamp,
}

/// A stored change.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub id: Uuid,
    pub tenant: String,
    pub seq: u64,
    pub entity: String,
    pub op: String,
    /// A JSON document, as text.
    pub data: String,
    pub created_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
}

impl Change {
    /// As clients see it: `{id, seq, entity, op, data, created_at}`.
    pub fn to_json(&self) -> serde_json::Value {
        let data: serde_json::Value =
            serde_json::from_str(&self.data).unwrap_or_else(|_| self.data.clone().into());
        serde_json::json!({
            "id": self.id,
            "seq": self.seq,
            "entity": self.entity,
            "op": self.op,
            "data": data,
            "created_at": self.created_at.to_rfc3339(),
        })
    }
}

/// Which of a tenant's changes a client confirms.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    /// Every change with `seq <= cursor`.
    Through(u64),
    /// These changes (ids of other tenants are ignored).
    Ids(Vec<Uuid>),
}

/// Reading the outboxes (edges do, for clients that pull).
#[async_trait]
pub trait SyncReads: Send + Sync + 'static {
    /// Unconfirmed changes of a tenant, seq ascending, at most `limit`.
    async fn pending_changes(&self, tenant: &str, limit: u32) -> Result<Vec<Change>>;
    /// Whether a tenant has unconfirmed changes.
    async fn has_pending_changes(&self, tenant: &str) -> Result<bool>;
    /// The seq of a tenant's newest change (0: none yet).
    async fn last_change_seq(&self, tenant: &str) -> Result<u64>;
}

/// Writing them (the sync worker).
#[async_trait]
pub trait SyncStore: SyncReads {
    /// Stores a change with its tenant's next seq; an id already stored
    /// returns the stored change and `false`.
    async fn append_change(&self, new: NewChange, fence: &Fence) -> Result<(Change, bool)>;
    /// Marks changes confirmed; answers how many were unconfirmed before.
    async fn confirm_changes(&self, tenant: &str, confirm: &Confirm, at: Timestamp) -> Result<u64>;
}

fn seq_from(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt("sync_changes.seq"))
}

/// Beyond i64 nothing exists; a cast would wrap to -1.
fn seq_to(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

// ---- SQLite: ids as text, data as text, times as milliseconds.

const SQLITE_COLUMNS: &str = "id, tenant, seq, entity, op, data, created_at, confirmed_at";

fn change_from_sqlite(row: &SqliteRow) -> Result<Change> {
    let id: String = row.try_get("id")?;
    let confirmed_at: Option<i64> = row.try_get("confirmed_at")?;
    Ok(Change {
        id: id.parse().map_err(|_| StoreError::Corrupt("sync_changes.id"))?,
        tenant: row.try_get("tenant")?,
        seq: seq_from(row.try_get("seq")?)?,
        entity: row.try_get("entity")?,
        op: row.try_get("op")?,
        data: row.try_get("data")?,
        created_at: Timestamp(row.try_get("created_at")?),
        confirmed_at: confirmed_at.map(Timestamp),
    })
}

async fn sqlite_change(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<Change>> {
    let sql = format!("SELECT {SQLITE_COLUMNS} FROM sync_changes WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(conn).await?;
    row.as_ref().map(change_from_sqlite).transpose()
}

#[async_trait]
impl SyncStore for SqliteStore {
    async fn append_change(&self, new: NewChange, fence: &Fence) -> Result<(Change, bool)> {
        // BEGIN IMMEDIATE holds the write lock: no other writer reads last_seq meanwhile.
        self.write(async |conn| {
            crate::partitions::check(conn, fence).await?;
            if let Some(stored) = sqlite_change(conn, new.id).await? {
                return Ok((stored, false));
            }
            sqlx::query("INSERT INTO sync_tenants (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING")
                .bind(&new.tenant)
                .execute(&mut *conn)
                .await?;
            let seq: i64 = sqlx::query_scalar(
                "UPDATE sync_tenants SET last_seq = last_seq + 1 WHERE tenant = $1 RETURNING last_seq",
            )
            .bind(&new.tenant)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO sync_changes (id, tenant, seq, entity, op, data, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new.id.to_string())
            .bind(&new.tenant)
            .bind(seq)
            .bind(&new.entity)
            .bind(&new.op)
            .bind(&new.data)
            .bind(new.at.0)
            .execute(&mut *conn)
            .await?;
            let stored = sqlite_change(conn, new.id).await?.ok_or(StoreError::Corrupt("sync_changes"))?;
            Ok((stored, true))
        })
        .await
    }

    async fn confirm_changes(&self, tenant: &str, confirm: &Confirm, at: Timestamp) -> Result<u64> {
        self.write(async |conn| {
            let mut confirmed = 0;
            match confirm {
                Confirm::Through(cursor) => {
                    confirmed = sqlx::query(
                        "UPDATE sync_changes SET confirmed_at = $3 \
                         WHERE tenant = $1 AND seq <= $2 AND confirmed_at IS NULL",
                    )
                    .bind(tenant)
                    .bind(seq_to(*cursor))
                    .bind(at.0)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                }
                Confirm::Ids(ids) => {
                    for id in ids {
                        confirmed += sqlx::query(
                            "UPDATE sync_changes SET confirmed_at = $3 \
                             WHERE tenant = $1 AND id = $2 AND confirmed_at IS NULL",
                        )
                        .bind(tenant)
                        .bind(id.to_string())
                        .bind(at.0)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                    }
                }
            }
            Ok(confirmed)
        })
        .await
    }
}

#[async_trait]
impl SyncReads for SqliteStore {
    async fn pending_changes(&self, tenant: &str, limit: u32) -> Result<Vec<Change>> {
        let sql = format!(
            "SELECT {SQLITE_COLUMNS} FROM sync_changes WHERE tenant = $1 AND confirmed_at IS NULL \
             ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(change_from_sqlite).collect()
    }

    async fn has_pending_changes(&self, tenant: &str) -> Result<bool> {
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sync_changes WHERE tenant = $1 AND confirmed_at IS NULL)",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(pending)
    }

    async fn last_change_seq(&self, tenant: &str) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM sync_tenants WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        seq_from(seq.unwrap_or(0))
    }
}

// ---- PostgreSQL: UUIDs, JSONB, timestamps.

macro_rules! pg_select {
    () => {
        "SELECT id, tenant, seq, entity, op, data::text AS data, created_at, confirmed_at FROM sync_changes "
    };
}

fn change_from_pg(row: &PgRow) -> Result<Change> {
    let created_at: chrono::DateTime<chrono::Utc> = row.try_get("created_at")?;
    let confirmed_at: Option<chrono::DateTime<chrono::Utc>> = row.try_get("confirmed_at")?;
    Ok(Change {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        seq: seq_from(row.try_get("seq")?)?,
        entity: row.try_get("entity")?,
        op: row.try_get("op")?,
        data: row.try_get("data")?,
        created_at: Timestamp(created_at.timestamp_millis()),
        confirmed_at: confirmed_at.map(|t| Timestamp(t.timestamp_millis())),
    })
}

fn pg_time(at: Timestamp) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(at.0).ok_or_else(|| {
        StoreError::Database(sqlx::Error::Encode(format!("timestamp {} ms is out of range", at.0).into()))
    })
}

async fn pg_change(conn: &mut PgConnection, id: Uuid) -> Result<Option<Change>> {
    let row = sqlx::query(concat!(pg_select!(), "WHERE id = $1")).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(change_from_pg).transpose()
}

#[async_trait]
impl SyncStore for PgStore {
    async fn append_change(&self, new: NewChange, fence: &Fence) -> Result<(Change, bool)> {
        self.write(async |conn| {
            crate::partitions::check(conn, fence).await?;
            sqlx::query("INSERT INTO sync_tenants (tenant) VALUES ($1) ON CONFLICT (tenant) DO NOTHING")
                .bind(&new.tenant)
                .execute(&mut *conn)
                .await?;
            // The tenant row's lock serialises appends, and comes before the
            // duplicate check so that concurrent redeliveries store one change.
            sqlx::query("SELECT last_seq FROM sync_tenants WHERE tenant = $1 FOR UPDATE")
                .bind(&new.tenant)
                .execute(&mut *conn)
                .await?;
            if let Some(stored) = pg_change(conn, new.id).await? {
                return Ok((stored, false));
            }
            let seq: i64 = sqlx::query_scalar(
                "UPDATE sync_tenants SET last_seq = last_seq + 1 WHERE tenant = $1 RETURNING last_seq",
            )
            .bind(&new.tenant)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO sync_changes (id, tenant, seq, entity, op, data, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
            )
            .bind(new.id)
            .bind(&new.tenant)
            .bind(seq)
            .bind(&new.entity)
            .bind(&new.op)
            .bind(&new.data)
            .bind(pg_time(new.at)?)
            .execute(&mut *conn)
            .await?;
            let stored = pg_change(conn, new.id).await?.ok_or(StoreError::Corrupt("sync_changes"))?;
            Ok((stored, true))
        })
        .await
    }

    async fn confirm_changes(&self, tenant: &str, confirm: &Confirm, at: Timestamp) -> Result<u64> {
        let at = pg_time(at)?;
        let done = match confirm {
            Confirm::Through(cursor) => {
                sqlx::query(
                    "UPDATE sync_changes SET confirmed_at = $3 \
                     WHERE tenant = $1 AND seq <= $2 AND confirmed_at IS NULL",
                )
                .bind(tenant)
                .bind(seq_to(*cursor))
                .bind(at)
                .execute(&self.pool)
                .await?
            }
            Confirm::Ids(ids) => {
                sqlx::query(
                    "UPDATE sync_changes SET confirmed_at = $3 \
                     WHERE tenant = $1 AND id = ANY($2) AND confirmed_at IS NULL",
                )
                .bind(tenant)
                .bind(ids)
                .bind(at)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl SyncReads for PgStore {
    async fn pending_changes(&self, tenant: &str, limit: u32) -> Result<Vec<Change>> {
        let rows = sqlx::query(concat!(
            pg_select!(),
            "WHERE tenant = $1 AND confirmed_at IS NULL ORDER BY seq LIMIT $2"
        ))
        .bind(tenant)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_pg).collect()
    }

    async fn has_pending_changes(&self, tenant: &str) -> Result<bool> {
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sync_changes WHERE tenant = $1 AND confirmed_at IS NULL)",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok(pending)
    }

    async fn last_change_seq(&self, tenant: &str) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM sync_tenants WHERE tenant = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        seq_from(seq.unwrap_or(0))
    }
}
