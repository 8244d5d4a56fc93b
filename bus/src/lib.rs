//! The bus: how edges and workers talk.
//!
//! - [`Bus`]: the one interface: core publish/subscribe with NATS wildcards for
//!   ephemeral events, durable publish (deduplicated by message id) and shared
//!   durable consumers for work that must not be lost.
//! - [`memory`]: the in-process bus of `switchboard dev`.
//! - [`nats`]: the bus of a deployment, on NATS with JetStream (2.9 or later).
//! - [`subjects`] and [`headers`]: the names operators see on the wire; an id
//!   becomes one subject token by an injective encoding, so no two ids share
//!   a subject and none adds a token or a wildcard.
//! - [`partition`]: which partition a conversation's (or tenant's) commands
//!   go to; [`leases`]: who holds which partition, and who is alive;
//!   [`roster`]: the cluster at a glance, read from the leases.
//! - [`events`]: what flows back out to edges, encoded once.
//! - [`rpc`]: commands that expect an answer (an edge waiting for a worker).
//! - [`connect`]: either bus, from its URL (`memory:` or `nats://…`).

pub mod events;
pub mod headers;
pub mod leases;
pub mod memory;
pub mod nats;
pub mod partition;
pub mod roster;
pub mod rpc;
pub mod subjects;

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

pub use headers::Headers;
pub use leases::Leases;
pub use memory::MemoryBus;
pub use nats::{NatsBus, NatsOptions};
pub use partition::Partitions;

/// One message on the bus.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Envelope {
    pub subject: String,
    pub headers: Headers,
    pub payload: Bytes,
}

impl Envelope {
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self { subject: subject.into(), headers: Headers::default(), payload: payload.into() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// What a durable consumer has not yet acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Waiting, or delivered and in hand.
    pub pending: u64,
    /// Of those, delivered more than once (given back, or not acknowledged in time).
    pub redelivered: u64,
}

/// A durable stream the project declares (and creates in JetStream at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DurableStream {
    /// Work for the workers, `sb.cmd.>`: kept until a worker acknowledges it.
    Commands,
    /// What the workers stored (messages, statuses, conversations): kept for
    /// a while so operators and late consumers can replay it.
    Events,
}

impl DurableStream {
    pub const ALL: [DurableStream; 2] = [DurableStream::Commands, DurableStream::Events];

    pub fn name(self) -> &'static str {
        match self {
            DurableStream::Commands => "SB_COMMANDS",
            DurableStream::Events => "SB_EVENTS",
        }
    }

    pub fn subjects(self) -> &'static [&'static str] {
        match self {
            DurableStream::Commands => &[subjects::COMMANDS, subjects::WA_IN, subjects::WA_OUT],
            DurableStream::Events => {
                // Not `sb.inbox.updated`: an inbox update is advisory (the next
                // one corrects a lost one) and comes with nearly every message,
                // so storing it would cost the stream a write per message.
                &[subjects::CONV_MSG_ALL, subjects::CONV_STATUS_ALL, subjects::INBOX_NEW]
            }
        }
    }

    /// Work-queue streams hold each message until one consumer acknowledges it.
    pub fn is_work_queue(self) -> bool {
        matches!(self, DurableStream::Commands)
    }

    /// The stream that holds `subject`, if any.
    pub fn holding(subject: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.subjects().iter().any(|p| subjects::matches(p, subject)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no durable stream holds subject {0}")]
    NoStream(String),
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// Opens the bus a URL names: `memory:` (a new in-process bus: every part of
/// one process must share the one returned) or `nats://…` (a comma-separated
/// list for a cluster), named `node` there; `options` apply to NATS.
pub async fn connect(url: &str, node: &str, options: NatsOptions) -> Result<std::sync::Arc<dyn Bus>> {
    if url == "memory:" {
        return Ok(std::sync::Arc::new(MemoryBus::with_lease(options.lease)));
    }
    if url.starts_with("nats://") || url.starts_with("tls://") {
        return Ok(std::sync::Arc::new(NatsBus::connect_with(url, node, options).await?));
    }
    Err(BusError::Unavailable(format!(
        "a bus URL is memory: or nats://host:port, not {:?}",
        url.split(':').next().unwrap_or_default()
    )))
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Fire and forget: delivered to whoever is subscribed now.
    async fn publish(&self, envelope: Envelope) -> Result<()>;
    /// Stored in the durable stream that holds the subject before this returns;
    /// a second publish with the same `msg_id` within the dedupe window is dropped.
    async fn publish_durable(&self, envelope: Envelope, msg_id: &str) -> Result<()>;
    /// Everything published on subjects matching `pattern` (`*` and `>` wildcards).
    async fn subscribe(&self, pattern: &str) -> Result<Subscription>;
    /// A durable consumer named `durable` of the stream's subjects matching
    /// `filter` (empty: all of them), shared by every process that names it: each stored message
    /// goes to one of them until it is acknowledged. On a work queue, the
    /// filters of different consumers must not overlap.
    async fn consume(&self, stream: DurableStream, durable: &str, filter: &str) -> Result<Consumer>;
    /// One pull request on the durable consumer named `durable` (made with
    /// `filter` when missing), for a consumer only one process reads at a
    /// time (a partition's owner): up to `max` deliveries, each as soon as it
    /// is stored, until `max` have come or `wait` has passed; then the stream
    /// ends and nothing more is delivered for it, so an owner that stops
    /// pulling leaves nothing stranded in its buffers. A delivery not
    /// acknowledged within the lease goes to a later request.
    async fn pull(
        &self,
        stream: DurableStream,
        durable: &str,
        filter: &str,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Consumer>;
    /// What `durable` (consuming `filter`) has not yet acknowledged; an
    /// error while no consumer process has made it.
    async fn backlog(&self, stream: DurableStream, durable: &str, filter: &str) -> Result<Backlog>;
    /// The leases every process on this bus shares.
    fn leases(&self) -> std::sync::Arc<dyn Leases>;
    /// Whether the bus can take publishes now.
    async fn is_ready(&self) -> bool;
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription(BoxStream<'static, Envelope>);

impl Subscription {
    pub fn new(stream: impl Stream<Item = Envelope> + Send + 'static) -> Self {
        Self(Box::pin(stream))
    }
}

impl Stream for Subscription {
    type Item = Envelope;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// How a durable delivery is settled.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<()>;
    /// Give it back for redelivery.
    async fn nak(self: Box<Self>) -> Result<()>;
}

/// One message of a durable stream, to be acknowledged once handled.
pub struct Delivery {
    pub envelope: Envelope,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(envelope: Envelope, acker: Box<dyn Acker>) -> Self {
        Self { envelope, acker }
    }

    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    pub async fn nak(self) -> Result<()> {
        self.acker.nak().await
    }
}

/// A durable consumer's deliveries.
pub struct Consumer(BoxStream<'static, Delivery>);

impl Consumer {
    pub fn new(stream: impl Stream<Item = Delivery> + Send + 'static) -> Self {
        Self(Box::pin(stream))
    }

    /// Whatever deliveries are ready, up to `max` at a time, until the
    /// consumer ends or `stop` completes; a batch already handed out is the
    /// caller's to finish.
    pub fn batches_until(
        self,
        max: usize,
        stop: impl Future<Output = ()>,
    ) -> impl Stream<Item = Vec<Delivery>> {
        use futures_util::StreamExt;
        self.ready_chunks(max).take_until(stop)
    }
}

impl Stream for Consumer {
    type Item = Delivery;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.0.as_mut().poll_next(cx)
    }
}
