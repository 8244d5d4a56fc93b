//! Bus subscriptions that a node's connections share, one per key (a phone's
//! bot replies, a tenant's sync notices), counted so the last connection out
//! ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchboard_bus::{Bus, Subscription};
use tokio::task::JoinHandle;

use crate::telemetry;

/// Starts the task that relays one key's subscription to its connections.
type Start = Box<dyn Fn(String, Subscription) -> JoinHandle<()> + Send + Sync>;

pub struct Relays {
    bus: Arc<dyn Bus>,
    /// The `kind` label of `switchboard_subscriptions`.
    kind: &'static str,
    subject: fn(&str) -> String,
    start: Start,
    relays: tokio::sync::Mutex<HashMap<String, (JoinHandle<()>, usize)>>,
}

impl Relays {
    pub fn new(
        bus: Arc<dyn Bus>,
        kind: &'static str,
        subject: fn(&str) -> String,
        start: impl Fn(String, Subscription) -> JoinHandle<()> + Send + Sync + 'static,
    ) -> Self {
        Self { bus, kind, subject, start: Box::new(start), relays: Default::default() }
    }

    /// Takes a reference for `hold`'s connection; subscribed when this
    /// returns, so what is published afterwards arrives. A connection that went
    /// while this ran gets nothing, and keeps nothing.
    pub async fn acquire(&self, key: &str, hold: &RelayHold) -> switchboard_bus::Result<()> {
        self.take(key).await?;
        if !hold.hold() {
            self.drop_one(key).await;
        }
        Ok(())
    }

    /// Gives back `hold`'s reference, if it took one (on disconnect).
    pub async fn release(&self, key: &str, hold: &RelayHold) {
        if hold.close() {
            self.drop_one(key).await;
        }
    }

    async fn take(&self, key: &str) -> switchboard_bus::Result<()> {
        let mut relays = self.relays.lock().await;
        if let Some((_, count)) = relays.get_mut(key) {
            *count += 1;
            return Ok(());
        }
        let events = self.bus.subscribe(&(self.subject)(key)).await?;
        relays.insert(key.to_owned(), ((self.start)(key.to_owned(), events), 1));
        metrics::gauge!(telemetry::SUBSCRIPTIONS, "kind" => self.kind).increment(1.0);
        Ok(())
    }

    async fn drop_one(&self, key: &str) {
        let mut relays = self.relays.lock().await;
        if let Some((task, count)) = relays.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                task.abort();
                relays.remove(key);
                metrics::gauge!(telemetry::SUBSCRIPTIONS, "kind" => self.kind).decrement(1.0);
            }
        }
    }
}

/// A connection's reference on a relay. Acquiring is asynchronous and may
/// finish after the connection went: whichever of the two comes last gives
/// the reference back, exactly once.
#[derive(Default)]
pub struct RelayHold(Mutex<Hold>);

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Hold {
    #[default]
    None,
    Held,
    Closed,
}

impl RelayHold {
    /// After acquiring: `false` when the connection has already gone.
    fn hold(&self) -> bool {
        let mut hold = self.0.lock().expect("hold lock");
        if *hold == Hold::Closed {
            return false;
        }
        *hold = Hold::Held;
        true
    }

    /// On disconnect: `true` when a reference is held.
    fn close(&self) -> bool {
        std::mem::replace(&mut *self.0.lock().expect("hold lock"), Hold::Closed) == Hold::Held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use switchboard_bus::MemoryBus;

    fn relays() -> Relays {
        Relays::new(
            Arc::new(MemoryBus::new()),
            "test",
            |k| format!("t.{k}"),
            |_, mut events| tokio::spawn(async move { while events.next().await.is_some() {} }),
        )
    }

    async fn count(relays: &Relays, key: &str) -> usize {
        relays.relays.lock().await.get(key).map_or(0, |(_, n)| *n)
    }

    #[tokio::test]
    async fn the_last_connection_out_ends_the_subscription() {
        let relays = relays();
        let (a, b) = (RelayHold::default(), RelayHold::default());
        relays.acquire("k", &a).await.unwrap();
        relays.acquire("k", &b).await.unwrap();
        assert_eq!(count(&relays, "k").await, 2);
        relays.release("k", &a).await;
        relays.release("k", &a).await;
        assert_eq!(count(&relays, "k").await, 1);
        relays.release("k", &b).await;
        assert!(relays.relays.lock().await.is_empty());
    }

    #[tokio::test]
    async fn a_connection_that_went_before_its_acquire_finished_keeps_nothing() {
        let relays = relays();
        let gone = RelayHold::default();
        relays.release("k", &gone).await;
        relays.acquire("k", &gone).await.unwrap();
        assert!(relays.relays.lock().await.is_empty());
    }
}
