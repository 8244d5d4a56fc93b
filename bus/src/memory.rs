//! The in-process bus of `switchboard dev`: the same semantics as NATS with
//! JetStream, within one process and without persistence (the store is what
//! survives a restart; a command not yet acknowledged was never answered).
//! Event streams are not retained: nothing in one process replays them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use crate::leases::MemoryLeases;
use crate::subjects::{is_wildcard, matches};
use crate::{
    Acker, Backlog, Bus, BusError, Consumer, Delivery, DurableStream, Envelope, Leases, Result, Subscription,
};

/// How many undelivered messages a subscriber may have before the newest are
/// dropped, as NATS drops them for a slow consumer.
const SUBSCRIBER_BUFFER: usize = 8192;
/// JetStream's default duplicate window.
const DEDUPE_WINDOW: Duration = Duration::from_secs(120);
/// The most ids the window holds (about 50 MB): past that, at rates beyond
/// what one process stores, the oldest are forgotten before their time.
const DEDUPE_MAX: usize = 1 << 20;

#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    exact: RwLock<HashMap<String, Vec<Subscriber>>>,
    /// Wildcard subscriptions by their literal prefix (the tokens before the first
    /// wildcard), so a publish looks at the few patterns that can match it rather
    /// than at every conversation's subscription.
    wildcard: RwLock<HashMap<String, Vec<(String, Subscriber)>>>,
    streams: Mutex<HashMap<DurableStream, Arc<WorkQueue>>>,
    dedupe: Mutex<Dedupe>,
    dropped: AtomicU64,
    leases: Arc<MemoryLeases>,
}

#[derive(Clone)]
struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Envelope>,
}

/// The ids published within the window. Each is kept as a 128-bit keyed hash
/// rather than as its text: at a thousand messages a second the window holds
/// hundreds of thousands of ids, and this keeps each to a few dozen bytes
/// (two ids sharing a hash is a 2^-128 chance per pair).
struct Dedupe {
    keys: [RandomState; 2],
    seen: HashSet<u128>,
    order: VecDeque<(Instant, u128)>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Self { keys: [RandomState::new(), RandomState::new()], seen: HashSet::new(), order: VecDeque::new() }
    }
}

impl Dedupe {
    /// True the first time an id is seen within the window.
    fn first_time(&mut self, id: &str, now: Instant) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) < DEDUPE_WINDOW && self.order.len() < DEDUPE_MAX {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        let hash = u128::from(self.keys[0].hash_one(id)) << 64 | u128::from(self.keys[1].hash_one(id));
        if !self.seen.insert(hash) {
            return false;
        }
        self.order.push_back((now, hash));
        true
    }
}

/// A stream's stored messages, shared by all consumers (work-queue retention);
/// each consumer takes the oldest that matches its filter. Messages are kept in
/// one lane per subject (a stream has a handful), so a consumer never scans
/// another consumer's backlog: a pop looks at each matching lane's head only.
#[derive(Default)]
struct WorkQueue {
    lanes: Mutex<Lanes>,
    ready: Notify,
}

#[derive(Default)]
struct Lanes {
    next_seq: u64,
    by_subject: HashMap<String, VecDeque<(u64, Envelope)>>,
    /// The messages taken and not yet acknowledged or given back, by their subject.
    in_hand: HashMap<u64, String>,
    /// The messages given back and not yet acknowledged since, by their subject.
    redelivered: HashMap<u64, String>,
}

impl WorkQueue {
    fn push_back(&self, envelope: Envelope) {
        {
            let mut lanes = self.lanes.lock().expect("queue lock");
            let seq = lanes.next_seq;
            lanes.next_seq += 1;
            lanes.by_subject.entry(envelope.subject.clone()).or_default().push_back((seq, envelope));
        }
        // Every waiter looks: the one whose filter matches takes it.
        self.ready.notify_waiters();
    }

    /// Redelivered first, with its original place, so a retried command keeps its order.
    fn push_front(&self, seq: u64, envelope: Envelope) {
        {
            let mut lanes = self.lanes.lock().expect("queue lock");
            lanes.in_hand.remove(&seq);
            lanes.redelivered.insert(seq, envelope.subject.clone());
            lanes.by_subject.entry(envelope.subject.clone()).or_default().push_front((seq, envelope));
        }
        self.ready.notify_waiters();
    }

    fn backlog(&self, filter: &str) -> Backlog {
        let lanes = self.lanes.lock().expect("queue lock");
        let wanted = |subject: &str| filter.is_empty() || matches(filter, subject);
        let waiting: u64 =
            lanes.by_subject.iter().filter(|(s, _)| wanted(s)).map(|(_, l)| l.len() as u64).sum();
        let in_hand = lanes.in_hand.values().filter(|s| wanted(s)).count() as u64;
        Backlog {
            pending: waiting + in_hand,
            redelivered: lanes.redelivered.values().filter(|s| wanted(s)).count() as u64,
        }
    }

    async fn pop(&self, filter: &str) -> (u64, Envelope) {
        loop {
            let notified = self.ready.notified();
            {
                let mut lanes = self.lanes.lock().expect("queue lock");
                let oldest = lanes
                    .by_subject
                    .iter_mut()
                    .filter(|(subject, _)| filter.is_empty() || matches(filter, subject))
                    .filter_map(|(_, lane)| Some((lane.front()?.0, lane)))
                    .min_by_key(|(seq, _)| *seq);
                if let Some((_, lane)) = oldest {
                    let (seq, envelope) = lane.pop_front().expect("lane has a head");
                    lanes.in_hand.insert(seq, envelope.subject.clone());
                    return (seq, envelope);
                }
            }
            notified.await;
        }
    }
}

struct QueueAcker {
    queue: Arc<WorkQueue>,
    seq: u64,
    envelope: Envelope,
}

#[async_trait]
impl Acker for QueueAcker {
    async fn ack(self: Box<Self>) -> Result<()> {
        let mut lanes = self.queue.lanes.lock().expect("queue lock");
        lanes.in_hand.remove(&self.seq);
        lanes.redelivered.remove(&self.seq);
        Ok(())
    }

    async fn nak(self: Box<Self>) -> Result<()> {
        self.queue.push_front(self.seq, self.envelope);
        Ok(())
    }
}

fn queued_delivery(queue: &Arc<WorkQueue>, seq: u64, envelope: Envelope) -> Delivery {
    let acker = Box::new(QueueAcker { queue: queue.clone(), seq, envelope: envelope.clone() });
    Delivery::new(envelope, acker)
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus whose leases live `ttl` without renewal.
    pub fn with_lease(ttl: Duration) -> Self {
        Self { inner: Arc::new(Inner { leases: Arc::new(MemoryLeases::new(ttl)), ..Inner::default() }) }
    }

    /// Messages dropped because a subscriber did not keep up.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn queue(&self, stream: DurableStream) -> Arc<WorkQueue> {
        self.inner.streams.lock().expect("streams lock").entry(stream).or_default().clone()
    }

    fn fan_out(&self, envelope: &Envelope) {
        let deliver = |sub: &Subscriber| {
            if sub.tx.try_send(envelope.clone()).is_err() {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        };
        if let Some(subs) = self.inner.exact.read().expect("subs lock").get(&envelope.subject) {
            subs.iter().for_each(deliver);
        }
        let wildcard = self.inner.wildcard.read().expect("subs lock");
        let subject = envelope.subject.as_str();
        let prefixes = std::iter::once("")
            .chain(subject.match_indices('.').map(|(at, _)| &subject[..at]))
            .chain(std::iter::once(subject));
        for prefix in prefixes {
            for (pattern, sub) in wildcard.get(prefix).into_iter().flatten() {
                if matches(pattern, subject) {
                    deliver(sub);
                }
            }
        }
    }
}

/// The tokens of a pattern before its first wildcard ("" when it starts with one).
fn literal_prefix(pattern: &str) -> &str {
    let mut end = 0;
    for token in pattern.split('.') {
        if token == "*" || token == ">" {
            break;
        }
        end += token.len() + 1;
    }
    &pattern[..end.saturating_sub(1)]
}

/// Removes a subscriber when its subscription is dropped.
struct Unsubscribe {
    inner: Arc<Inner>,
    pattern: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if is_wildcard(&self.pattern) {
            let mut wildcard = self.inner.wildcard.write().expect("subs lock");
            let prefix = literal_prefix(&self.pattern);
            if let Some(subs) = wildcard.get_mut(prefix) {
                subs.retain(|(_, s)| s.id != self.id);
                if subs.is_empty() {
                    wildcard.remove(prefix);
                }
            }
        } else {
            let mut exact = self.inner.exact.write().expect("subs lock");
            if let Some(subs) = exact.get_mut(&self.pattern) {
                subs.retain(|s| s.id != self.id);
                if subs.is_empty() {
                    exact.remove(&self.pattern);
                }
            }
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, envelope: Envelope) -> Result<()> {
        self.fan_out(&envelope);
        Ok(())
    }

    async fn publish_durable(&self, envelope: Envelope, msg_id: &str) -> Result<()> {
        let stream = DurableStream::holding(&envelope.subject)
            .ok_or_else(|| BusError::NoStream(envelope.subject.clone()))?;
        if !self.inner.dedupe.lock().expect("dedupe lock").first_time(msg_id, Instant::now()) {
            return Ok(());
        }
        self.fan_out(&envelope);
        // Nothing in one process replays events, so only work is retained.
        if stream.is_work_queue() {
            self.queue(stream).push_back(envelope);
        }
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        let (tx, mut rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Subscriber { id, tx };
        if is_wildcard(pattern) {
            let prefix = literal_prefix(pattern).to_owned();
            self.inner
                .wildcard
                .write()
                .expect("subs lock")
                .entry(prefix)
                .or_default()
                .push((pattern.to_owned(), sub));
        } else {
            self.inner.exact.write().expect("subs lock").entry(pattern.to_owned()).or_default().push(sub);
        }
        let guard = Unsubscribe { inner: self.inner.clone(), pattern: pattern.to_owned(), id };
        Ok(Subscription::new(futures_util::stream::poll_fn(move |cx| {
            let _unsubscribe_on_drop = &guard;
            rx.poll_recv(cx)
        })))
    }

    async fn consume(&self, stream: DurableStream, _durable: &str, filter: &str) -> Result<Consumer> {
        let queue = self.queue(stream);
        let filter = filter.to_owned();
        Ok(Consumer::new(futures_util::stream::unfold((queue, filter), |(queue, filter)| async move {
            let (seq, envelope) = queue.pop(&filter).await;
            Some((queued_delivery(&queue, seq, envelope), (queue, filter)))
        })))
    }

    async fn pull(
        &self,
        stream: DurableStream,
        _durable: &str,
        filter: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Consumer> {
        let queue = self.queue(stream);
        let (filter, deadline) = (filter.to_owned(), tokio::time::Instant::now() + wait);
        let state = (queue, filter, max);
        Ok(Consumer::new(futures_util::stream::unfold(state, move |(queue, filter, left)| async move {
            if left == 0 {
                return None;
            }
            // Cancelling a pop loses nothing: it takes a message only when it returns.
            let (seq, envelope) = tokio::time::timeout_at(deadline, queue.pop(&filter)).await.ok()?;
            Some((queued_delivery(&queue, seq, envelope), (queue, filter, left - 1)))
        })))
    }

    async fn backlog(&self, stream: DurableStream, _durable: &str, filter: &str) -> Result<Backlog> {
        Ok(self.queue(stream).backlog(filter))
    }

    fn leases(&self) -> Arc<dyn Leases> {
        self.inner.leases.clone()
    }

    async fn is_ready(&self) -> bool {
        true
    }
}
