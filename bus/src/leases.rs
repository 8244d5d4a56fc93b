//! Leases: keys that live only while their holder renews them, in a
//! key-value bucket every process shares (a JetStream bucket whose max age
//! is the lease on NATS; a map in the in-memory bus). Workers hold their
//! partitions and announce themselves with them; edges announce themselves.
//!
//! A lease is advisory: it keeps two workers from pulling one partition at
//! once nearly always, but a process frozen past its lease may still act
//! for a moment, so the store fences writes by the epoch each owner claimed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::broadcast;

use crate::Result;

/// How long a lease lives without renewal, unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);

/// A key's value as of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Bytes,
    pub revision: u64,
}

/// What a watcher sees.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Written (created or renewed).
    Put(Entry),
    /// Released by its holder. A lease that lapses says nothing: watchers
    /// notice that it was not renewed.
    Released(String),
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// How long a key lives without renewal.
    fn ttl(&self) -> Duration;
    /// Takes `key` when nobody holds it: its revision, `None` when it is held.
    async fn acquire(&self, key: &str, value: Bytes) -> Result<Option<u64>>;
    /// Keeps holding `key` for another lease: its new revision, `None` when
    /// it was lost (it lapsed or someone else holds it now).
    async fn renew(&self, key: &str, value: Bytes, revision: u64) -> Result<Option<u64>>;
    /// Writes `key` whoever holds it: for a key only its writer ever writes.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64>;
    /// Lets `key` go at once, so a waiting process need not wait for it to
    /// lapse; with a revision, only while the key is still at it (held by us).
    async fn release(&self, key: &str, revision: Option<u64>) -> Result<()>;
    /// Every live key, then every change after.
    async fn watch(&self) -> Result<BoxStream<'static, Change>>;
    /// Every live key, now.
    async fn entries(&self) -> Result<Vec<Entry>>;
}

/// The leases of the in-memory bus.
pub struct MemoryLeases {
    ttl: Duration,
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
}

#[derive(Default)]
struct State {
    revision: u64,
    keys: HashMap<String, (Entry, Instant)>,
}

impl State {
    fn live(&self, key: &str, ttl: Duration) -> Option<&Entry> {
        self.keys.get(key).filter(|(_, at)| at.elapsed() < ttl).map(|(entry, _)| entry)
    }

    fn write(&mut self, key: &str, value: Bytes) -> Entry {
        self.revision += 1;
        let entry = Entry { key: key.to_owned(), value, revision: self.revision };
        self.keys.insert(key.to_owned(), (entry.clone(), Instant::now()));
        entry
    }
}

impl Default for MemoryLeases {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl MemoryLeases {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, state: Mutex::default(), changes: broadcast::channel(1024).0 }
    }

    fn live(&self, state: &State) -> Vec<Entry> {
        state
            .keys
            .values()
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(entry, _)| entry.clone())
            .collect()
    }

    fn write_if(&self, key: &str, value: Bytes, allowed: impl FnOnce(Option<&Entry>) -> bool) -> Option<u64> {
        let mut state = self.state.lock().expect("lease lock");
        if !allowed(state.live(key, self.ttl)) {
            return None;
        }
        let entry = state.write(key, value);
        let revision = entry.revision;
        // Sent under the lock, so watchers see writes in revision order.
        let _ = self.changes.send(Change::Put(entry));
        Some(revision)
    }
}

#[async_trait]
impl Leases for MemoryLeases {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn acquire(&self, key: &str, value: Bytes) -> Result<Option<u64>> {
        Ok(self.write_if(key, value, |live| live.is_none()))
    }

    async fn renew(&self, key: &str, value: Bytes, revision: u64) -> Result<Option<u64>> {
        Ok(self.write_if(key, value, |live| live.is_some_and(|e| e.revision == revision)))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64> {
        Ok(self.write_if(key, value, |_| true).expect("a put is always allowed"))
    }

    async fn release(&self, key: &str, revision: Option<u64>) -> Result<()> {
        let mut state = self.state.lock().expect("lease lock");
        let ours = state.keys.get(key).is_some_and(|(e, _)| revision.is_none_or(|r| r == e.revision));
        if ours && state.keys.remove(key).is_some() {
            let _ = self.changes.send(Change::Released(key.to_owned()));
        }
        Ok(())
    }

    async fn watch(&self) -> Result<BoxStream<'static, Change>> {
        let (live, changes) = {
            let state = self.state.lock().expect("lease lock");
            (self.live(&state), self.changes.subscribe())
        };
        let later = receiver_stream(changes);
        Ok(futures_util::stream::iter(live.into_iter().map(Change::Put)).chain(later).boxed())
    }

    async fn entries(&self) -> Result<Vec<Entry>> {
        Ok(self.live(&self.state.lock().expect("lease lock")))
    }
}

/// A broadcast receiver as a stream; a watcher that fell behind skips what it
/// missed, which renewals make good within one lease.
fn receiver_stream(changes: broadcast::Receiver<Change>) -> BoxStream<'static, Change> {
    futures_util::stream::unfold(changes, |mut changes| async move {
        loop {
            match changes.recv().await {
                Ok(change) => return Some((change, changes)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}
