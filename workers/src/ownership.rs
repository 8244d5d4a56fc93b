//! Who owns which partition of a kind's commands. Each worker announces
//! itself under `worker.<kind>.<node>` and holds its partitions under
//! `owner.<kind>.<partition>`, every lease renewed three times per lease.
//! From the bucket's changes each worker keeps a view of the live workers
//! and owners, and holds its fair share: the partitions spread over the live
//! workers by their sorted names, the counts differing by at most one. A
//! worker that joins takes what the others hand over; the partitions of one
//! whose lease lapsed are taken by the others.
//!
//! Taking a partition claims it in the store, which raises its epoch (the
//! fence, see `switchboard_store::partitions`); the runner pulls it only
//! after that, and stores only under that epoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use switchboard_bus::leases::Change;
use switchboard_bus::roster::{Member, member_key, owner_key};
use switchboard_bus::{Leases, Partitions};
use switchboard_store::PartitionStore;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the runner is told to do with a partition.
#[derive(Debug, PartialEq)]
pub enum Order {
    /// Pull it, storing under this epoch.
    Take { partition: u32, epoch: u64 },
    /// Lost (its lease lapsed or was taken): stop pulling it at once and give
    /// back what is in hand.
    Drop { partition: u32 },
    /// Another worker is due to take it: stop pulling, finish what is in
    /// hand, then say [`Ownership::handed_over`].
    HandOver { partition: u32 },
}

/// The runner's handle on its kind's ownership.
pub struct Ownership {
    orders: mpsc::UnboundedReceiver<Order>,
    done: mpsc::UnboundedSender<Done>,
    keeper: tokio::task::JoinHandle<()>,
    ttl: Duration,
}

enum Done {
    HandedOver(u32),
    /// The store fenced a batch of this partition out: someone else owns it.
    Fenced(u32),
    Stop,
}

impl Ownership {
    /// Starts keeping `node`'s share of `kind`'s partitions.
    pub async fn start(
        leases: Arc<dyn Leases>,
        store: Arc<dyn PartitionStore>,
        kind: &'static str,
        node: &str,
        partitions: Partitions,
    ) -> switchboard_bus::Result<Self> {
        let watch = leases.watch().await?;
        let ttl = leases.ttl();
        // Unbounded, so renewals never wait for a runner busy with a batch.
        let (orders_tx, orders) = mpsc::unbounded_channel();
        let (done, done_rx) = mpsc::unbounded_channel();
        let keeper = Keeper {
            leases,
            store,
            kind,
            node: node.to_owned(),
            partitions,
            view: HashMap::new(),
            held: BTreeMap::new(),
            orders: orders_tx,
            mismatch_logged: false,
        };
        let keeper = tokio::spawn(keeper.run(watch, done_rx));
        Ok(Self { orders, done, keeper, ttl })
    }

    pub async fn next(&mut self) -> Option<Order> {
        self.orders.recv().await
    }

    /// A partition ordered handed over is drained: its lease can go.
    pub fn handed_over(&self, partition: u32) {
        let _ = self.done.send(Done::HandedOver(partition));
    }

    pub fn fenced(&self, partition: u32) {
        let _ = self.done.send(Done::Fenced(partition));
    }

    /// Lets every lease go (the runner has handed everything over) and
    /// stops; returns once they are gone, so the others need not wait for
    /// them to lapse.
    pub async fn stop(self) {
        let _ = self.done.send(Done::Stop);
        // Bounded: with the bus gone they lapse by themselves.
        let _ = tokio::time::timeout(self.ttl, self.keeper).await;
    }
}

struct Held {
    revision: u64,
    renewed: Instant,
    handing_over: bool,
}

struct Keeper {
    leases: Arc<dyn Leases>,
    store: Arc<dyn PartitionStore>,
    kind: &'static str,
    node: String,
    partitions: Partitions,
    /// Every key of the bucket last seen written, and when.
    view: HashMap<String, (Bytes, Instant)>,
    held: BTreeMap<u32, Held>,
    orders: mpsc::UnboundedSender<Order>,
    mismatch_logged: bool,
}

impl Keeper {
    async fn run(mut self, mut watch: BoxStream<'static, Change>, mut done: mpsc::UnboundedReceiver<Done>) {
        let ttl = self.leases.ttl();
        // A tick a twelfth of the lease: renewals every fourth tick, and a
        // lapsed lease taken over within a tick of its lapse.
        let mut ticks = tokio::time::interval(ttl / 12);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The watch first replays the live keys: balance only once they are in.
        let settled = Instant::now() + ttl / 6;
        let mut member_renewed: Option<Instant> = None;
        loop {
            tokio::select! {
                change = watch.next() => match change {
                    Some(Change::Put(entry)) => {
                        self.view.insert(entry.key, (entry.value, Instant::now()));
                    }
                    Some(Change::Released(key)) => {
                        self.view.remove(&key);
                    }
                    None => match self.leases.watch().await {
                        Ok(again) => watch = again,
                        Err(e) => {
                            tracing::warn!(error = %e, kind = self.kind, "lease watch lost; retrying");
                            tokio::time::sleep(ttl / 6).await;
                        }
                    },
                },
                message = done.recv() => match message {
                    Some(Done::HandedOver(partition)) => self.release(partition).await,
                    Some(Done::Fenced(partition)) => self.lost(partition, "fenced by a newer owner").await,
                    Some(Done::Stop) | None => break,
                },
                _ = ticks.tick() => {
                    if member_renewed.is_none_or(|at| at.elapsed() >= ttl / 3) {
                        member_renewed = self.announce().await.then(Instant::now).or(member_renewed);
                    }
                    self.renew(ttl).await;
                    if Instant::now() >= settled {
                        self.balance().await;
                    }
                }
            }
        }
        let held: Vec<u32> = self.held.keys().copied().collect();
        for partition in held {
            self.release(partition).await;
        }
        if let Err(e) = self.leases.release(&member_key(self.kind, &self.node), None).await {
            tracing::warn!(error = %e, kind = self.kind, "worker announcement not withdrawn; it lapses");
        }
    }

    async fn announce(&mut self) -> bool {
        let member = Member { node: self.node.clone(), partitions: self.partitions.count() };
        let value = serde_json::to_vec(&member).expect("an announcement serialises");
        match self.leases.put(&member_key(self.kind, &self.node), value.into()).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, kind = self.kind, "worker announcement not renewed");
                false
            }
        }
    }

    async fn renew(&mut self, ttl: Duration) {
        let due: Vec<(u32, u64)> = self
            .held
            .iter()
            .filter(|(_, held)| held.renewed.elapsed() >= ttl / 3)
            .map(|(&p, held)| (p, held.revision))
            .collect();
        for (partition, revision) in due {
            let key = owner_key(self.kind, partition);
            match self.leases.renew(&key, self.node.clone().into(), revision).await {
                Ok(Some(revision)) => {
                    let held = self.held.get_mut(&partition).expect("held");
                    (held.revision, held.renewed) = (revision, Instant::now());
                }
                Ok(None) => self.lost(partition, "lease lost").await,
                Err(e) if self.held[&partition].renewed.elapsed() >= ttl => {
                    self.lost(partition, &format!("lease not renewed in time: {e}")).await;
                }
                Err(_) => {}
            }
        }
    }

    async fn lost(&mut self, partition: u32, why: &str) {
        if self.held.remove(&partition).is_some() {
            tracing::warn!(kind = self.kind, partition, why, "partition lost");
            let _ = self.orders.send(Order::Drop { partition });
        }
    }

    async fn release(&mut self, partition: u32) {
        let Some(held) = self.held.remove(&partition) else { return };
        let key = owner_key(self.kind, partition);
        if let Err(e) = self.leases.release(&key, Some(held.revision)).await {
            tracing::warn!(error = %e, kind = self.kind, partition, "lease not released; it lapses");
        }
    }

    /// The live workers of this kind, by name, this one among them.
    fn members(&mut self) -> Vec<String> {
        let ttl = self.leases.ttl();
        let prefix = format!("worker.{}.", self.kind);
        let own = member_key(self.kind, &self.node);
        let mut members = vec![own.clone()];
        for (key, (value, seen)) in &self.view {
            if !key.starts_with(&prefix) || *key == own || seen.elapsed() >= ttl {
                continue;
            }
            match serde_json::from_slice::<Member>(value) {
                Ok(member) if member.partitions == self.partitions.count() => members.push(key.clone()),
                _ if !self.mismatch_logged => {
                    self.mismatch_logged = true;
                    tracing::error!(
                        worker = key,
                        partitions = self.partitions.count(),
                        "a worker of this kind runs with another partition count; \
                         every process must have the same SWITCHBOARD_PARTITIONS"
                    );
                }
                _ => {}
            }
        }
        members.sort();
        members
    }

    /// How many partitions this worker should hold now.
    fn share(&mut self) -> usize {
        let members = self.members();
        let own = member_key(self.kind, &self.node);
        let rank = members.iter().position(|m| *m == own).expect("self is a member");
        let (count, n) = (self.partitions.count() as usize, members.len());
        count / n + usize::from(rank < count % n)
    }

    async fn balance(&mut self) {
        let share = self.share();
        let owned = self.held.values().filter(|h| !h.handing_over).count();
        if owned > share {
            let excess: Vec<u32> = self
                .held
                .iter()
                .rev()
                .filter(|(_, h)| !h.handing_over)
                .map(|(&p, _)| p)
                .take(owned - share)
                .collect();
            for partition in excess {
                self.held.get_mut(&partition).expect("held").handing_over = true;
                let _ = self.orders.send(Order::HandOver { partition });
            }
            return;
        }
        let ttl = self.leases.ttl();
        let free: Vec<u32> = (0..self.partitions.count())
            .filter(|p| !self.held.contains_key(p))
            .filter(|&p| {
                self.view.get(&owner_key(self.kind, p)).is_none_or(|(_, seen)| seen.elapsed() >= ttl)
            })
            .take(share.saturating_sub(self.held.len()))
            .collect();
        if free.is_empty() {
            return;
        }
        // All at once: a dead worker's share is taken in one round trip to the
        // bus and one transaction in the store, not one of each per partition.
        let acquired_at = Instant::now();
        let acquires =
            free.into_iter().map(|partition| {
                let (leases, value) = (self.leases.clone(), Bytes::from(self.node.clone()));
                let key = owner_key(self.kind, partition);
                // `None`: held still (its lapse not yet reached the server), or the bus is down.
                async move {
                    leases.acquire(&key, value).await.ok().flatten().map(|revision| (partition, revision))
                }
            });
        let acquired: BTreeMap<u32, u64> =
            futures_util::future::join_all(acquires).await.into_iter().flatten().collect();
        if acquired.is_empty() {
            return;
        }
        let wanted: Vec<u32> = acquired.keys().copied().collect();
        let claimed = match self.store.claim_partitions(self.kind, &wanted, &self.node).await {
            Ok(claimed) => claimed.into_iter().collect::<BTreeMap<u32, u64>>(),
            Err(e) => {
                tracing::warn!(error = %e, kind = self.kind, "partitions not claimed; retrying");
                BTreeMap::new()
            }
        };
        let mut took = Vec::new();
        for (partition, revision) in acquired {
            let Some(&epoch) = claimed.get(&partition) else {
                // Its old owner's last batch is still being stored: taken again later.
                let _ = self.leases.release(&owner_key(self.kind, partition), Some(revision)).await;
                continue;
            };
            // Renewed as of the acquire: a slow claim must not make the lease look fresher.
            self.held.insert(partition, Held { revision, renewed: acquired_at, handing_over: false });
            let _ = self.orders.send(Order::Take { partition, epoch });
            took.push(partition);
        }
        if !took.is_empty() {
            tracing::info!(kind = self.kind, partitions = ?took, held = self.held.len(), "partitions taken");
        }
    }
}
