//! The store's promises: gap-free offsets, idempotent appends, statuses that
//! only move forward, and a bot-reply queue that hands each reply out once.

use std::sync::Arc;

use switchboard_proto::model::{Channel, Customer, DeliveryStatus, Role, Sender, Timestamp};
use switchboard_store::{
    InboxFilter, NewConversation, NewMessage, QueuedBotReply, SqliteStore, Store, StoreError,
};
use uuid::Uuid;

fn customer(id: &str) -> Customer {
    Customer { id: id.into(), name: format!("Customer {id}"), phone: Some("5215550001".into()) }
}

fn new_message(conversation: &str, text: &str, client_msg_id: Option<&str>) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        conversation_id: conversation.into(),
        sender: Sender { id: "agent-1".into(), role: Role::Agent, name: "Ana".into() },
        text: text.into(),
        client_msg_id: client_msg_id.map(Into::into),
        source: Role::Agent.source(),
        created_at: Timestamp::now(),
        create_for: None,
    }
}

async fn with_conversation(id: &str) -> SqliteStore {
    let store = SqliteStore::in_memory().await.unwrap();
    create(&store, id).await;
    store
}

async fn create(store: &SqliteStore, id: &str) {
    let new = NewConversation {
        id: id.into(),
        channel: Channel::Web,
        customer: customer("cust-1"),
        at: Timestamp::now(),
    };
    store.create_conversation(new).await.unwrap();
}

#[tokio::test]
async fn offsets_start_at_one_and_have_no_gaps_under_concurrent_writers() {
    let dir = std::env::temp_dir().join(format!("sb-store-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("db.sqlite")).await.unwrap());
    create(&store, "c1").await;
    let writers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                store.append_message(new_message("c1", &format!("{w}-{i}"), None)).await.unwrap();
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let all = store.messages_after("c1", 0, 1000).await.unwrap();
    let offsets: Vec<u64> = all.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (1..=200).collect::<Vec<u64>>());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_retry_with_the_same_client_msg_id_stores_nothing_new() {
    let store = with_conversation("c1").await;
    let first = store.append_message(new_message("c1", "hello", Some("k1"))).await.unwrap();
    let retry = store.append_message(new_message("c1", "hello", Some("k1"))).await.unwrap();
    assert!(first.created);
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    assert_eq!(store.messages_after("c1", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_redelivered_command_with_the_same_message_id_stores_nothing_new() {
    let store = with_conversation("c1").await;
    let new = new_message("c1", "hello", None);
    store.append_message(new.clone()).await.unwrap();
    let again = store.append_message(new).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.message.offset, 1);
    assert_eq!(store.messages_after("c1", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn recovery_returns_exactly_what_came_after_an_offset() {
    let store = with_conversation("c1").await;
    for i in 1..=10 {
        store.append_message(new_message("c1", &format!("m{i}"), None)).await.unwrap();
    }
    let missed = store.messages_after("c1", 7, 50).await.unwrap();
    assert_eq!(missed.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["m8", "m9", "m10"]);
    let page = store.latest_messages("c1", 3).await.unwrap();
    assert_eq!(page.iter().map(|m| m.offset).collect::<Vec<_>>(), [8, 9, 10]);
}

#[tokio::test]
async fn appending_to_a_missing_conversation_fails_unless_asked_to_create_it() {
    let store = SqliteStore::in_memory().await.unwrap();
    let err = store.append_message(new_message("nope", "x", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::ConversationNotFound(_)));
    let mut new = new_message("fresh", "x", None);
    new.create_for = Some(customer("cust-9"));
    let appended = store.append_message(new).await.unwrap();
    assert!(appended.conversation_created);
    assert_eq!(appended.conversation.customer.id, "cust-9");
    assert_eq!(appended.conversation.last_message.unwrap().offset, 1);
}

#[tokio::test]
async fn statuses_never_move_backwards() {
    let store = with_conversation("c1").await;
    let m = store.append_message(new_message("c1", "x", None)).await.unwrap().message;
    let read = store.set_status(m.id, DeliveryStatus::Read, Timestamp(10)).await.unwrap().unwrap();
    assert!(read.changed);
    let late = store.set_status(m.id, DeliveryStatus::Delivered, Timestamp(20)).await.unwrap().unwrap();
    assert!(!late.changed);
    assert_eq!(late.update.status, DeliveryStatus::Read);
    assert!(store.set_status(Uuid::now_v7(), DeliveryStatus::Read, Timestamp(1)).await.unwrap().is_none());
}

#[tokio::test]
async fn the_inbox_lists_most_recently_active_first_and_filters() {
    let store = SqliteStore::in_memory().await.unwrap();
    for (id, at) in [("old", 1), ("new", 2)] {
        let new = NewConversation {
            id: id.into(),
            channel: Channel::Web,
            customer: customer(id),
            at: Timestamp(at),
        };
        store.create_conversation(new).await.unwrap();
    }
    let wa = NewConversation {
        id: "wa".into(),
        channel: Channel::Whatsapp,
        customer: Customer { id: "w".into(), name: "W".into(), phone: Some("4915111".into()) },
        at: Timestamp(0),
    };
    store.create_conversation(wa).await.unwrap();
    store.append_message(new_message("old", "bump", None)).await.unwrap();
    let all = store.list_conversations(&InboxFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["old", "new", "wa"]);
    assert_eq!(all[0].last_message.as_ref().unwrap().text, "bump");
    let by_phone = InboxFilter { phone: Some("4915111".into()), limit: 10, ..Default::default() };
    assert_eq!(store.list_conversations(&by_phone).await.unwrap().len(), 1);
    let web = InboxFilter { channel: Some(Channel::Web), limit: 1, ..Default::default() };
    assert_eq!(store.list_conversations(&web).await.unwrap().len(), 1);
}

#[tokio::test]
async fn creating_an_existing_conversation_returns_it_unchanged() {
    let store = with_conversation("c1").await;
    let again = NewConversation {
        id: "c1".into(),
        channel: Channel::Whatsapp,
        customer: customer("x"),
        at: Timestamp(5),
    };
    let (conversation, created) = store.create_conversation(again).await.unwrap();
    assert!(!created);
    assert_eq!(conversation.channel, Channel::Web);
}

#[tokio::test]
async fn each_queued_bot_reply_is_taken_once() {
    let store = SqliteStore::in_memory().await.unwrap();
    for (id, at) in [("b2", 2), ("b1", 1)] {
        let reply = QueuedBotReply { id: id.into(), phone: "521".into(), text: id.into(), at: Timestamp(at) };
        store.queue_bot_reply(reply).await.unwrap();
    }
    let taken = store.take_bot_replies("521").await.unwrap();
    assert_eq!(taken.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b1", "b2"]);
    assert!(store.take_bot_replies("521").await.unwrap().is_empty());
    assert!(!store.remove_bot_reply("b1").await.unwrap());
}

#[tokio::test]
async fn a_failed_write_does_not_keep_the_database_locked() {
    let dir = std::env::temp_dir().join(format!("sb-store-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("db.sqlite")).await.unwrap();
    for _ in 0..3 {
        let err = store.append_message(new_message("missing", "x", None)).await.unwrap_err();
        assert!(matches!(err, StoreError::ConversationNotFound(_)));
    }
    // A lock left behind would make this wait for the busy timeout and fail.
    let write = async {
        create(&store, "c1").await;
        store.append_message(new_message("c1", "after", None)).await.unwrap()
    };
    let appended =
        tokio::time::timeout(std::time::Duration::from_secs(2), write).await.expect("database still locked");
    assert_eq!(appended.message.offset, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_batch_is_stored_in_order_and_a_missing_conversation_spoils_only_its_own_message() {
    let store = with_conversation("c1").await;
    let batch = vec![
        new_message("c1", "one", None),
        new_message("missing", "lost", None),
        new_message("c1", "two", Some("k")),
        new_message("c1", "two again", Some("k")),
    ];
    let outcomes = store.append_messages(&batch).await.unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap().message.offset, 1);
    assert!(matches!(outcomes[1], Err(StoreError::ConversationNotFound(_))));
    assert_eq!(outcomes[2].as_ref().unwrap().message.offset, 2);
    assert!(!outcomes[3].as_ref().unwrap().created);
    assert_eq!(store.messages_after("c1", 0, 10).await.unwrap().len(), 2);
}
