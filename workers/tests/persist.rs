//! The persist worker in-process: commands on the in-process bus, SQLite in
//! memory, answers and events read back as an edge reads them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message as _;
use switchboard_bus::events::{Event, encode};
use switchboard_bus::rpc::Caller;
use switchboard_bus::subjects::{self, Family, op};
use switchboard_bus::{Bus, Envelope, MemoryBus, Partitions, Subscription};
use switchboard_proto::model::{Channel, Customer, Message, Timestamp};
use switchboard_proto::pb::{self, command, command_result};
use switchboard_store::{NewConversation, SqliteStore, Store};
use switchboard_workers::registry::{Deps, Kind};
use switchboard_workers::whatsapp::WhatsappConfig;
use uuid::Uuid;

/// More than one, so a batch spans partitions.
const PARTITIONS: Partitions = Partitions::new(4);

struct World {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    edge: Caller,
    events: Subscription,
}

async fn world() -> World {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    for id in ["c1", "c2"] {
        let customer = Customer { id: format!("cust-{id}"), name: "Ana".into(), phone: None, email: None };
        let new = NewConversation { id: id.into(), channel: Channel::Web, customer, at: Timestamp::now() };
        store.create_conversation(new).await.unwrap();
    }
    let events = bus.subscribe(subjects::CONV_MSG_ALL).await.unwrap();
    let deps = Deps {
        bus: bus.clone(),
        store: store.clone(),
        node: "test-worker".into(),
        partitions: PARTITIONS,
        bot_reply_ttl: Duration::from_secs(60),
        auto_assign: false,
        whatsapp: WhatsappConfig::default(),
    };
    tokio::spawn(Kind::Persist.run(deps, std::future::pending()));
    let edge = Caller::start(bus.clone(), "test-edge", Duration::from_secs(5)).await.unwrap();
    World { bus, store, edge, events }
}

fn send(conversation: &str, text: &str, client_msg_id: Option<&str>) -> Envelope {
    let send = pb::SendMessage {
        message_id: Uuid::now_v7().to_string(),
        conversation_id: conversation.into(),
        sender: Some(pb::Sender { id: "a1".into(), role: "agent".into(), name: "Ana".into() }),
        text: text.into(),
        client_msg_id: client_msg_id.map(str::to_owned),
        source: "agent".into(),
        created_at_ms: Timestamp::now().0,
        create_for: None,
        private: false,
    };
    let command = pb::Command { kind: Some(command::Kind::SendMessage(send)) };
    Envelope::new(Family::Chat.command(PARTITIONS.of(conversation), op::SEND_MESSAGE), encode(&command))
}

/// Sends like an edge, and reads the answer.
async fn call(world: &World, envelope: Envelope) -> pb::CommandResult {
    let answer = world.edge.call(envelope, &Uuid::now_v7().to_string()).await.expect("the worker answers");
    pb::CommandResult::decode(&answer[..]).unwrap()
}

fn stored(result: &pb::CommandResult) -> Message {
    match &result.outcome {
        Some(command_result::Outcome::Message(m)) => m.clone().try_into().unwrap(),
        other => panic!("expected a stored message, got {other:?}"),
    }
}

async fn next_event(events: &mut Subscription) -> Message {
    let envelope = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    match Event::decode(&envelope).unwrap() {
        Event::MessageNew(m) => m,
        other => panic!("expected message.new, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_is_answered_stored_then_announced() {
    let mut world = world().await;
    let result = call(&world, send("c1", "hello", None)).await;
    assert!(result.created);
    let message = stored(&result);
    assert_eq!((message.offset, message.text.as_str()), (1, "hello"));
    assert_eq!(world.store.message(message.id).await.unwrap().unwrap(), message);
    assert_eq!(next_event(&mut world.events).await, message);
}

#[tokio::test]
async fn a_retry_with_the_same_client_msg_id_returns_the_stored_message() {
    let world = world().await;
    let first = stored(&call(&world, send("c1", "once", Some("k1"))).await);
    let again = call(&world, send("c1", "once", Some("k1"))).await;
    assert!(!again.created);
    assert_eq!(stored(&again), first);
    assert_eq!(world.store.latest_messages("c1", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_sends_get_gap_free_offsets_per_conversation_in_arrival_order() {
    let mut world = world().await;
    // Published at once, so the worker takes them in batches across both conversations.
    let calls = (0..60).map(|i| {
        let conversation = if i % 2 == 0 { "c1" } else { "c2" };
        call(&world, send(conversation, &format!("m{i}"), None))
    });
    let results = futures_util::future::join_all(calls).await;
    for conversation in ["c1", "c2"] {
        let messages = world.store.messages_after(conversation, 0, 100).await.unwrap();
        assert_eq!(messages.iter().map(|m| m.offset).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    }
    assert!(results.iter().all(|r| r.created));
    // Each conversation's events go out in offset order.
    let mut last = std::collections::HashMap::new();
    for _ in 0..60 {
        let m = next_event(&mut world.events).await;
        let previous = last.insert(m.conversation_id.clone(), m.offset).unwrap_or(0);
        assert_eq!(m.offset, previous + 1, "{} out of order", m.conversation_id);
    }
}

#[tokio::test]
async fn a_message_for_a_missing_conversation_is_refused_and_the_rest_of_its_batch_stored() {
    let world = world().await;
    let (missing, present) =
        tokio::join!(call(&world, send("nope", "lost", None)), call(&world, send("c1", "kept", None)));
    match missing.outcome {
        Some(command_result::Outcome::Error(e)) => assert_eq!(e.code, "not_found"),
        other => panic!("expected not_found, got {other:?}"),
    }
    assert_eq!(stored(&present).offset, 1);
}

#[tokio::test]
async fn a_malformed_command_is_refused_not_retried() {
    let world = world().await;
    let garbage =
        Envelope::new(Family::Chat.command(0, op::SEND_MESSAGE), bytes::Bytes::from_static(b"\xff\xff"));
    match call(&world, garbage).await.outcome {
        Some(command_result::Outcome::Error(e)) => assert_eq!(e.code, "bad_request"),
        other => panic!("expected bad_request, got {other:?}"),
    }
    // The worker is still taking commands.
    assert_eq!(stored(&call(&world, send("c1", "after", None)).await).offset, 1);
    drop(world.bus);
}
