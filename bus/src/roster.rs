//! Who is in the cluster, as the lease bucket tells it. Edges announce
//! themselves under `edge.<node>` with their socket count, workers under
//! `worker.<kind>.<node>`, and a partition's owner holds
//! `owner.<kind>.<partition>` (`<node>` as [`key_token`] makes it one token).
//! [`Roster::read`] gathers them, with each partition's backlog, for
//! `switchboard status` and the edges' `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_proto::model::Availability;
use tokio::sync::Notify;

use crate::leases::Leases;
use crate::subjects::{Family, key_token};
use crate::{Bus, DurableStream, Partitions, Result};

/// An edge's announcement.
pub fn edge_key(node: &str) -> String {
    format!("edge.{}", key_token(node))
}

/// A worker's announcement.
pub fn member_key(kind: &str, node: &str) -> String {
    format!("worker.{kind}.{}", key_token(node))
}

/// The lease of a partition.
pub fn owner_key(kind: &str, partition: u32) -> String {
    format!("owner.{kind}.{partition}")
}

/// What an edge announces of itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeSeen {
    pub node: String,
    pub sockets: u64,
    /// The agents with a socket on this edge.
    #[serde(default)]
    pub agents: Vec<AgentPresence>,
}

/// An agent connected to an edge, as available as it last said there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentPresence {
    pub id: String,
    pub name: String,
    pub availability: Availability,
    /// When it said so: across edges, the newest word wins.
    pub since_ms: i64,
}

/// The agents connected anywhere (an agent on no edge is offline), each as
/// it last said, read from the edges' announcements.
pub async fn agents_connected(leases: &dyn Leases) -> Result<HashMap<String, AgentPresence>> {
    let mut agents: HashMap<String, AgentPresence> = HashMap::new();
    for entry in leases.entries().await? {
        if !entry.key.starts_with("edge.") {
            continue;
        }
        let Ok(edge) = serde_json::from_slice::<EdgeSeen>(&entry.value) else { continue };
        for agent in edge.agents {
            match agents.get(&agent.id) {
                Some(known) if known.since_ms >= agent.since_ms => {}
                _ => {
                    agents.insert(agent.id.clone(), agent);
                }
            }
        }
    }
    Ok(agents)
}

/// What a worker announces of itself: its partition count, which must be
/// every worker's of its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    pub partitions: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerSeen {
    pub kind: &'static str,
    pub node: String,
    /// The partitions whose lease it holds.
    pub owns: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionSeen {
    pub kind: &'static str,
    pub partition: u32,
    pub owner: Option<String>,
    /// Commands not yet acknowledged; `None` when the bus did not say.
    pub backlog: Option<u64>,
    /// Of those, delivered more than once.
    pub redelivered: Option<u64>,
}

/// The cluster at a glance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Roster {
    pub edges: Vec<EdgeSeen>,
    pub workers: Vec<WorkerSeen>,
    pub partitions: Vec<PartitionSeen>,
}

impl Roster {
    /// Reads the bucket and the partitions' consumers.
    pub async fn read(bus: &dyn Bus, partitions: Partitions) -> Result<Roster> {
        let entries = bus.leases().entries().await?;
        let mut roster = Roster::default();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for entry in entries {
            if entry.key.starts_with("edge.") {
                if let Ok(edge) = serde_json::from_slice::<EdgeSeen>(&entry.value) {
                    roster.edges.push(edge);
                }
            } else if entry.key.starts_with("owner.") {
                owners.insert(entry.key, String::from_utf8_lossy(&entry.value).into_owned());
            } else if let Some((kind, _)) = entry.key.strip_prefix("worker.").and_then(|k| k.split_once('.'))
                && let Some(family) = Family::ALL.into_iter().find(|f| f.kind() == kind)
                && let Ok(member) = serde_json::from_slice::<Member>(&entry.value)
            {
                roster.workers.push(WorkerSeen { kind: family.kind(), node: member.node, owns: Vec::new() });
            }
        }
        // Every partition's consumer asked at once: one round trip, not one each.
        let all: Vec<(Family, u32)> =
            Family::ALL.into_iter().flat_map(|f| (0..partitions.count()).map(move |p| (f, p))).collect();
        let backlogs = futures_util::future::join_all(all.iter().map(|&(family, partition)| async move {
            let (durable, filter) = (family.durable(partition), family.partition(partition));
            bus.backlog(DurableStream::Commands, &durable, &filter).await.ok()
        }))
        .await;
        for (&(family, partition), backlog) in all.iter().zip(backlogs) {
            let owner = owners.remove(&owner_key(family.kind(), partition));
            if let Some(worker) =
                roster.workers.iter_mut().find(|w| w.kind == family.kind() && Some(&w.node) == owner.as_ref())
            {
                worker.owns.push(partition);
            }
            let (backlog, redelivered) = (backlog.map(|b| b.pending), backlog.map(|b| b.redelivered));
            roster.partitions.push(PartitionSeen {
                kind: family.kind(),
                partition,
                owner,
                backlog,
                redelivered,
            });
        }
        roster.edges.sort_by(|a, b| a.node.cmp(&b.node));
        roster.workers.sort_by(|a, b| (a.kind, &a.node).cmp(&(b.kind, &b.node)));
        Ok(roster)
    }

    /// Sockets on every edge.
    pub fn sockets(&self) -> u64 {
        self.edges.iter().map(|e| e.sockets).sum()
    }
}

/// Keeps an edge's announcement fresh while it runs: written at once, then
/// every third of a lease or as soon as `changed` is notified (an agent came,
/// went or changed its availability), and withdrawn by [`Announcer::withdraw`].
pub struct Announcer {
    task: tokio::task::JoinHandle<()>,
    leases: Arc<dyn Leases>,
    key: String,
}

impl Announcer {
    /// `seen` is asked for the edge's state at each renewal.
    pub fn edge(
        leases: Arc<dyn Leases>,
        node: &str,
        changed: Arc<Notify>,
        seen: impl Fn() -> EdgeSeen + Send + 'static,
    ) -> Self {
        let key = edge_key(node);
        let (writer, every) = (leases.clone(), leases.ttl() / 3);
        let at = key.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = changed.notified() => {}
                }
                let value = serde_json::to_vec(&seen()).expect("an announcement serialises");
                match writer.put(&at, value.into()).await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "edge announcement not renewed; retrying");
                    }
                    Err(_) => {}
                }
            }
        });
        Self { task, leases, key }
    }

    pub async fn withdraw(&self) {
        self.task.abort();
        let _ = self.leases.release(&self.key, None).await;
    }
}
