//! The bus on NATS: core subjects for ephemeral traffic, JetStream for what
//! must not be lost. Written for nats-server 2.9 (Debian's), so it uses no
//! later feature: 2.9 silently ignores multiple filter subjects and
//! per-message TTLs instead of refusing them.
//!
//! The client reconnects by itself and resubscribes core subscriptions; a
//! durable consumer is also re-created when the server lost it, so a server
//! restart only delays deliveries.
//!
//! Where it differs from the in-memory bus:
//! - `SB_COMMANDS` is a work queue, which takes one consumer name: every
//!   worker process shares it, and consuming it under a second name fails.
//! - A consumer process takes several messages ahead, so one it gives back
//!   (`nak`) may come after newer ones.
//! - A durable publish deduplicated by JetStream still reaches core
//!   subscribers; only the stream drops it.

mod leases;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::{AckKind, Acker as NatsAck, PublishMessage};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectErrorKind, ConnectOptions, HeaderMap};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::{
    Acker, Backlog, Bus, BusError, Consumer, Delivery, DurableStream, Envelope, Headers, Leases, Result,
    Subscription,
};
use leases::NatsLeases;

/// JetStream's default, the same as the in-memory bus.
const DEDUPE_WINDOW: Duration = Duration::from_secs(120);
/// Long enough for a late edge or an operator to replay a day of traffic.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a process that starts before NATS waits for it.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);
/// A subscription is live only once the server confirmed it.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages a consumer process takes ahead: few, because their ack wait runs
/// while they sit in its buffer, and others could handle them meanwhile.
const PULL_BATCH: usize = 32;
/// A pull request waits this long for messages before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How long a JetStream request (a publish's acknowledgement, an API call)
/// may take: beyond it, the server is likely electing a leader, and asking
/// again is better than waiting on.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a durable publish keeps trying through a leader election (a
/// three-node cluster of 2.9 takes 4 to 9 s to elect one); callers that
/// wait on an answer bound it by their own timeout.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(15);
const PUBLISH_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How long after its expiry a pull request is given up on: more than a
/// delivery's way from the server, far less than a client would notice.
const PULL_GRACE: Duration = Duration::from_millis(250);
/// The server proves a waiting pull request still exists this often; missing
/// beats mean the request (or the consumer) is gone and must be renewed.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings that differ between deployments (and tests).
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// How long a delivered message may stay unacknowledged before it is
    /// given to another consumer process. Every process of one durable must
    /// agree: each that opens the consumer sets it for all.
    pub ack_wait: Duration,
    /// Copies JetStream keeps of each stream: 3 on a three-node cluster, so
    /// losing any one server loses nothing and stops nothing.
    pub replicas: usize,
    /// How long a lease lives without renewal; also the ack wait of pulled
    /// (partition) consumers, so a dead owner's commands are redelivered
    /// about when its successor takes over.
    pub lease: Duration,
    /// Whether this process creates the streams and the lease bucket and
    /// brings them to these settings. Tools that only look (`status`,
    /// `tail`) do not: run with other settings, they must change nothing.
    pub declare: bool,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            replicas: 1,
            lease: crate::leases::DEFAULT_TTL,
            declare: true,
        }
    }
}

#[derive(Clone)]
pub struct NatsBus {
    client: Client,
    jetstream: Context,
    options: NatsOptions,
    leases: Arc<NatsLeases>,
    /// Pulled consumers by durable name, made once.
    pulled: Arc<Mutex<HashMap<String, jetstream::consumer::PullConsumer>>>,
}

impl NatsBus {
    /// Connects as `name` (shown in the server's connection list) and declares
    /// every [`DurableStream`].
    pub async fn connect(url: &str, name: &str) -> Result<Self> {
        Self::connect_with(url, name, NatsOptions::default()).await
    }

    /// [`NatsBus::connect`] with settings other than the defaults.
    pub async fn connect_with(url: &str, name: &str, options: NatsOptions) -> Result<Self> {
        let client = connect_client(url, name).await?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(JETSTREAM_TIMEOUT);
        let leases = if options.declare {
            for stream in DurableStream::ALL {
                declare_stream(&jetstream, stream, options.replicas.max(1)).await?;
            }
            NatsLeases::open(&jetstream, options.lease, options.replicas.max(1)).await?
        } else {
            NatsLeases::existing(&jetstream).await?
        };
        let leases = Arc::new(leases);
        Ok(Self { client, jetstream, options, leases, pulled: Arc::default() })
    }

    /// Returns once the stream stored the message (or found it a duplicate).
    async fn store(
        &self,
        envelope: &Envelope,
        msg_id: &str,
        stream: DurableStream,
    ) -> Result<(), PublishError> {
        let message = PublishMessage::build()
            .headers(header_map(&envelope.headers))
            .message_id(msg_id)
            .expected_stream(stream.name())
            .payload(envelope.payload.clone());
        self.jetstream.send_publish(envelope.subject.clone(), message).await?.await?;
        Ok(())
    }

    /// Returns once the server handled everything sent before: a message to
    /// ourselves comes back only then (`Client::flush` only empties our
    /// socket buffer; it does not wait for the server).
    async fn round_trip(&self) -> Result<()> {
        let inbox = self.client.new_inbox();
        let mut echo =
            self.client.subscribe(inbox.clone()).await.map_err(|e| unavailable("no round trip", e))?;
        self.client.publish(inbox, Bytes::new()).await.map_err(|e| unavailable("no round trip", e))?;
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            _ => Err(BusError::Unavailable("no answer from the NATS server".into())),
        }
    }

    fn consumer_config(&self, durable: &str, filter: &str, ack_wait: Duration) -> pull::Config {
        pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        }
    }

    /// The pulled consumer `durable`, made (or put back) when missing.
    async fn pulled(
        &self,
        stream: DurableStream,
        durable: &str,
        filter: &str,
    ) -> Result<jetstream::consumer::PullConsumer> {
        if let Some(consumer) = self.pulled.lock().expect("pulled lock").get(durable) {
            return Ok(consumer.clone());
        }
        let config = self.consumer_config(durable, filter, self.options.lease);
        let consumer = create_consumer(&self.jetstream, stream, self.options.replicas.max(1), config).await?;
        self.pulled.lock().expect("pulled lock").insert(durable.to_owned(), consumer.clone());
        Ok(consumer)
    }
}

/// Retries the first connection (the server may start after us); later
/// reconnects are the client's own.
/// `url` is one server or a comma-separated list of a cluster's; the client
/// connects to any and fails over to the others.
async fn connect_client(url: &str, name: &str) -> Result<Client> {
    let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut backoff = Backoff::default();
    loop {
        match ConnectOptions::new().name(name).connect(servers.as_slice()).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() < deadline && e.kind() != ConnectErrorKind::ServerParse => {
                tracing::warn!(error = %e, url, "NATS not reachable yet; retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(unavailable(format!("cannot connect to NATS at {url}"), e)),
        }
    }
}

fn stream_config(stream: DurableStream, replicas: usize) -> stream::Config {
    with_declared_settings(stream, replicas, stream::Config::default())
}

/// `config` with what we declare for `stream` put over it, so settings an
/// operator added on the server survive and only ours are enforced.
fn with_declared_settings(
    stream: DurableStream,
    replicas: usize,
    mut config: stream::Config,
) -> stream::Config {
    config.name = stream.name().to_owned();
    config.num_replicas = replicas;
    config.subjects = stream.subjects().iter().map(|s| (*s).to_owned()).collect();
    config.storage = StorageType::File;
    config.duplicate_window = DEDUPE_WINDOW;
    if stream.is_work_queue() {
        config.retention = RetentionPolicy::WorkQueue;
    } else {
        config.retention = RetentionPolicy::Limits;
        config.max_age = EVENTS_MAX_AGE;
    }
    config
}

/// Creates the stream, or brings an existing one to our settings; safe to run
/// from every process at every start.
async fn declare_stream(jetstream: &Context, stream: DurableStream, replicas: usize) -> Result<()> {
    let created = jetstream
        .get_or_create_stream(stream_config(stream, replicas))
        .await
        .map_err(|e| unavailable(format!("cannot create stream {}", stream.name()), e))?;
    let current = created.cached_info().config.clone();
    let wanted = with_declared_settings(
        stream,
        kept_replicas(stream.name(), current.num_replicas, replicas),
        current.clone(),
    );
    if wanted != current {
        tracing::info!(stream = stream.name(), "updating the stream's settings");
        jetstream
            .update_stream(&wanted)
            .await
            .map_err(|e| unavailable(format!("cannot update stream {}", stream.name()), e))?;
    }
    Ok(())
}

/// Replicas are raised to the setting, never lowered: one process started
/// without `SWITCHBOARD_NATS_REPLICAS` must not take a cluster's copies away.
fn kept_replicas(name: &str, current: usize, wanted: usize) -> usize {
    if current > wanted {
        tracing::warn!(
            stream = name,
            current,
            wanted,
            "the stream keeps its replicas: lower them by hand (nats stream edit) if that is meant"
        );
    }
    current.max(wanted)
}

fn unavailable(what: impl std::fmt::Display, cause: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {cause}"))
}

fn header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.iter() {
        // A line break would end the header early on the wire and let the
        // rest pose as another header (a forged Nats-Msg-Id, say).
        map.insert(name, value.replace(['\r', '\n'], " "));
    }
    map
}

fn envelope(message: async_nats::Message) -> Envelope {
    let mut headers = Headers::default();
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        for value in values {
            headers.insert(name.as_ref(), value.as_str());
        }
    }
    Envelope { subject: message.subject.to_string(), headers, payload: message.payload }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, envelope: Envelope) -> Result<()> {
        self.client
            .publish_with_headers(envelope.subject, header_map(&envelope.headers), envelope.payload)
            .await
            .map_err(|e| unavailable("publish failed", e))
    }

    async fn publish_durable(&self, envelope: Envelope, msg_id: &str) -> Result<()> {
        let stream = DurableStream::holding(&envelope.subject)
            .ok_or_else(|| BusError::NoStream(envelope.subject.clone()))?;
        let give_up = tokio::time::Instant::now() + PUBLISH_PATIENCE;
        let mut pause = BACKOFF_FIRST;
        loop {
            let error = match self.store(&envelope, msg_id, stream).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // While a clustered stream elects a new leader it has no responders
            // and publishes go unacknowledged: the same message id again is
            // safe (the stream deduplicates it) and lands once a leader is back.
            let transient = matches!(
                error.kind(),
                PublishErrorKind::StreamNotFound | PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
            );
            if !transient || tokio::time::Instant::now() + pause >= give_up {
                return Err(unavailable("durable publish not stored", error));
            }
            if error.kind() == PublishErrorKind::StreamNotFound {
                // A server that restarted without its storage has no streams
                // until someone declares them again; during an election this fails.
                let _ = declare_stream(&self.jetstream, stream, self.options.replicas.max(1)).await;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PUBLISH_PAUSE_MAX);
        }
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        let subscriber = self
            .client
            .subscribe(pattern.to_owned())
            .await
            .map_err(|e| unavailable("subscribe failed", e))?;
        // Without it, a publish from another connection right after this
        // returns could reach the server before the subscription.
        self.round_trip().await?;
        Ok(Subscription::new(subscriber.map(envelope)))
    }

    async fn consume(&self, stream: DurableStream, durable: &str, filter: &str) -> Result<Consumer> {
        let mut puller = Puller {
            jetstream: self.jetstream.clone(),
            stream,
            replicas: self.options.replicas.max(1),
            config: self.consumer_config(durable, filter, self.options.ack_wait),
            messages: None,
            backoff: Backoff::default(),
        };
        // Opened now so a misconfiguration fails the caller, and so the
        // consumer exists before this returns.
        puller.messages = Some(puller.open().await?);
        Ok(Consumer::new(futures_util::stream::unfold(puller, |mut puller| async move {
            let delivery = puller.next().await;
            Some((delivery, puller))
        })))
    }

    async fn pull(
        &self,
        stream: DurableStream,
        durable: &str,
        filter: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Consumer> {
        let consumer = self.pulled(stream, durable, filter).await?;
        let batch = consumer.batch().max_messages(max).expires(wait).messages().await;
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                // Perhaps the server lost the consumer: made again next time.
                self.pulled.lock().expect("pulled lock").remove(durable);
                return Err(unavailable(format!("cannot pull from {durable}"), e));
            }
        };
        // The server ends the request after `wait` with a 408, but before 2.9.15
        // it may drop an expiring request silently when a message comes at that
        // moment (nats-server#3942): waiting longer than the server would leave
        // the partition unpulled, its new commands waiting, for nothing.
        let deadline = tokio::time::sleep(wait + PULL_GRACE);
        Ok(Consumer::new(
            batch
                .take_until(deadline)
                .take_while(|message| std::future::ready(message.is_ok()))
                .filter_map(|message| std::future::ready(message.ok().map(delivery))),
        ))
    }

    async fn backlog(&self, stream: DurableStream, durable: &str, _filter: &str) -> Result<Backlog> {
        // Read, never made: whoever asks (an edge, `switchboard status`) must
        // not create consumers or change their settings.
        let mut consumer: jetstream::consumer::PullConsumer = self
            .jetstream
            .get_consumer_from_stream(durable, stream.name())
            .await
            .map_err(|e| unavailable(format!("no consumer {durable}"), e))?;
        let info = consumer.info().await.map_err(|e| unavailable(format!("no info on {durable}"), e))?;
        Ok(Backlog {
            pending: info.num_pending + info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
        })
    }

    fn leases(&self) -> Arc<dyn Leases> {
        self.leases.clone()
    }

    async fn is_ready(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// One process's share of a durable pull consumer, kept flowing across
/// reconnects: a consumer stream that ended or failed is opened again (and
/// the consumer re-created, should the server have lost it).
struct Puller {
    jetstream: Context,
    stream: DurableStream,
    replicas: usize,
    config: pull::Config,
    messages: Option<pull::Stream>,
    backoff: Backoff,
}

impl Puller {
    async fn next(&mut self) -> Delivery {
        loop {
            match self.next_message().await {
                Ok(message) => {
                    self.backoff = Backoff::default();
                    return delivery(message);
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        stream = self.stream.name(),
                        durable = self.config.durable_name.as_deref(),
                        "durable consumer interrupted; reopening"
                    );
                    self.messages = None;
                    self.backoff.wait().await;
                }
            }
        }
    }

    async fn next_message(&mut self) -> Result<jetstream::Message> {
        let messages = match &mut self.messages {
            Some(messages) => messages,
            None => self.messages.insert(self.open().await?),
        };
        match messages.next().await {
            Some(Ok(message)) => Ok(message),
            Some(Err(e)) => Err(unavailable("consumer failed", e)),
            None => Err(BusError::Unavailable("consumer ended".into())),
        }
    }

    async fn open(&self) -> Result<pull::Stream> {
        let name = self.stream.name();
        create_consumer(&self.jetstream, self.stream, self.replicas, self.config.clone())
            .await?
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| unavailable(format!("cannot pull from {name}"), e))
    }
}

/// Creating is idempotent with the same settings, and puts back a consumer
/// (or a stream) the server no longer has.
async fn create_consumer(
    jetstream: &Context,
    stream: DurableStream,
    replicas: usize,
    config: pull::Config,
) -> Result<jetstream::consumer::PullConsumer> {
    let name = stream.name();
    match jetstream.create_consumer_on_stream(config.clone(), name).await {
        Ok(consumer) => Ok(consumer),
        Err(_) => {
            declare_stream(jetstream, stream, replicas).await?;
            jetstream
                .create_consumer_on_stream(config, name)
                .await
                .map_err(|e| unavailable(format!("cannot create a consumer on {name}"), e))
        }
    }
}

fn delivery(message: jetstream::Message) -> Delivery {
    let (message, ack) = message.split();
    Delivery::new(envelope(message), Box::new(NatsAcker(ack)))
}

struct NatsAcker(NatsAck);

#[async_trait]
impl Acker for NatsAcker {
    /// Waits for the server's confirmation, so `Ok` means the message is
    /// settled and will not come back.
    async fn ack(self: Box<Self>) -> Result<()> {
        self.0.double_ack().await.map_err(|e| unavailable("ack failed", e))
    }

    async fn nak(self: Box<Self>) -> Result<()> {
        self.0.double_ack_with(AckKind::Nak(None)).await.map_err(|e| unavailable("nak failed", e))
    }
}

/// Doubling pauses between retries, so a long outage costs little.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_FIRST }
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }
}
