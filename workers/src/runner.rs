//! How every worker consumes its commands: take what is ready in batches,
//! hand each batch to the worker's [`Handler`], then settle each command by
//! its [`Outcome`] — answer the caller and acknowledge, or return it for
//! redelivery after a pause, or give up on it when its caller has waited too
//! long. A worker only says what each command came to.
//!
//! Commands come either from one consumer every process of a kind shares
//! ([`run`], for WhatsApp's webhooks and sends) or from the partitions this
//! process owns ([`run_partitioned`], for chat and sync commands): one pull
//! task per owned partition feeds one queue, batches from it are stored
//! under the partitions' epochs, and a partition handed over is drained
//! before its lease goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use switchboard_bus::rpc::reply;
use switchboard_bus::subjects::Family;
use switchboard_bus::{Bus, Delivery, DurableStream, Partitions, headers};
use switchboard_proto::model::Timestamp;
use switchboard_store::{Fence, PartitionStore};
use tokio::sync::{mpsc, watch};

use crate::ownership::{Order, Ownership};
use crate::telemetry;

/// How long a command that a client waits on is retried through transient
/// failures (a database outage): after that the client is told `unavailable`
/// and the command is dropped, so the answer is true — nothing of it is
/// stored, and the client's retry is a fresh attempt. A command nobody waits
/// on (one without a reply subject: a bot's, straight from the bus, or a
/// webhook) is retried until it succeeds.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

/// What one command came to.
pub enum Outcome {
    /// Handled: the answer for its caller, if it named a reply subject, and
    /// acknowledged after it.
    Done(Option<Bytes>),
    /// A transient failure (database or bus down), or work another process
    /// holds (no `error`: nothing to log): returned for redelivery after
    /// `pause`. `issued` is when the client asked, which bounds how long it
    /// is retried.
    Retry { error: Option<String>, issued: Timestamp, pause: Duration },
    /// The store refused the command's batch: this partition has a newer
    /// owner. Given back at once, unanswered, for that owner.
    Fenced(u32),
}

#[async_trait]
pub trait Handler: Send + Sync {
    /// One outcome per command of the batch, in order; every write for the
    /// batch is made under `fence`.
    async fn handle(&self, batch: &[Delivery], fence: &Fence) -> Vec<Outcome>;

    /// The answer a waiting client gets when its command is given up on.
    fn unavailable(&self) -> Bytes;
}

/// Which commands a worker takes from the command stream, and how many at once.
pub struct Intake {
    /// The durable consumer every process of this kind shares.
    pub durable: &'static str,
    pub filter: &'static str,
    /// The most commands in one batch.
    pub batch: usize,
    /// Batches handled at once (their order among each other is not kept).
    pub concurrency: usize,
}

/// Consumes until the bus closes the consumer or `stop` completes; the
/// batches in hand are finished first.
pub async fn run(
    bus: &dyn Bus,
    intake: Intake,
    handler: &dyn Handler,
    stop: impl Future<Output = ()>,
) -> switchboard_bus::Result<()> {
    let deliveries = bus.consume(DurableStream::Commands, intake.durable, intake.filter).await?;
    deliveries
        .batches_until(intake.batch, stop)
        .for_each_concurrent(intake.concurrency.max(1), |batch| async move {
            let outcomes = handler.handle(&batch, &Fence::none()).await;
            settle(bus, handler, batch, outcomes).await;
        })
        .await;
    Ok(())
}

/// Which commands a partitioned worker takes.
pub struct Partitioned {
    pub family: Family,
    pub partitions: Partitions,
    /// The most commands in one batch.
    pub batch: usize,
}

/// How long one pull request waits for commands: also how long a partition
/// being handed over may take to drain.
const PULL_WAIT: Duration = Duration::from_millis(500);

/// What the pull tasks feed the runner.
enum Pulled {
    Command(u32, Delivery),
    /// The partition's pull task has ended: nothing more of it will come.
    Ended(u32),
}

struct Owned {
    epoch: u64,
    stop: watch::Sender<bool>,
    handing_over: bool,
}

/// Consumes the partitions this process owns until `stop` completes; then
/// hands each over (what is in hand is finished first) and lets its lease go.
pub async fn run_partitioned(
    bus: Arc<dyn Bus>,
    store: Arc<dyn PartitionStore>,
    node: &str,
    intake: Partitioned,
    handler: &dyn Handler,
    stop: impl Future<Output = ()>,
) -> switchboard_bus::Result<()> {
    let mut ownership =
        Ownership::start(bus.leases(), store, intake.family.kind(), node, intake.partitions).await?;
    let (pulled_tx, mut pulled) = mpsc::channel::<Pulled>(intake.batch * 4);
    let mut owned: HashMap<u32, Owned> = HashMap::new();
    let mut ending = 0usize;
    let mut stopping = false;
    let mut in_hand = Vec::with_capacity(intake.batch);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop, if !stopping => {
                stopping = true;
                for own in owned.values_mut() {
                    own.handing_over = true;
                    let _ = own.stop.send(true);
                }
                if ending == 0 {
                    break;
                }
            }
            order = ownership.next(), if !stopping => match order {
                Some(Order::Take { partition, epoch }) => {
                    let (stop_tx, stop_rx) = watch::channel(false);
                    tokio::spawn(pull(bus.clone(), intake.family, partition, intake.batch, pulled_tx.clone(), stop_rx));
                    ending += 1;
                    owned.insert(partition, Owned { epoch, stop: stop_tx, handing_over: false });
                }
                Some(Order::Drop { partition }) => {
                    if let Some(own) = owned.remove(&partition) {
                        let _ = own.stop.send(true);
                    }
                }
                Some(Order::HandOver { partition }) => {
                    if let Some(own) = owned.get_mut(&partition) {
                        own.handing_over = true;
                        let _ = own.stop.send(true);
                    }
                }
                None => break,
            },
            n = pulled.recv_many(&mut in_hand, intake.batch) => {
                if n == 0 {
                    break;
                }
                let mut batch = Batch { fence: Fence { kind: intake.family.kind(), held: Vec::new() }, deliveries: Vec::new() };
                let mut strays = Vec::new();
                for item in in_hand.drain(..) {
                    match item {
                        Pulled::Command(partition, delivery) => match owned.get(&partition) {
                            Some(own) => batch.push(partition, own.epoch, delivery),
                            // Dropped meanwhile: its new owner takes it.
                            None => strays.push(delivery),
                        },
                        Pulled::Ended(partition) => {
                            ending -= 1;
                            if owned.get(&partition).is_some_and(|o| o.handing_over) {
                                // Everything it brought is in this batch: settled before the lease goes.
                                batch.finish(bus.as_ref(), handler, &mut owned, &ownership).await;
                                owned.remove(&partition);
                                ownership.handed_over(partition);
                            }
                        }
                    }
                }
                batch.finish(bus.as_ref(), handler, &mut owned, &ownership).await;
                join_all(strays.into_iter().map(give_back)).await;
                if stopping && ending == 0 {
                    break;
                }
            }
        }
    }
    ownership.stop().await;
    Ok(())
}

/// Commands of owned partitions, with the epochs they are stored under.
struct Batch {
    fence: Fence,
    deliveries: Vec<Delivery>,
}

impl Batch {
    fn push(&mut self, partition: u32, epoch: u64, delivery: Delivery) {
        if !self.fence.held.iter().any(|&(p, _)| p == partition) {
            self.fence.held.push((partition, epoch));
        }
        self.deliveries.push(delivery);
    }

    /// Handles and settles what is in the batch, and empties it; a partition
    /// the store fenced out is dropped.
    async fn finish(
        &mut self,
        bus: &dyn Bus,
        handler: &dyn Handler,
        owned: &mut HashMap<u32, Owned>,
        ownership: &Ownership,
    ) {
        if self.deliveries.is_empty() {
            return;
        }
        let deliveries = std::mem::take(&mut self.deliveries);
        let outcomes = handler.handle(&deliveries, &self.fence).await;
        self.fence.held.clear();
        for outcome in &outcomes {
            if let Outcome::Fenced(partition) = outcome
                && let Some(own) = owned.remove(partition)
            {
                let _ = own.stop.send(true);
                ownership.fenced(*partition);
            }
        }
        settle(bus, handler, deliveries, outcomes).await;
    }
}

/// One partition's pull task: pull requests one after another until told
/// to stop; the request in progress is finished first.
async fn pull(
    bus: Arc<dyn Bus>,
    family: Family,
    partition: u32,
    max: usize,
    to: mpsc::Sender<Pulled>,
    mut stop: watch::Receiver<bool>,
) {
    let (durable, filter) = (family.durable(partition), family.partition(partition));
    let mut failing = false;
    while !*stop.borrow() {
        match bus.pull(DurableStream::Commands, &durable, &filter, max, PULL_WAIT).await {
            Ok(mut deliveries) => {
                failing = false;
                while let Some(delivery) = deliveries.next().await {
                    if to.send(Pulled::Command(partition, delivery)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // Once per outage, not once per attempt.
                if !failing {
                    tracing::warn!(error = %e, durable, "cannot pull commands; retrying");
                    failing = true;
                }
                let _ = tokio::time::timeout(PULL_WAIT, stop.changed()).await;
            }
        }
    }
    let _ = to.send(Pulled::Ended(partition)).await;
}

async fn give_back(delivery: Delivery) {
    if let Err(e) = delivery.nak().await {
        tracing::debug!(error = %e, "command not given back; it is redelivered after the lease");
    }
}

async fn settle(bus: &dyn Bus, handler: &dyn Handler, batch: Vec<Delivery>, outcomes: Vec<Outcome>) {
    debug_assert_eq!(batch.len(), outcomes.len(), "one outcome per command");
    // Once per batch, whatever the number of commands it returns.
    let failed = || outcomes.iter().filter(|o| matches!(o, Outcome::Retry { error: Some(_), .. }));
    if let Some(Outcome::Retry { error: Some(error), .. }) = failed().next() {
        tracing::warn!(error = %error, commands = failed().count(), "commands failed; retrying");
    }
    // Concurrently, so the bus pipelines the answers and acknowledgements.
    join_all(batch.into_iter().zip(outcomes).map(|(delivery, outcome)| async move {
        match outcome {
            Outcome::Done(answer) => answer_and_ack(bus, delivery, answer).await,
            Outcome::Fenced(_) => give_back(delivery).await,
            Outcome::Retry { issued, pause, .. } => {
                let waited = Duration::from_millis(Timestamp::now().0.saturating_sub(issued.0).max(0) as u64);
                if waited >= GIVE_UP_AFTER && delivery.envelope.headers.get(headers::REPLY_TO).is_some() {
                    return answer_and_ack(bus, delivery, Some(handler.unavailable())).await;
                }
                tokio::time::sleep(pause).await;
                metrics::counter!(telemetry::COMMANDS_RETURNED).increment(1);
                if let Err(e) = delivery.nak().await {
                    tracing::warn!(error = %e, "command not returned; it will be redelivered");
                }
            }
        }
    }))
    .await;
}

async fn answer_and_ack(bus: &dyn Bus, delivery: Delivery, answer: Option<Bytes>) {
    if let Some(answer) = answer
        && let Err(e) = reply(bus, &delivery.envelope, answer).await
    {
        tracing::warn!(error = %e, "command answer not sent");
    }
    if let Err(e) = delivery.ack().await {
        tracing::warn!(error = %e, "command not acknowledged; it will be redelivered");
    }
}
