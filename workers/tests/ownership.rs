//! Partition ownership in-process: persist workers on one in-memory bus
//! share the partitions evenly, take a leaving worker's share, and no
//! command is lost or stored twice across the hand-over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use switchboard_bus::events::encode;
use switchboard_bus::leases::Change;
use switchboard_bus::rpc::Caller;
use switchboard_bus::subjects::{Family, op};
use switchboard_bus::{Bus, Envelope, MemoryBus, Partitions};
use switchboard_proto::model::{Channel, Customer, Timestamp};
use switchboard_proto::pb::{self, command};
use switchboard_store::{NewConversation, SqliteStore, Store};
use switchboard_workers::registry::{Deps, Kind};
use switchboard_workers::whatsapp::WhatsappConfig;
use tokio::sync::oneshot;
use uuid::Uuid;

const PARTITIONS: Partitions = Partitions::new(8);
const LEASE: Duration = Duration::from_millis(600);
const WAIT: Duration = Duration::from_secs(10);

/// Starts a persist worker named `node`; it hands over and stops when the sender is dropped or sent.
fn worker(bus: &Arc<dyn Bus>, store: &Arc<dyn Store>, node: &str) -> oneshot::Sender<()> {
    let deps = Deps {
        bus: bus.clone(),
        store: store.clone(),
        node: node.into(),
        partitions: PARTITIONS,
        bot_reply_ttl: Duration::from_secs(60),
        auto_assign: false,
        whatsapp: WhatsappConfig::default(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(Kind::Persist.run(deps, async move {
        let _ = stopped.await;
    }));
    stop
}

/// How many partitions each worker holds, from the lease bucket.
async fn shares(bus: &Arc<dyn Bus>) -> HashMap<String, usize> {
    let mut watch = bus.leases().watch().await.unwrap();
    let mut owners = HashMap::new();
    // The replay of live keys comes at once; quiet after it means it is complete.
    while let Ok(Some(change)) = tokio::time::timeout(Duration::from_millis(50), watch.next()).await {
        match change {
            Change::Put(entry) if entry.key.starts_with("owner.persist.") => {
                owners.insert(entry.key, String::from_utf8(entry.value.to_vec()).unwrap());
            }
            Change::Released(key) => {
                owners.remove(&key);
            }
            Change::Put(_) => {}
        }
    }
    let mut shares = HashMap::new();
    for owner in owners.into_values() {
        *shares.entry(owner).or_default() += 1;
    }
    shares
}

async fn until_shares(bus: &Arc<dyn Bus>, wanted: &[(&str, usize)]) {
    let wanted: HashMap<String, usize> = wanted.iter().map(|&(n, c)| (n.to_owned(), c)).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = shares(bus).await;
        if now == wanted {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "shares stayed {now:?}, wanted {wanted:?}");
        tokio::time::sleep(LEASE / 6).await;
    }
}

fn send(conversation: &str, n: usize) -> Envelope {
    let send = pb::SendMessage {
        message_id: Uuid::now_v7().to_string(),
        conversation_id: conversation.into(),
        sender: Some(pb::Sender { id: "a1".into(), role: "agent".into(), name: "Ana".into() }),
        text: format!("m{n}"),
        client_msg_id: Some(format!("k{n}")),
        source: "agent".into(),
        created_at_ms: Timestamp::now().0,
        create_for: None,
        private: false,
    };
    let command = pb::Command { kind: Some(command::Kind::SendMessage(send)) };
    Envelope::new(Family::Chat.command(PARTITIONS.of(conversation), op::SEND_MESSAGE), encode(&command))
}

#[tokio::test]
async fn workers_share_partitions_evenly_and_hand_over_without_losing_a_command() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::with_lease(LEASE));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let conversations: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    for id in &conversations {
        let customer = Customer { id: format!("cust-{id}"), name: "Ana".into(), phone: None, email: None };
        let new = NewConversation { id: id.clone(), channel: Channel::Web, customer, at: Timestamp::now() };
        store.create_conversation(new).await.unwrap();
    }
    let _a = worker(&bus, &store, "a");
    until_shares(&bus, &[("a", 8)]).await;
    let b = worker(&bus, &store, "b");
    until_shares(&bus, &[("a", 4), ("b", 4)]).await;
    let c = worker(&bus, &store, "c");
    until_shares(&bus, &[("a", 3), ("b", 3), ("c", 2)]).await;

    // Commands flow while one worker leaves and another's share grows.
    let edge = Caller::start(bus.clone(), "test-edge", WAIT).await.unwrap();
    let calls = (0..400).map(|n| {
        let (edge, conversation) = (edge.clone(), conversations[n % conversations.len()].clone());
        async move {
            let answer =
                edge.call(send(&conversation, n), &Uuid::now_v7().to_string()).await.expect("answered");
            pb::CommandResult::decode(&answer[..]).unwrap()
        }
    });
    let sending = tokio::spawn(futures_util::future::join_all(calls));
    drop(b);
    let results = sending.await.unwrap();
    assert!(results.iter().all(|r| r.created), "each command stored once, and answered so");
    until_shares(&bus, &[("a", 4), ("c", 4)]).await;
    for id in &conversations {
        let offsets: Vec<u64> =
            store.messages_after(id, 0, 100).await.unwrap().iter().map(|m| m.offset).collect();
        assert_eq!(offsets, (1..=25).collect::<Vec<_>>(), "{id}: every message once, without a gap");
    }
    drop(c);
    until_shares(&bus, &[("a", 8)]).await;
}
