//! The ordering core, in-process: a conversation's feed on the in-process bus
//! and SQLite in memory, with a fan-out that records what sockets would get.
//! Messages are stored first and announced after, as the persist worker does;
//! the tests then play the bus's faults (loss, reordering, duplicates) and
//! joins arriving in the middle of them.

use std::sync::{Arc, Mutex};

use switchboard_bus::events::Event;
use switchboard_bus::{Bus, MemoryBus};
use switchboard_edge::feed::{Fanout, Feeds, InboxEvent, JoinRequest, Snapshot};
use switchboard_proto::model::{Channel, Customer, Message, Role, Sender, Source, StatusUpdate, Timestamp};
use switchboard_proto::pb;
use switchboard_store::{NewConversation, NewMessage, SqliteStore, Store};
use tokio::sync::mpsc;
use uuid::Uuid;

const CONVERSATION: &str = "c1";

/// What the sockets of an edge would have been handed, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Message(String, u64),
    Joined(u64),
}

struct Recorder(mpsc::UnboundedSender<Seen>);

impl Fanout for Recorder {
    fn message(&self, message: &Message) {
        let _ = self.0.send(Seen::Message(message.conversation_id.clone(), message.offset));
    }
    fn status(&self, _: &StatusUpdate) {}
    fn typing(&self, _: &pb::Typing) {}
    fn presence(&self, _: &pb::Presence) {}
    fn inbox(&self, _: &InboxEvent<'_>) {}
}

struct Edge {
    bus: Arc<MemoryBus>,
    store: Arc<SqliteStore>,
    feeds: Feeds,
    seen: mpsc::UnboundedReceiver<Seen>,
    tx: mpsc::UnboundedSender<Seen>,
    stored: Mutex<Vec<Message>>,
}

impl Edge {
    async fn new() -> Self {
        let bus = Arc::new(MemoryBus::new());
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        for id in [CONVERSATION, "c2"] {
            let customer =
                Customer { id: format!("cust-{id}"), name: "Ana".into(), phone: None, email: None };
            let new =
                NewConversation { id: id.into(), channel: Channel::Web, customer, at: Timestamp::now() };
            store.create_conversation(new).await.unwrap();
        }
        let (tx, seen) = mpsc::unbounded_channel();
        let feeds = Feeds::new(bus.clone(), store.clone(), Arc::new(Recorder(tx.clone())), 50, 1000);
        Self { bus, store, feeds, seen, tx, stored: Mutex::default() }
    }

    /// Stores a message, as a worker's commit would, without announcing it.
    async fn store(&self, conversation: &str) -> Message {
        let new = NewMessage {
            id: Uuid::now_v7(),
            conversation_id: conversation.into(),
            sender: Sender { id: "a1".into(), role: Role::Agent, name: "Ana".into() },
            text: "hi".into(),
            client_msg_id: None,
            source: Source::Agent,
            created_at: Timestamp::now(),
            content: None,
            create_for: None,
            private: false,
        };
        let message = self.store.append_message(new).await.unwrap().message;
        self.stored.lock().unwrap().push(message.clone());
        message
    }

    /// Announces a stored message on the bus, as the worker does after its
    /// commit; without the bus's deduplication, so repeats reach the feed.
    async fn announce(&self, message: &Message) {
        self.bus.publish(Event::MessageNew(message.clone()).envelope()).await.unwrap();
    }

    /// Joins and waits for the answer; the answer is recorded in the sequence.
    async fn join(&self, since: Option<u64>) -> Snapshot {
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let log = self.tx.clone();
        let respond = Box::new(move |outcome: Result<Snapshot, _>| {
            let snapshot = outcome.expect("the join is answered");
            let _ = log.send(Seen::Joined(snapshot.offset));
            let _ = answer_tx.send(snapshot);
        });
        self.feeds.join(CONVERSATION, JoinRequest { since, respond }, true);
        answer_rx.await.unwrap()
    }

    /// The next thing sockets were handed.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.seen.recv())
            .await
            .expect("the feed delivered nothing within 5 s")
            .expect("the feed is running")
    }

    async fn expect_messages(&mut self, offsets: &[u64]) {
        for &offset in offsets {
            assert_eq!(self.next().await, Seen::Message(CONVERSATION.into(), offset));
        }
    }
}

#[tokio::test]
async fn delivers_in_offset_order_each_once() {
    let mut edge = Edge::new().await;
    assert_eq!(edge.join(None).await.offset, 0);
    assert_eq!(edge.next().await, Seen::Joined(0));
    for _ in 0..3 {
        let m = edge.store(CONVERSATION).await;
        edge.announce(&m).await;
    }
    edge.expect_messages(&[1, 2, 3]).await;
}

#[tokio::test]
async fn an_event_that_overtakes_its_predecessor_waits_for_it() {
    let mut edge = Edge::new().await;
    edge.join(None).await;
    edge.next().await;
    let first = edge.store(CONVERSATION).await;
    let second = edge.store(CONVERSATION).await;
    // The second arrives first: the first is fetched from the store, then both go out in order.
    edge.announce(&second).await;
    edge.expect_messages(&[1, 2]).await;
    // The late first is a duplicate by then, and so is a redelivered second.
    edge.announce(&first).await;
    edge.announce(&second).await;
    let third = edge.store(CONVERSATION).await;
    edge.announce(&third).await;
    edge.expect_messages(&[3]).await;
}

#[tokio::test]
async fn a_lost_event_is_filled_from_the_store() {
    let mut edge = Edge::new().await;
    edge.join(None).await;
    edge.next().await;
    let _lost = edge.store(CONVERSATION).await;
    let _also_lost = edge.store(CONVERSATION).await;
    let third = edge.store(CONVERSATION).await;
    edge.announce(&third).await;
    edge.expect_messages(&[1, 2, 3]).await;
}

#[tokio::test]
async fn an_event_of_another_conversation_is_never_delivered() {
    let mut edge = Edge::new().await;
    edge.join(None).await;
    edge.next().await;
    // As if two ids shared a subject: the other conversation's message on ours.
    let foreign = edge.store("c2").await;
    let mut envelope = Event::MessageNew(foreign).envelope();
    envelope.subject = switchboard_bus::subjects::conv_msg(CONVERSATION);
    edge.bus.publish(envelope).await.unwrap();
    let own = edge.store(CONVERSATION).await;
    edge.announce(&own).await;
    edge.expect_messages(&[1]).await;
}

#[tokio::test]
async fn a_join_during_a_gap_is_answered_after_the_gap_is_filled() {
    let mut edge = Edge::new().await;
    edge.join(None).await;
    edge.next().await;
    // Stored but not announced yet (or lost): a second socket joins now.
    for _ in 0..3 {
        edge.store(CONVERSATION).await;
    }
    let snapshot = edge.join(Some(0)).await;
    // The feed caught up with the store before answering: the earlier socket
    // got 1..3 live, then the join's history covers exactly up to 3.
    edge.expect_messages(&[1, 2, 3]).await;
    assert_eq!(edge.next().await, Seen::Joined(3));
    assert_eq!(snapshot.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), [1, 2, 3]);
    // Their events arriving now change nothing; the next message goes to both once.
    let stored: Vec<Message> = edge.stored.lock().unwrap().clone();
    for m in &stored {
        edge.announce(m).await;
    }
    let fourth = edge.store(CONVERSATION).await;
    edge.announce(&fourth).await;
    edge.expect_messages(&[4]).await;
}

#[tokio::test]
async fn recovery_by_offset_answers_exactly_what_was_missed() {
    let mut edge = Edge::new().await;
    for _ in 0..5 {
        let m = edge.store(CONVERSATION).await;
        edge.announce(&m).await;
    }
    let snapshot = edge.join(Some(2)).await;
    assert_eq!(snapshot.offset, 5);
    assert_eq!(snapshot.messages.iter().map(|m| m.offset).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(!snapshot.has_more);
    let caught_up = edge.join(Some(5)).await;
    assert!(caught_up.messages.is_empty());
    // The feed started after 1..5 were stored: they are history, not live.
    assert_eq!(edge.next().await, Seen::Joined(5));
    assert_eq!(edge.next().await, Seen::Joined(5));
}
