//! `worker sync`: the tenants' outboxes of sync changes. Stores each change
//! from `sb.cmd.sync.<partition>.change` once (partitioned by tenant, and
//! fenced like messages), acknowledges it only after the commit, and tells
//! the edges on `sb.sync.<tenant>.pending`; confirmations
//! (`sb.cmd.sync.<partition>.confirm`) go through it too, so edges never
//! write the store.
//!
//! Answers (to `Sb-Reply-To`) are JSON: `{created, change}`, `{confirmed}` or
//! `{error:{code, message}}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard_bus::events::{encode, kind};
use switchboard_bus::subjects::{self, Family, op};
use switchboard_bus::{Bus, Delivery, Envelope, Partitions, headers};
use switchboard_proto::model::Timestamp;
use switchboard_proto::pb;
use switchboard_store::{Confirm, Fence, NewChange, Store, StoreError};
use uuid::Uuid;

use crate::runner::{self, Handler, Outcome, Partitioned};

/// The most commands taken at once; a tenant is notified once per batch.
const BATCH: usize = 128;
/// Pause before a command that hit a transient failure is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The longest tenant, entity or op accepted.
const MAX_NAME_LEN: usize = 128;

pub struct SyncWorker {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    node: String,
    partitions: Partitions,
}

impl SyncWorker {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>, node: &str, partitions: Partitions) -> Self {
        Self { bus, store, node: node.to_owned(), partitions }
    }

    /// Consumes sync commands until the bus closes the consumer or `stop`
    /// completes (the batch in hand is finished first).
    pub async fn run(self, stop: impl Future<Output = ()>) -> switchboard_bus::Result<()> {
        let intake = Partitioned { family: Family::Sync, partitions: self.partitions, batch: BATCH };
        let (bus, store) = (self.bus.clone(), self.store.clone());
        runner::run_partitioned(bus, store, &self.node, intake, &self, stop).await
    }

    /// The answer to one command and, for a stored change, the tenant to notify.
    async fn handle_one(
        &self,
        envelope: &Envelope,
        fence: &Fence,
    ) -> Result<(Value, Option<pb::SyncChange>), Failure> {
        let payload = &envelope.payload[..];
        match subjects::operation(&envelope.subject) {
            op::SYNC_CHANGE => match pb::SyncChange::decode(payload) {
                Ok(change) => self.append(change, fence).await,
                Err(_) => Err(Failure::Refused("undecodable SyncChange".into())),
            },
            op::SYNC_CONFIRM => match pb::SyncConfirm::decode(payload) {
                Ok(confirm) => self.confirm(confirm).await,
                Err(_) => Err(Failure::Refused("undecodable SyncConfirm".into())),
            },
            other => Err(Failure::Refused(format!("no sync command on {other}"))),
        }
    }

    async fn append(
        &self,
        change: pb::SyncChange,
        fence: &Fence,
    ) -> Result<(Value, Option<pb::SyncChange>), Failure> {
        let new = new_change(&change)?;
        let (stored, created) = self.store.append_change(new, fence).await?;
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

#[async_trait]
impl Handler for SyncWorker {
    /// Stores each change, then notifies each tenant once: a notice that
    /// cannot be published returns that tenant's commands for redelivery
    /// (storing them again adds nothing).
    async fn handle(&self, batch: &[Delivery], fence: &Fence) -> Vec<Outcome> {
        let issued = Timestamp::now();
        let retry = |error: String| Outcome::Retry { error: Some(error), issued, pause: RETRY_PAUSE };
        let mut handled = Vec::with_capacity(batch.len());
        let mut tenants: BTreeMap<String, pb::SyncChange> = BTreeMap::new();
        for delivery in batch {
            let outcome = match self.handle_one(&delivery.envelope, fence).await {
                Ok((answer, notify)) => {
                    let tenant = notify.map(|change| {
                        let tenant = change.tenant.clone();
                        tenants.insert(tenant.clone(), change);
                        tenant
                    });
                    Ok((answer, tenant))
                }
                Err(Failure::Refused(message)) => {
                    Ok((json!({ "error": { "code": "bad_request", "message": message } }), None))
                }
                Err(Failure::Store(StoreError::Fenced { partition, .. })) => Err(Outcome::Fenced(partition)),
                Err(Failure::Store(e)) => Err(retry(e.to_string())),
            };
            handled.push(outcome);
        }
        let mut failed = BTreeMap::new();
        for (tenant, change) in tenants {
            let envelope = Envelope::new(subjects::sync_pending(&tenant), encode(&change))
                .header(headers::EVENT, kind::SYNC_PENDING)
                .header(headers::TENANT, tenant.clone());
            if let Err(e) = self.bus.publish(envelope).await {
                failed.insert(tenant, e.to_string());
            }
        }
        handled
            .into_iter()
            .map(|outcome| match outcome {
                Ok((answer, tenant)) => match tenant.and_then(|t| failed.get(&t)) {
                    // Its notice was not published: stored again on redelivery, which adds nothing.
                    Some(error) => retry(error.clone()),
                    None => Outcome::Done(Some(Bytes::from(answer.to_string()))),
                },
                Err(outcome) => outcome,
            })
            .collect()
    }

    fn unavailable(&self) -> Bytes {
        let error = json!({ "error": { "code": "unavailable", "message": "the database is unavailable: nothing was stored, retry later" } });
        Bytes::from(error.to_string())
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
