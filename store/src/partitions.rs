//! The fence between a partition's successive owners. A worker that takes a
//! partition claims it here, which raises the partition's epoch; each batch
//! it stores then checks, in its own transaction, that the epoch is still
//! the one it claimed. On PostgreSQL the check holds the epoch row shared
//! until the batch commits, so a successor's claim waits for that batch, and
//! any later batch of the old owner fails: the old owner's writes all come
//! before the successor's first, and none after.

use std::future::Future;

use async_trait::async_trait;

use crate::{Result, StoreError};

/// The partitions a batch belongs to, each with the epoch its owner claimed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fence {
    /// The kind of worker (`persist`, `sync`).
    pub kind: &'static str,
    pub held: Vec<(u32, u64)>,
}

impl Fence {
    /// For writes outside any partition (WhatsApp's inbound webhooks, tests).
    pub fn none() -> Self {
        Self::default()
    }
}

#[async_trait]
pub trait PartitionStore: Send + Sync {
    /// Makes `owner` the writer for `partitions` of `kind`, in one
    /// transaction (one commit, however many): each claimed partition with
    /// its new epoch. A partition whose previous owner is storing a batch
    /// right now is left out rather than waited for; it can be claimed again
    /// once that batch is done.
    async fn claim_partitions(&self, kind: &str, partitions: &[u32], owner: &str) -> Result<Vec<(u32, u64)>>;
}

/// Reading epochs inside a write transaction, for each database.
pub(crate) trait Epochs: Send {
    /// The current epoch of each of `partitions` that has one.
    fn epochs(
        &mut self,
        kind: &str,
        partitions: &[i64],
    ) -> impl Future<Output = Result<Vec<(i64, i64)>>> + Send;
}

/// Fails with [`StoreError::Fenced`] unless every partition of `fence` is
/// still at the epoch its owner claimed.
pub(crate) async fn check(db: &mut impl Epochs, fence: &Fence) -> Result<()> {
    if fence.held.is_empty() {
        return Ok(());
    }
    let current = db.epochs(fence.kind, &partition_ids(fence)).await?;
    verify(fence, &current)
}

/// The partitions of `fence`, as the databases store them.
pub(crate) fn partition_ids(fence: &Fence) -> Vec<i64> {
    fence.held.iter().map(|&(p, _)| i64::from(p)).collect()
}

/// [`check`] against epochs read some other way: `current`, (partition, epoch).
pub(crate) fn verify(fence: &Fence, current: &[(i64, i64)]) -> Result<()> {
    for &(partition, epoch) in &fence.held {
        if !current.contains(&(i64::from(partition), epoch as i64)) {
            return Err(StoreError::Fenced { kind: fence.kind.to_owned(), partition });
        }
    }
    Ok(())
}

/// Claimed partitions as the databases return them.
pub(crate) fn claimed(rows: Vec<(i64, i64)>) -> Vec<(u32, u64)> {
    rows.into_iter().map(|(p, epoch)| (p as u32, epoch as u64)).collect()
}
