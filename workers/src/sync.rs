//! `worker sync`: the tenants' outboxes of sync changes (contract §5). Stores
//! each change from `sb.cmd.sync.change` once, acknowledges it only after the
//! commit, and tells the edges on `sb.sync.<tenant>.pending`; confirmations
//! (`sb.cmd.sync.confirm`) go through it too, so edges never write the store.
//!
//! Answers (to `Sb-Reply-To`) are JSON: `{created, change}`, `{confirmed}` or
//! `{error:{code, message}}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard_bus::events::{encode, kind};
use switchboard_bus::rpc::reply;
use switchboard_bus::{Bus, Delivery, DurableStream, Envelope, headers, subjects};
use switchboard_proto::model::Timestamp;
use switchboard_proto::pb;
use switchboard_store::{Confirm, NewChange, StoreError, SyncStore};
use uuid::Uuid;

/// The durable consumer every sync process shares.
pub const DURABLE: &str = "sync";
/// The most commands taken at once; a tenant is notified once per batch.
const BATCH: usize = 128;
/// Pause before a command that hit a transient failure is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The longest tenant, entity or op accepted.
const MAX_NAME_LEN: usize = 128;

pub struct SyncWorker {
    bus: Arc<dyn Bus>,
    store: Arc<dyn SyncStore>,
}

/// What a command came to.
enum Outcome {
    /// The answer for its caller; `Some(change)` when a tenant is to be notified.
    Done(Value, Option<pb::SyncChange>),
    /// Transient (database down): returned for redelivery.
    Retry(String),
}

impl SyncWorker {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn SyncStore>) -> Self {
        Self { bus, store }
    }

    /// Consumes sync commands until the bus closes the consumer or `stop`
    /// completes (the batch in hand is finished first).
    pub async fn run(self, stop: impl Future<Output = ()>) -> switchboard_bus::Result<()> {
        let commands = self.bus.consume(DurableStream::Commands, DURABLE, subjects::SYNC_COMMANDS).await?;
        let mut batches = std::pin::pin!(commands.batches_until(BATCH, stop));
        while let Some(batch) = batches.next().await {
            self.handle_batch(batch).await;
        }
        Ok(())
    }

    /// Stores each change, then notifies each tenant once, then answers and
    /// acknowledges: a notification that cannot be published returns the
    /// tenant's commands for redelivery (storing them again adds nothing).
    async fn handle_batch(&self, batch: Vec<Delivery>) {
        let mut done = Vec::with_capacity(batch.len());
        let mut tenants: BTreeMap<String, pb::SyncChange> = BTreeMap::new();
        for delivery in batch {
            match self.handle(&delivery.envelope).await {
                Outcome::Done(answer, notify) => {
                    let tenant = notify.as_ref().map(|c| c.tenant.clone());
                    if let Some(change) = notify {
                        tenants.insert(change.tenant.clone(), change);
                    }
                    done.push((delivery, answer, tenant));
                }
                Outcome::Retry(e) => {
                    tracing::warn!(error = %e, subject = %delivery.envelope.subject, "sync command failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    nak(delivery).await;
                }
            }
        }
        let mut failed = Vec::new();
        for (tenant, change) in tenants {
            let envelope = Envelope::new(subjects::sync_pending(&tenant), encode(&change))
                .header(headers::EVENT, kind::SYNC_PENDING)
                .header(headers::TENANT, tenant.clone());
            if let Err(e) = self.bus.publish(envelope).await {
                tracing::warn!(error = %e, tenant, "sync notification not published; retrying");
                failed.push(tenant);
            }
        }
        for (delivery, answer, tenant) in done {
            if tenant.is_some_and(|t| failed.contains(&t)) {
                nak(delivery).await;
                continue;
            }
            let body = Bytes::from(answer.to_string());
            if let Err(e) = reply(self.bus.as_ref(), &delivery.envelope, body).await {
                tracing::warn!(error = %e, "sync command answer not sent");
            }
            if let Err(e) = delivery.ack().await {
                tracing::warn!(error = %e, "sync command not acknowledged; it will be redelivered");
            }
        }
    }

    async fn handle(&self, envelope: &Envelope) -> Outcome {
        let payload = &envelope.payload[..];
        let outcome = match envelope.subject.as_str() {
            subjects::CMD_SYNC_CHANGE => match pb::SyncChange::decode(payload) {
                Ok(change) => self.append(change).await,
                Err(_) => Err(Failure::Refused("undecodable SyncChange".into())),
            },
            subjects::CMD_SYNC_CONFIRM => match pb::SyncConfirm::decode(payload) {
                Ok(confirm) => self.confirm(confirm).await,
                Err(_) => Err(Failure::Refused("undecodable SyncConfirm".into())),
            },
            other => Err(Failure::Refused(format!("no sync command on {other}"))),
        };
        match outcome {
            Ok((answer, notify)) => Outcome::Done(answer, notify),
            Err(Failure::Refused(message)) => {
                Outcome::Done(json!({ "error": { "code": "bad_request", "message": message } }), None)
            }
            Err(Failure::Store(e)) => Outcome::Retry(e.to_string()),
        }
    }

    async fn append(&self, change: pb::SyncChange) -> Result<(Value, Option<pb::SyncChange>), Failure> {
        let new = new_change(&change)?;
        let (stored, created) = self.store.append_change(new).await?;
        let notify = pb::SyncChange {
            id: stored.id.to_string(),
            tenant: stored.tenant.clone(),
            entity: stored.entity.clone(),
            op: stored.op.clone(),
            data_json: stored.data.clone(),
            at_ms: stored.created_at.0,
        };
        // A redelivered change notifies again: the first notice may have been
        // lost with a worker that died after its commit.
        Ok((json!({ "created": created, "change": stored.to_json() }), Some(notify)))
    }

    async fn confirm(&self, confirm: pb::SyncConfirm) -> Result<(Value, Option<pb::SyncChange>), Failure> {
        check_name("tenant", &confirm.tenant)?;
        let how = match (confirm.cursor, confirm.ids.is_empty()) {
            (Some(cursor), true) => Confirm::Through(cursor),
            (None, false) => Confirm::Ids(
                confirm
                    .ids
                    .iter()
                    .map(|id| id.parse().map_err(|_| Failure::Refused(format!("id {id:?} is not a UUID"))))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(Failure::Refused("confirm needs a cursor or ids".into())),
        };
        let confirmed = self.store.confirm_changes(&confirm.tenant, &how, Timestamp::now()).await?;
        Ok((json!({ "confirmed": confirmed }), None))
    }
}

async fn nak(delivery: Delivery) {
    if let Err(e) = delivery.nak().await {
        tracing::warn!(error = %e, "sync command not returned; it will be redelivered");
    }
}

/// A change as the store takes it; refused when it cannot be stored as asked.
fn new_change(change: &pb::SyncChange) -> Result<NewChange, Failure> {
    check_name("tenant", &change.tenant)?;
    check_name("entity", &change.entity)?;
    check_name("op", &change.op)?;
    let data: Value = serde_json::from_str(&change.data_json)
        .map_err(|e| Failure::Refused(format!("data_json is not JSON: {e}")))?;
    let id = match change.id.as_str() {
        "" => Uuid::now_v7(),
        id => id.parse().map_err(|_| Failure::Refused(format!("id {id:?} is not a UUID")))?,
    };
    let at = match change.at_ms {
        0 => Timestamp::now(),
        // Up to the year 9999, which every database can hold.
        ms if (1..253_402_300_800_000).contains(&ms) => Timestamp(ms),
        _ => return Err(Failure::Refused("at_ms is out of range".into())),
    };
    Ok(NewChange {
        id,
        tenant: change.tenant.clone(),
        entity: change.entity.clone(),
        op: change.op.clone(),
        data: data.to_string(),
        at,
    })
}

fn check_name(field: &str, value: &str) -> Result<(), Failure> {
    if value.is_empty() || value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(Failure::Refused(format!("{field} must be 1 to {MAX_NAME_LEN} printable characters")));
    }
    Ok(())
}

enum Failure {
    Refused(String),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}
