//! Leases in a JetStream key-value bucket, `SB_LEASES`, on what 2.9 offers:
//! create-if-absent and update-with-expected-revision, with the bucket's
//! `max_age` as the one lease for every key (per-key TTLs need 2.11). The
//! bucket's stream is declared by hand: async-nats's `create_key_value`
//! fails against 2.9.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv::{self, CreateErrorKind, DeleteErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::unavailable;
use crate::Result;
use crate::leases::{Change, Entry, Leases};

const BUCKET: &str = "SB_LEASES";

pub(super) struct NatsLeases {
    store: kv::Store,
    ttl: Duration,
    /// How to declare the bucket again, for a process that declares it: a
    /// server that came back without its storage has none.
    declared: Option<(Context, stream::Config)>,
}

impl NatsLeases {
    /// Declares the bucket (or brings it to `ttl` and `replicas`) and opens it.
    pub(super) async fn open(jetstream: &Context, ttl: Duration, replicas: usize) -> Result<Self> {
        let config = stream::Config {
            name: format!("KV_{BUCKET}"),
            subjects: vec![format!("$KV.{BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: ttl,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            // On file, so leases outlive a server restart: their holders keep
            // them instead of all lapsing and being taken again at once.
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let created = jetstream
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| unavailable("cannot create the lease bucket", e))?;
        let current = created.cached_info().config.clone();
        let config = stream::Config {
            num_replicas: super::kept_replicas(&config.name, current.num_replicas, replicas),
            // A stream's storage cannot change once made.
            storage: current.storage,
            ..config
        };
        if current.max_age != ttl || current.num_replicas != config.num_replicas {
            jetstream
                .update_stream(&config)
                .await
                .map_err(|e| unavailable("cannot update the lease bucket", e))?;
        }
        Ok(Self { declared: Some((jetstream.clone(), config)), ..Self::existing(jetstream).await? })
    }

    /// Opens the bucket as it is, its lease being its max age.
    pub(super) async fn existing(jetstream: &Context) -> Result<Self> {
        let store = jetstream
            .get_key_value(BUCKET)
            .await
            .map_err(|e| unavailable("cannot open the lease bucket (has a node started?)", e))?;
        let ttl = store.stream.cached_info().config.max_age;
        Ok(Self { store, ttl, declared: None })
    }

    /// After a failed write: declares the bucket again should the server
    /// have lost it, so the next attempt (a renewal a moment later) can land.
    async fn bucket_back(&self) {
        if let Some((jetstream, config)) = &self.declared {
            let _ = jetstream.get_or_create_stream(config.clone()).await;
        }
    }
}

#[async_trait]
impl Leases for NatsLeases {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn acquire(&self, key: &str, value: Bytes) -> Result<Option<u64>> {
        match self.store.create(key, value).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => {
                self.bucket_back().await;
                Err(unavailable(format!("cannot take lease {key}"), e))
            }
        }
    }

    async fn renew(&self, key: &str, value: Bytes, revision: u64) -> Result<Option<u64>> {
        match self.store.update(key, value, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => {
                self.bucket_back().await;
                Err(unavailable(format!("cannot renew lease {key}"), e))
            }
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64> {
        match self.store.put(key, value).await {
            Ok(revision) => Ok(revision),
            Err(e) => {
                self.bucket_back().await;
                Err(unavailable(format!("cannot write {key}"), e))
            }
        }
    }

    async fn release(&self, key: &str, revision: Option<u64>) -> Result<()> {
        match self.store.delete_expect_revision(key, revision).await {
            Err(e) if e.kind() == DeleteErrorKind::WrongLastRevision => Ok(()),
            released => released.map_err(|e| unavailable(format!("cannot release lease {key}"), e)),
        }
    }

    async fn entries(&self) -> Result<Vec<Entry>> {
        // The stream's subjects, listed in one answer: a key listing by consumer
        // (`kv::Store::keys`) can end early while renewals append to the stream.
        let prefix = format!("$KV.{BUCKET}.");
        let keys: Vec<String> = self
            .store
            .stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| unavailable("cannot list the lease bucket", e))?
            .filter_map(|subject| {
                let key =
                    subject.ok().and_then(|(subject, _)| subject.strip_prefix(&prefix).map(str::to_owned));
                async move { key }
            })
            .collect()
            .await;
        let reads = keys.iter().map(|key| async move {
            self.store.entry(key).await.map_err(|e| unavailable(format!("cannot read {key}"), e))
        });
        let mut entries = Vec::with_capacity(keys.len());
        // Read all at once; a key that lapsed between the listing and the read is simply gone.
        for entry in futures_util::future::join_all(reads).await {
            if let Some(entry) = entry?
                && entry.operation == Operation::Put
            {
                entries.push(Entry { key: entry.key, value: entry.value, revision: entry.revision });
            }
        }
        Ok(entries)
    }

    async fn watch(&self) -> Result<BoxStream<'static, Change>> {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| unavailable("cannot watch the lease bucket", e))?;
        Ok(watch
            .filter_map(|entry| async move {
                let entry = entry.ok()?;
                Some(match entry.operation {
                    Operation::Put => {
                        Change::Put(Entry { key: entry.key, value: entry.value, revision: entry.revision })
                    }
                    Operation::Delete | Operation::Purge => Change::Released(entry.key),
                })
            })
            .boxed())
    }
}
