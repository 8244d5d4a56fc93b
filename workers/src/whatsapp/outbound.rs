//! Agent messages out through the Graph API, each once.
//!
//! The persist worker puts a `WhatsappSend` on `sb.wa.out` for every message
//! in a WhatsApp conversation that did not come from WhatsApp. Here the
//! outbox row is claimed first: a message whose `wamid` is recorded is never
//! sent again, and one leased by another worker waits. Graph's answer decides
//! the rest: accepted → `sent`; transient → retried with back-off and jitter
//! (honouring `Retry-After`) up to [`MAX_ATTEMPTS`]; final → `failed` with
//! Graph's code and message.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message as _;
use switchboard_bus::events::{Event, encode};
use switchboard_bus::{Bus, Delivery, Envelope, headers, subjects};
use switchboard_proto::model::{Channel, DeliveryStatus, Source, StatusError, StatusUpdate, Timestamp};
use switchboard_proto::pb;
use switchboard_store::{Appended, Fence, OutboxClaim, Store};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::graph::{Graph, SendError};
use super::{DURABLE_OUT, WhatsappConfig, announce};
use crate::persist::AfterAppend;
use crate::runner::{self, Handler, Intake, Outcome};
use crate::telemetry;

pub const MAX_ATTEMPTS: u32 = 5;
/// Sends in flight at once per process.
const CONCURRENCY: usize = 32;
/// A claim older than this is taken to belong to a dead worker.
const LEASE_MS: i64 = 120_000;
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A stored message that must go out through WhatsApp (not the customer's own,
/// not a private note) is put on `sb.wa.out`
/// before its command is acknowledged (see [`AfterAppend`]). Published on
/// every (re)announcement; the bus drops duplicates within its window and the
/// outbox after it.
pub struct Forward {
    pub bus: Arc<dyn Bus>,
}

#[async_trait]
impl AfterAppend for Forward {
    async fn appended(&self, appended: &Appended) -> switchboard_bus::Result<()> {
        let conversation = &appended.conversation;
        let message = &appended.message;
        // A private note is for staff: it never reaches the customer's phone.
        if conversation.channel != Channel::Whatsapp || message.source == Source::Whatsapp || message.private
        {
            return Ok(());
        }
        let to = conversation.customer.phone.clone().unwrap_or_else(|| {
            conversation.customer.id.strip_prefix("wa:").unwrap_or(&conversation.customer.id).to_owned()
        });
        let send = pb::WhatsappSend {
            message_id: message.id.to_string(),
            conversation_id: message.conversation_id.clone(),
            to,
            text: message.text.clone(),
        };
        let envelope = Envelope::new(subjects::WA_OUT, encode(&send))
            .header(headers::EVENT, "wa.send")
            .header(headers::CONVERSATION, message.conversation_id.clone())
            .header(headers::MESSAGE, message.id.to_string());
        self.bus.publish_durable(envelope, &format!("wa-out:{}", message.id)).await
    }
}

#[async_trait]
impl Handler for Outbound {
    async fn handle(&self, batch: &[Delivery], _fence: &Fence) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            let issued = Timestamp::now();
            outcomes.push(match self.send(&delivery.envelope).await {
                Ok(true) => Outcome::Done(None),
                // Another worker holds its lease: come back when it may have finished.
                Ok(false) => Outcome::Retry { error: None, issued, pause: Duration::from_secs(1) },
                Err(e) => {
                    Outcome::Retry { error: Some(e.to_string()), issued, pause: Duration::from_millis(500) }
                }
            });
        }
        outcomes
    }

    /// Never given: nobody waits on a send, it is retried until settled.
    fn unavailable(&self) -> Bytes {
        Bytes::new()
    }
}

pub struct Outbound {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    config: WhatsappConfig,
    graph: Graph,
    pace: Pace,
}

impl Outbound {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>, config: WhatsappConfig) -> anyhow::Result<Self> {
        let graph = Graph::new(&config.graph_base)?;
        let pace = Pace::new(config.rate.max(1));
        Ok(Self { bus, store, config, graph, pace })
    }

    pub async fn run(self, stop: impl Future<Output = ()>) -> switchboard_bus::Result<()> {
        let intake =
            Intake { durable: DURABLE_OUT, filter: subjects::WA_OUT, batch: 1, concurrency: CONCURRENCY };
        runner::run(self.bus.as_ref(), intake, &self, stop).await
    }

    /// True when done with (sent, failed, or not ours to send); false to come back later.
    async fn send(&self, envelope: &Envelope) -> anyhow::Result<bool> {
        let Ok(send) = pb::WhatsappSend::decode(&envelope.payload[..]) else {
            tracing::warn!("undecodable whatsapp send; dropped");
            return Ok(true);
        };
        let Ok(message_id) = send.message_id.parse::<Uuid>() else {
            tracing::warn!(id = %send.message_id, "whatsapp send with a bad message id; dropped");
            return Ok(true);
        };
        let mut attempts =
            match self.store.claim_send(message_id, &send.to, Timestamp::now(), LEASE_MS).await? {
                OutboxClaim::Send { attempts } => attempts,
                OutboxClaim::Sent(_) | OutboxClaim::Failed => return Ok(true),
                OutboxClaim::InFlight => return Ok(false),
            };
        let (Some(token), Some(number)) = (&self.config.access_token, &self.config.phone_number_id) else {
            let error = SendError::Fatal { code: 0, message: "WhatsApp sending is not configured".into() };
            self.fail(message_id, &send, &error).await?;
            return Ok(true);
        };
        loop {
            self.pace.acquire().await;
            attempts += 1;
            match self.graph.send_text(number, token, &send.to, &send.text).await {
                Ok(wamid) => {
                    metrics::counter!(telemetry::WA_SENT).increment(1);
                    if self.store.record_sent(message_id, &wamid, Timestamp::now()).await? {
                        let update = StatusUpdate {
                            message_id,
                            conversation_id: send.conversation_id.clone(),
                            status: DeliveryStatus::Sent,
                            timestamp: Timestamp::now(),
                            error: None,
                            // Notes are never sent.
                            private: false,
                        };
                        announce(self.bus.as_ref(), Event::MessageStatus(update)).await?;
                    }
                    return Ok(true);
                }
                Err(error @ SendError::Fatal { .. }) => {
                    self.fail(message_id, &send, &error).await?;
                    return Ok(true);
                }
                Err(error @ SendError::Retry { .. }) if attempts >= MAX_ATTEMPTS => {
                    self.fail(message_id, &send, &error).await?;
                    return Ok(true);
                }
                Err(SendError::Retry { code, message, retry_after }) => {
                    metrics::counter!(telemetry::WA_RETRIES).increment(1);
                    tracing::info!(%message_id, ?code, %message, attempts, "whatsapp send retried");
                    self.store.record_failure(message_id, &message, false, Timestamp::now()).await?;
                    tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(attempts))).await;
                }
            }
        }
    }

    async fn fail(&self, message_id: Uuid, send: &pb::WhatsappSend, error: &SendError) -> anyhow::Result<()> {
        metrics::counter!(telemetry::WA_FAILED).increment(1);
        tracing::warn!(%message_id, code = error.code(), message = error.message(), "whatsapp send failed");
        if !self.store.record_failure(message_id, error.message(), true, Timestamp::now()).await? {
            return Ok(());
        }
        let now = Timestamp::now();
        let change = self.store.set_status(message_id, DeliveryStatus::Failed, now).await?;
        let error = Some(StatusError { code: error.code(), title: error.message().to_owned() });
        let update = match change {
            Some(change) => StatusUpdate { error, ..change.update },
            None => StatusUpdate {
                message_id,
                conversation_id: send.conversation_id.clone(),
                status: DeliveryStatus::Failed,
                timestamp: now,
                error,
                private: false,
            },
        };
        announce(self.bus.as_ref(), Event::MessageStatus(update)).await?;
        Ok(())
    }
}

/// Exponential, with full jitter over its upper half.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_MAX);
    // Jitter from the OS-seeded generator uuid already carries.
    let unit = (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    ceiling.mul_f64(0.5 + unit / 2.0)
}

/// A token bucket: `rate` sends per second, bursts of `rate`.
struct Pace {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    fn new(rate: u32) -> Self {
        Self { rate: f64::from(rate), state: Mutex::new((f64::from(rate), Instant::now())) }
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(500));
        assert!(backoff(3) >= Duration::from_millis(1000));
        assert!(backoff(30) <= BACKOFF_MAX);
    }

    #[tokio::test]
    async fn the_bucket_paces_after_the_burst() {
        let pace = Pace::new(50);
        let start = Instant::now();
        for _ in 0..60 {
            pace.acquire().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(150), "{:?}", start.elapsed());
    }
}
