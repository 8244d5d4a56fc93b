//! How every worker consumes its commands: take what is ready in batches,
//! hand each batch to the worker's [`Handler`], then settle each command by
//! its [`Outcome`] — answer the caller and acknowledge, or return it for
//! redelivery after a pause, or give up on it when its caller has waited too
//! long. A worker only says what each command came to.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use switchboard_bus::rpc::reply;
use switchboard_bus::{Bus, Delivery, DurableStream, headers};
use switchboard_proto::model::Timestamp;

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
}

#[async_trait]
pub trait Handler: Send + Sync {
    /// One outcome per command of the batch, in order.
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome>;

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
            let outcomes = handler.handle(&batch).await;
            settle(bus, handler, batch, outcomes).await;
        })
        .await;
    Ok(())
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
            Outcome::Retry { issued, pause, .. } => {
                let waited = Duration::from_millis(Timestamp::now().0.saturating_sub(issued.0).max(0) as u64);
                if waited >= GIVE_UP_AFTER && delivery.envelope.headers.get(headers::REPLY_TO).is_some() {
                    return answer_and_ack(bus, delivery, Some(handler.unavailable())).await;
                }
                tokio::time::sleep(pause).await;
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
