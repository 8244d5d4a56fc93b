//! Commands that expect an answer: an edge publishes a durable command naming
//! a reply subject, a worker handles it once and publishes the result there.
//! The command is durable, the answer is not: an edge that dies stops waiting,
//! the work still happens, and a client retry finds it done (idempotency).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use crate::{Bus, BusError, Envelope, Result, headers, subjects};

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Bytes>>>>;

#[derive(Clone)]
pub struct Caller {
    bus: Arc<dyn Bus>,
    node: String,
    next: Arc<AtomicU64>,
    pending: Pending,
    timeout: Duration,
}

impl Caller {
    /// Listens on this node's reply subjects until the process ends.
    pub async fn start(bus: Arc<dyn Bus>, node: &str, timeout: Duration) -> Result<Self> {
        let pending: Pending = Arc::default();
        let mut replies = bus.subscribe(&subjects::reply_inbox(node)).await?;
        let routes = pending.clone();
        tokio::spawn(async move {
            while let Some(reply) = replies.next().await {
                let waiter = routes.lock().expect("pending lock").remove(&reply.subject);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(reply.payload);
                }
            }
        });
        Ok(Self { bus, node: node.to_owned(), next: Arc::default(), pending, timeout })
    }

    /// Publishes `envelope` durably (deduplicated on `msg_id`) and waits for its answer.
    pub async fn call(&self, envelope: Envelope, msg_id: &str) -> Result<Bytes> {
        let bus = self.bus.clone();
        let msg_id = msg_id.to_owned();
        self.exchange(envelope, self.timeout, async move |e| bus.publish_durable(e, &msg_id).await).await
    }

    /// Publishes `envelope` to whoever listens now and waits up to `wait` for
    /// the first answer; `None` when nobody answered.
    pub async fn request(&self, envelope: Envelope, wait: Duration) -> Result<Option<Bytes>> {
        let bus = self.bus.clone();
        match self.exchange(envelope, wait, async move |e| bus.publish(e).await).await {
            Err(BusError::Timeout(_)) => Ok(None),
            other => other.map(Some),
        }
    }

    async fn exchange(
        &self,
        envelope: Envelope,
        wait: Duration,
        send: impl AsyncFnOnce(Envelope) -> Result<()>,
    ) -> Result<Bytes> {
        let reply_to = subjects::reply_subject(&self.node, self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(reply_to.clone(), tx);
        // One deadline for sending and answering: a publish still retrying
        // through an election when it passes may yet be stored, so the
        // outcome is unknown (a timeout), not a failure.
        let deadline = tokio::time::Instant::now() + wait;
        let sent =
            tokio::time::timeout_at(deadline, send(envelope.header(headers::REPLY_TO, reply_to.clone())));
        let outcome = match sent.await {
            Ok(Ok(())) => tokio::time::timeout_at(deadline, rx)
                .await
                .map_err(|_| BusError::Timeout(wait))
                .and_then(|r| r.map_err(|_| BusError::Unavailable("reply router stopped".into()))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BusError::Timeout(wait)),
        };
        self.pending.lock().expect("pending lock").remove(&reply_to);
        outcome
    }
}

/// Answers a command, when it named a reply subject.
pub async fn reply(bus: &dyn Bus, command: &Envelope, payload: Bytes) -> Result<()> {
    match command.headers.get(headers::REPLY_TO) {
        Some(to) => bus.publish(Envelope::new(to, payload)).await,
        None => Ok(()),
    }
}
