//! The store's promises, checked against every backend: gap-free offsets,
//! idempotent appends, statuses that only move forward, and a bot-reply queue
//! that hands each reply out once.
//!
//! A backend's test file calls [`behaviour_tests!`] with its `run` function:
//! an `async fn run<F>(behaviour: impl FnOnce(Db) -> F)` that gives the
//! behaviour a fresh database and cleans up after it (see [`run_then`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use switchboard_proto::model::{
    Assignee, Channel, ConversationStatus, Customer, DeliveryStatus, Role, Sender, Timestamp,
};
use switchboard_store::{
    Appended, AssigneeFilter, Assignment, Change, Confirm, Fence, InboxFilter, NewChange, NewConversation,
    NewMessage, OutboxClaim, QueuedBotReply, Store, StoreError,
};
use tokio::task::JoinSet;
use uuid::Uuid;

/// Declares one test per behaviour below, each run by `$run`.
macro_rules! behaviour_tests {
    ($run:path) => {
        behaviour_tests!(
            @each $run;
            offsets_start_at_one_and_have_no_gaps_under_concurrent_writers,
            a_retry_with_the_same_client_msg_id_stores_nothing_new,
            a_redelivered_command_with_the_same_message_id_stores_nothing_new,
            concurrent_redeliveries_store_each_message_once,
            concurrent_retries_with_the_same_client_msg_id_store_one_message,
            recovery_returns_exactly_what_came_after_an_offset,
            a_message_reads_back_as_it_was_stored,
            appending_to_a_missing_conversation_fails_unless_asked_to_create_it,
            statuses_never_move_backwards,
            concurrent_status_updates_never_move_backwards,
            the_inbox_lists_most_recently_active_first_and_filters,
            creating_an_existing_conversation_returns_it_unchanged,
            each_queued_bot_reply_is_taken_once,
            an_expired_bot_reply_is_dropped_not_delivered,
            concurrent_takers_get_each_bot_reply_once,
            a_failed_write_does_not_keep_the_database_locked,
            a_fenced_out_owner_stores_nothing_and_its_successor_continues,
            many_partitions_are_claimed_at_once_each_with_its_own_epoch,
            a_batch_is_stored_in_order_and_a_missing_conversation_spoils_only_its_own_message,
            a_batch_over_several_conversations_numbers_each_and_knows_what_was_stored,
            sync_seqs_start_at_one_per_tenant_and_have_no_gaps_under_concurrent_writers,
            concurrent_redeliveries_of_a_sync_change_store_it_once,
            pending_sync_changes_come_in_seq_order_until_confirmed,
            one_of_two_workers_claims_a_whatsapp_send_and_a_sent_one_is_never_claimed_again,
            an_expired_whatsapp_lease_is_claimed_again_and_giving_up_is_final,
            of_concurrent_claims_exactly_one_wins_and_the_store_agrees,
            assignment_opens_a_pending_conversation_and_a_customer_reopens_a_closed_one,
            unread_counts_what_came_after_the_read_cursor_but_not_ones_own,
            a_private_note_reads_back_as_private,
        );
    };
    (@each $run:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $run($crate::common::$name).await
            }
        )+
    };
}

/// A fresh, empty database seen through two stores. Where the backend allows,
/// each has its own connections, as two processes would.
pub struct Db {
    pub store: Arc<dyn Store>,
    pub other: Arc<dyn Store>,
}

impl Db {
    fn both(&self) -> [Arc<dyn Store>; 2] {
        [self.store.clone(), self.other.clone()]
    }
}

/// Runs `behaviour` in its own task, then `cleanup` even when the behaviour
/// panicked, then passes the panic on.
pub async fn run_then(
    behaviour: impl Future<Output = ()> + Send + 'static,
    cleanup: impl Future<Output = ()>,
) {
    let outcome = tokio::spawn(behaviour).await;
    cleanup.await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn customer(id: &str) -> Customer {
    Customer { id: id.into(), name: format!("Customer {id}"), phone: Some("5215550001".into()), email: None }
}

pub fn new_message(conversation: &str, text: &str, client_msg_id: Option<&str>) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        conversation_id: conversation.into(),
        sender: Sender { id: "agent-1".into(), role: Role::Agent, name: "Ana".into() },
        text: text.into(),
        client_msg_id: client_msg_id.map(Into::into),
        source: Role::Agent.source(),
        created_at: Timestamp::now(),
        content: None,
        create_for: None,
        private: false,
    }
}

pub async fn create(store: &dyn Store, id: &str) {
    let new = NewConversation {
        id: id.into(),
        channel: Channel::Web,
        customer: customer("cust-1"),
        at: Timestamp::now(),
    };
    store.create_conversation(new).await.unwrap();
}

async fn texts_after(store: &dyn Store, conversation: &str, after: u64) -> Vec<String> {
    store.messages_after(conversation, after, 1000).await.unwrap().into_iter().map(|m| m.text).collect()
}

/// Sends every attempt at once, alternating between the two stores, and
/// returns the outcomes.
async fn append_concurrently(db: &Db, attempts: Vec<NewMessage>) -> Vec<Appended> {
    let mut tasks = JoinSet::new();
    for (store, new) in db.both().into_iter().cycle().zip(attempts) {
        tasks.spawn(async move { store.append_message(new).await.unwrap() });
    }
    tasks.join_all().await
}

/// Checks that `outcomes` (grouped by `key`) created exactly one message per
/// key and that every attempt got that message back.
fn assert_stored_once<K: Eq + std::hash::Hash + std::fmt::Debug>(
    outcomes: &[Appended],
    key: impl Fn(&Appended) -> K,
) {
    let mut by_key: HashMap<K, Vec<&Appended>> = HashMap::new();
    for outcome in outcomes {
        by_key.entry(key(outcome)).or_default().push(outcome);
    }
    for (key, group) in by_key {
        assert_eq!(group.iter().filter(|a| a.created).count(), 1, "created more than once: {key:?}");
        assert!(group.iter().all(|a| a.message == group[0].message), "different messages for {key:?}");
    }
}

pub async fn offsets_start_at_one_and_have_no_gaps_under_concurrent_writers(db: Db) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 50;
    create(&*db.store, "c1").await;
    let mut writers = JoinSet::new();
    for (w, store) in db.both().into_iter().cycle().take(WRITERS).enumerate() {
        writers.spawn(async move {
            let mut offsets = Vec::with_capacity(PER_WRITER);
            for i in 0..PER_WRITER {
                let new = new_message("c1", &format!("{w}-{i}"), None);
                offsets.push(store.append_message(new).await.unwrap().message.offset);
            }
            offsets
        });
    }
    for offsets in writers.join_all().await {
        assert!(offsets.is_sorted(), "one writer's messages out of order: {offsets:?}");
    }
    let all = db.store.messages_after("c1", 0, 1000).await.unwrap();
    let offsets: Vec<u64> = all.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (1..=(WRITERS * PER_WRITER) as u64).collect::<Vec<u64>>());
    let texts: HashSet<&str> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), WRITERS * PER_WRITER);
    let conversation = db.other.conversation("c1").await.unwrap().unwrap();
    assert_eq!(conversation.last_message.unwrap().offset, (WRITERS * PER_WRITER) as u64);
}

pub async fn a_retry_with_the_same_client_msg_id_stores_nothing_new(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    let first = store.append_message(new_message("c1", "hello", Some("k1"))).await.unwrap();
    let retry = store.append_message(new_message("c1", "hello", Some("k1"))).await.unwrap();
    assert!(first.created);
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    assert_eq!(store.messages_after("c1", 0, 10).await.unwrap().len(), 1);
}

pub async fn a_redelivered_command_with_the_same_message_id_stores_nothing_new(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    let new = new_message("c1", "hello", None);
    store.append_message(new.clone()).await.unwrap();
    let again = store.append_message(new).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.message.offset, 1);
    assert_eq!(store.messages_after("c1", 0, 10).await.unwrap().len(), 1);
}

pub async fn concurrent_redeliveries_store_each_message_once(db: Db) {
    const MESSAGES: u64 = 50;
    const DELIVERIES: usize = 4;
    create(&*db.store, "c1").await;
    let messages: Vec<NewMessage> =
        (0..MESSAGES).map(|i| new_message("c1", &format!("m{i}"), None)).collect();
    let attempts = messages.iter().flat_map(|m| std::iter::repeat_n(m.clone(), DELIVERIES)).collect();
    let outcomes = append_concurrently(&db, attempts).await;
    assert_stored_once(&outcomes, |a| a.message.id);
    let stored = db.store.messages_after("c1", 0, 1000).await.unwrap();
    assert_eq!(stored.iter().map(|m| m.offset).collect::<Vec<_>>(), (1..=MESSAGES).collect::<Vec<_>>());
    let ids: HashSet<Uuid> = stored.iter().map(|m| m.id).collect();
    assert_eq!(ids, messages.iter().map(|m| m.id).collect());
}

pub async fn concurrent_retries_with_the_same_client_msg_id_store_one_message(db: Db) {
    const KEYS: usize = 20;
    const RETRIES: usize = 4;
    create(&*db.store, "c1").await;
    // Each retry is a new command, so it comes with a new message id.
    let attempts = (0..KEYS * RETRIES)
        .map(|i| {
            let key = format!("k{}", i % KEYS);
            new_message("c1", &key, Some(&key))
        })
        .collect();
    let outcomes = append_concurrently(&db, attempts).await;
    assert_stored_once(&outcomes, |a| a.message.client_msg_id.clone());
    assert_eq!(db.store.messages_after("c1", 0, 1000).await.unwrap().len(), KEYS);
}

pub async fn recovery_returns_exactly_what_came_after_an_offset(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    for i in 1..=10 {
        store.append_message(new_message("c1", &format!("m{i}"), None)).await.unwrap();
    }
    assert_eq!(texts_after(&*store, "c1", 7).await, ["m8", "m9", "m10"]);
    assert!(texts_after(&*store, "c1", u64::MAX).await.is_empty());
    let page = store.latest_messages("c1", 3).await.unwrap();
    assert_eq!(page.iter().map(|m| m.offset).collect::<Vec<_>>(), [8, 9, 10]);
}

pub async fn a_message_reads_back_as_it_was_stored(db: Db) {
    create(&*db.store, "c1").await;
    let mut new = new_message("c1", "hello", Some("k1"));
    new.created_at = Timestamp(1_700_000_000_123);
    let stored = db.store.append_message(new.clone()).await.unwrap().message;
    let read = db.other.message(new.id).await.unwrap().unwrap();
    assert_eq!(read, stored);
    assert_eq!(read.conversation_id, "c1");
    assert_eq!((read.text.as_str(), read.client_msg_id.as_deref()), ("hello", Some("k1")));
    assert_eq!((read.sender, read.source, read.created_at), (new.sender, new.source, new.created_at));
    let conversation = db.other.conversation("c1").await.unwrap().unwrap();
    assert_eq!(conversation.updated_at, new.created_at);
    assert!(db.other.message(Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn appending_to_a_missing_conversation_fails_unless_asked_to_create_it(db: Db) {
    let store = db.store.clone();
    let err = store.append_message(new_message("nope", "x", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::ConversationNotFound(_)));
    let mut new = new_message("fresh", "x", None);
    // A widget visitor's first message creates its conversation, email and all.
    let visitor = Customer { email: Some("ada@example.com".into()), ..customer("visitor:v9") };
    new.create_for = Some(visitor.clone());
    let appended = store.append_message(new).await.unwrap();
    assert!(appended.conversation_created);
    assert_eq!(appended.conversation.customer, visitor);
    assert_eq!(appended.conversation.last_message.unwrap().offset, 1);
    assert_eq!(db.other.conversation("fresh").await.unwrap().unwrap().customer, visitor);
}

pub async fn statuses_never_move_backwards(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    let m = store.append_message(new_message("c1", "x", None)).await.unwrap().message;
    let read = store.set_status(m.id, DeliveryStatus::Read, Timestamp(10)).await.unwrap().unwrap();
    assert!(read.changed);
    let late = store.set_status(m.id, DeliveryStatus::Delivered, Timestamp(20)).await.unwrap().unwrap();
    assert!(!late.changed);
    assert_eq!(late.update.status, DeliveryStatus::Read);
    assert_eq!(late.update.timestamp, Timestamp(10));
    assert!(store.set_status(Uuid::now_v7(), DeliveryStatus::Read, Timestamp(1)).await.unwrap().is_none());
}

pub async fn concurrent_status_updates_never_move_backwards(db: Db) {
    const MESSAGES: usize = 30;
    create(&*db.store, "c1").await;
    let mut ids = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        ids.push(
            db.store.append_message(new_message("c1", &format!("m{i}"), None)).await.unwrap().message.id,
        );
    }
    let mut updates = JoinSet::new();
    for &id in &ids {
        for (store, status) in db.both().into_iter().zip([DeliveryStatus::Delivered, DeliveryStatus::Read]) {
            updates
                .spawn(async move { store.set_status(id, status, Timestamp::now()).await.unwrap().unwrap() });
        }
    }
    let changes = updates.join_all().await;
    for &id in &ids {
        // The `delivered` call that lost the race also answers `read` (unchanged):
        // exactly one answer is the change to `read`.
        let recorded = changes
            .iter()
            .filter(|c| c.update.message_id == id && c.update.status == DeliveryStatus::Read && c.changed)
            .count();
        assert_eq!(recorded, 1, "read was not recorded once for {id}");
        let again =
            db.store.set_status(id, DeliveryStatus::Delivered, Timestamp::now()).await.unwrap().unwrap();
        assert_eq!(again.update.status, DeliveryStatus::Read, "{id} moved backwards");
    }
}

pub async fn the_inbox_lists_most_recently_active_first_and_filters(db: Db) {
    let store = db.store;
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
        customer: Customer { id: "w".into(), name: "W".into(), phone: Some("4915111".into()), email: None },
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

pub async fn creating_an_existing_conversation_returns_it_unchanged(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
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

pub async fn each_queued_bot_reply_is_taken_once(db: Db) {
    let store = db.store;
    for (id, at) in [("b2", 2), ("b1", 1)] {
        let reply = QueuedBotReply {
            id: id.into(),
            phone: "521".into(),
            text: id.into(),
            at: Timestamp(at),
            expires_at: Timestamp(NOW + 1000),
        };
        store.queue_bot_reply(reply).await.unwrap();
    }
    let taken = store.take_bot_replies("521", Timestamp(NOW)).await.unwrap();
    assert_eq!(taken.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b1", "b2"]);
    assert!(store.take_bot_replies("521", Timestamp(NOW)).await.unwrap().is_empty());
    assert!(!store.remove_bot_reply("b1").await.unwrap());
}

/// A fixed "now" for bot-reply expiry (2023-11-14).
const NOW: i64 = 1_700_000_000_000;

pub async fn an_expired_bot_reply_is_dropped_not_delivered(db: Db) {
    let store = db.store;
    for (id, expires_at) in [("old", NOW - 1), ("fresh", NOW + 1)] {
        let reply = QueuedBotReply {
            id: id.into(),
            phone: "521".into(),
            text: id.into(),
            at: Timestamp(1),
            expires_at: Timestamp(expires_at),
        };
        store.queue_bot_reply(reply).await.unwrap();
    }
    let taken = store.take_bot_replies("521", Timestamp(NOW)).await.unwrap();
    assert_eq!(taken.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["fresh"]);
    assert!(!store.remove_bot_reply("old").await.unwrap(), "the expired reply is gone too");
}

pub async fn concurrent_takers_get_each_bot_reply_once(db: Db) {
    const REPLIES: usize = 40;
    for i in 0..REPLIES {
        let reply = QueuedBotReply {
            id: format!("b{i}"),
            phone: "521".into(),
            text: "hi".into(),
            at: Timestamp(i as i64),
            expires_at: Timestamp(NOW + 1000),
        };
        db.store.queue_bot_reply(reply).await.unwrap();
    }
    let mut takers = JoinSet::new();
    for store in db.both().into_iter().cycle().take(4) {
        takers.spawn(async move { store.take_bot_replies("521", Timestamp(NOW)).await.unwrap() });
    }
    let taken: Vec<String> = takers.join_all().await.into_iter().flatten().map(|r| r.id).collect();
    assert_eq!(taken.len(), REPLIES);
    assert_eq!(taken.iter().collect::<HashSet<_>>().len(), REPLIES);
}

pub async fn a_failed_write_does_not_keep_the_database_locked(db: Db) {
    let store = db.store;
    for _ in 0..3 {
        let err = store.append_message(new_message("missing", "x", None)).await.unwrap_err();
        assert!(matches!(err, StoreError::ConversationNotFound(_)));
    }
    // A lock left behind would make this wait for the lock timeout and fail.
    let write = async {
        create(&*store, "c1").await;
        store.append_message(new_message("c1", "after", None)).await.unwrap()
    };
    let appended =
        tokio::time::timeout(std::time::Duration::from_secs(2), write).await.expect("database still locked");
    assert_eq!(appended.message.offset, 1);
}

/// A worker that lost its partition (its lease lapsed while it was frozen)
/// and wakes with a batch in hand: the batch fails whole, and the offsets
/// its successor stores continue without a gap.
pub async fn a_fenced_out_owner_stores_nothing_and_its_successor_continues(db: Db) {
    create(db.store.as_ref(), "c1").await;
    let claim =
        async |store: &dyn Store, kind, owner| store.claim_partitions(kind, &[7], owner).await.unwrap()[0];
    let (_, old) = claim(db.store.as_ref(), "persist", "a").await;
    let old_fence = Fence { kind: "persist", held: vec![(7, old)] };
    let first = db.store.append_messages(&[new_message("c1", "first", None)], &old_fence).await.unwrap();
    assert_eq!(first[0].as_ref().unwrap().message.offset, 1);
    let (_, new) = claim(db.other.as_ref(), "persist", "b").await;
    assert!(new > old, "a claim raises the epoch");
    let stale = [new_message("c1", "stale", None), new_message("c1", "stale too", None)];
    let err = db.store.append_messages(&stale, &old_fence).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { partition: 7, .. }), "{err:?}");
    let err =
        db.store.append_change(new_change("t1", 1), &Fence { kind: "persist", ..old_fence.clone() }).await;
    assert!(matches!(err, Err(StoreError::Fenced { .. })), "sync changes are fenced too");
    let new_fence = Fence { kind: "persist", held: vec![(7, new)] };
    let next = db.other.append_messages(&[new_message("c1", "second", None)], &new_fence).await.unwrap();
    assert_eq!(next[0].as_ref().unwrap().message.offset, 2);
    assert_eq!(texts_after(db.store.as_ref(), "c1", 0).await, ["first", "second"]);
    // Another kind's partition of the same number is its own.
    let (_, sync) = claim(db.store.as_ref(), "sync", "a").await;
    db.store
        .append_change(new_change("t1", 1), &Fence { kind: "sync", held: vec![(7, sync)] })
        .await
        .unwrap();
}

pub async fn many_partitions_are_claimed_at_once_each_with_its_own_epoch(db: Db) {
    let mut first = db.store.claim_partitions("persist", &[3, 1, 2], "a").await.unwrap();
    first.sort();
    assert_eq!(first, [(1, 1), (2, 1), (3, 1)]);
    let mut again = db.other.claim_partitions("persist", &[2, 3, 4], "b").await.unwrap();
    again.sort();
    assert_eq!(again, [(2, 2), (3, 2), (4, 1)], "a claim raises each epoch; a new partition starts at 1");
    assert_eq!(db.store.claim_partitions("persist", &[], "a").await.unwrap(), []);
}

pub async fn a_batch_is_stored_in_order_and_a_missing_conversation_spoils_only_its_own_message(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    let batch = vec![
        new_message("c1", "one", None),
        new_message("missing", "lost", None),
        new_message("c1", "two", Some("k")),
        new_message("c1", "two again", Some("k")),
    ];
    let outcomes = store.append_messages(&batch, &Fence::none()).await.unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap().message.offset, 1);
    assert!(matches!(outcomes[1], Err(StoreError::ConversationNotFound(_))));
    assert_eq!(outcomes[2].as_ref().unwrap().message.offset, 2);
    assert!(!outcomes[3].as_ref().unwrap().created);
    assert_eq!(texts_after(&*store, "c1", 0).await, ["one", "two"]);
}

pub async fn a_batch_over_several_conversations_numbers_each_and_knows_what_was_stored(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    let before = store.append_message(new_message("c1", "before", Some("k0"))).await.unwrap();
    let mut first_of_new = new_message("new", "hello", None);
    first_of_new.create_for = Some(customer("cust-9"));
    let mut second_of_new = new_message("new", "again", None);
    second_of_new.create_for = Some(customer("cust-9"));
    let batch = vec![
        new_message("c1", "one", None),
        first_of_new,
        new_message("c1", "before, retried", Some("k0")),
        second_of_new.clone(),
        new_message("c1", "two", None),
        second_of_new,
    ];
    let outcomes: Vec<Appended> = store
        .append_messages(&batch, &Fence::none())
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let offsets: Vec<u64> = outcomes.iter().map(|a| a.message.offset).collect();
    assert_eq!(offsets, [2, 1, 1, 2, 3, 2]);
    let created: Vec<bool> = outcomes.iter().map(|a| a.created).collect();
    assert_eq!(created, [true, true, false, true, true, false]);
    let conversation_created: Vec<bool> = outcomes.iter().map(|a| a.conversation_created).collect();
    assert_eq!(conversation_created, [false, true, false, false, false, false]);
    assert_eq!(outcomes[2].message, before.message, "a retry gets the stored message back");
    assert_eq!(outcomes[5].message, outcomes[3].message, "a redelivery within the batch too");
    for appended in outcomes.iter().filter(|a| a.created) {
        assert_eq!(appended.conversation.last_message.as_ref(), Some(&appended.message));
        assert_eq!(appended.conversation.id, appended.message.conversation_id);
    }
    assert_eq!(outcomes[1].conversation.customer.id, "cust-9");
    assert_eq!(texts_after(&*store, "c1", 0).await, ["before", "one", "two"]);
    assert_eq!(texts_after(&*store, "new", 0).await, ["hello", "again"]);
    let stored = store.conversation("new").await.unwrap().unwrap();
    assert_eq!(stored.last_message.map(|m| m.text).as_deref(), Some("again"));
}

fn new_change(tenant: &str, n: usize) -> NewChange {
    NewChange {
        id: Uuid::now_v7(),
        tenant: tenant.into(),
        entity: "order".into(),
        op: "create".into(),
        data: format!(r#"{{"n": {n}, "items": [{{"sku": "a.1", "qty": 2}}], "note": "caf\u00e9 \"x\""}}"#),
        at: Timestamp::now(),
    }
}

fn seqs(changes: &[Change]) -> Vec<u64> {
    changes.iter().map(|c| c.seq).collect()
}

pub async fn sync_seqs_start_at_one_per_tenant_and_have_no_gaps_under_concurrent_writers(db: Db) {
    let mut tasks = JoinSet::new();
    for (i, store) in db.both().into_iter().cycle().take(50).enumerate() {
        let tenant = if i % 5 == 0 { "tenant.b" } else { "tenant-a" };
        tasks.spawn(async move { store.append_change(new_change(tenant, i), &Fence::none()).await.unwrap() });
    }
    for (change, created) in tasks.join_all().await {
        assert!(created);
        assert!(change.confirmed_at.is_none());
    }
    let a = db.store.pending_changes("tenant-a", 1000).await.unwrap();
    let b = db.other.pending_changes("tenant.b", 1000).await.unwrap();
    assert_eq!(seqs(&a), (1..=40).collect::<Vec<_>>());
    assert_eq!(seqs(&b), (1..=10).collect::<Vec<_>>());
    assert!(a.iter().all(|c| c.tenant == "tenant-a") && b.iter().all(|c| c.tenant == "tenant.b"));
    assert_eq!(db.store.last_change_seq("tenant-a").await.unwrap(), 40);
    assert_eq!(db.store.last_change_seq("nobody").await.unwrap(), 0);
    let data: serde_json::Value = serde_json::from_str(&a[0].data).unwrap();
    assert_eq!(data["items"][0]["sku"], "a.1");
    assert_eq!(data["note"], "caf\u{e9} \"x\"");
}

pub async fn concurrent_redeliveries_of_a_sync_change_store_it_once(db: Db) {
    let first = new_change("t1", 1);
    let mut tasks = JoinSet::new();
    for store in db.both().into_iter().cycle().take(8) {
        let change = first.clone();
        tasks.spawn(async move { store.append_change(change, &Fence::none()).await.unwrap() });
    }
    let outcomes = tasks.join_all().await;
    assert_eq!(outcomes.iter().filter(|(_, created)| *created).count(), 1);
    assert!(outcomes.iter().all(|(c, _)| c.id == first.id && c.seq == 1));
    let (second, created) = db.store.append_change(new_change("t1", 2), &Fence::none()).await.unwrap();
    assert!(created);
    assert_eq!(second.seq, 2);
    let (again, created) = db.other.append_change(first.clone(), &Fence::none()).await.unwrap();
    assert!(!created);
    assert_eq!((again.seq, again.entity.as_str(), again.op.as_str()), (1, "order", "create"));
}

pub async fn pending_sync_changes_come_in_seq_order_until_confirmed(db: Db) {
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(db.store.append_change(new_change("pos", n), &Fence::none()).await.unwrap().0.id);
    }
    let (elsewhere, _) = db.store.append_change(new_change("other", 1), &Fence::none()).await.unwrap();
    assert!(!db.store.has_pending_changes("nobody").await.unwrap());
    assert_eq!(seqs(&db.store.pending_changes("pos", 3).await.unwrap()), [1, 2, 3]);
    let now = Timestamp::now();
    assert_eq!(db.other.confirm_changes("pos", &Confirm::Through(2), now).await.unwrap(), 2);
    assert_eq!(seqs(&db.store.pending_changes("pos", 100).await.unwrap()), [3, 4, 5]);
    // Another tenant's id confirms nothing here.
    let by_ids = Confirm::Ids(vec![ids[3], elsewhere.id]);
    assert_eq!(db.store.confirm_changes("pos", &by_ids, now).await.unwrap(), 1);
    assert_eq!(db.store.confirm_changes("pos", &by_ids, now).await.unwrap(), 0);
    assert_eq!(seqs(&db.other.pending_changes("pos", 100).await.unwrap()), [3, 5]);
    assert!(db.store.has_pending_changes("pos").await.unwrap());
    assert_eq!(db.store.confirm_changes("pos", &Confirm::Through(u64::MAX), now).await.unwrap(), 2);
    assert!(!db.other.has_pending_changes("pos").await.unwrap());
    assert!(db.store.pending_changes("pos", 100).await.unwrap().is_empty());
    assert_eq!(db.store.last_change_seq("pos").await.unwrap(), 5);
    assert_eq!(seqs(&db.store.pending_changes("other", 100).await.unwrap()), [1]);
}

pub async fn one_of_two_workers_claims_a_whatsapp_send_and_a_sent_one_is_never_claimed_again(db: Db) {
    let id = Uuid::now_v7();
    let claims: Vec<OutboxClaim> =
        db.both()
            .into_iter()
            .map(|store| async move {
                store.claim_send(id, "15551234567", Timestamp(NOW), 120_000).await.unwrap()
            })
            .collect::<JoinSet<_>>()
            .join_all()
            .await;
    let sending = claims.iter().filter(|c| matches!(c, OutboxClaim::Send { .. })).count();
    assert_eq!(sending, 1, "exactly one worker sends: {claims:?}");
    assert!(claims.contains(&OutboxClaim::InFlight));
    assert!(db.store.record_sent(id, "wamid.A", Timestamp(NOW + 1)).await.unwrap());
    assert!(!db.other.record_sent(id, "wamid.B", Timestamp(NOW + 2)).await.unwrap(), "Meta's first id stays");
    let later = db.other.claim_send(id, "15551234567", Timestamp(NOW + 10_000_000), 120_000).await.unwrap();
    assert_eq!(later, OutboxClaim::Sent("wamid.A".into()));
    assert_eq!(db.store.message_by_wamid("wamid.A").await.unwrap(), Some(id));
    assert_eq!(db.store.message_by_wamid("wamid.B").await.unwrap(), None);
}

pub async fn an_expired_whatsapp_lease_is_claimed_again_and_giving_up_is_final(db: Db) {
    let id = Uuid::now_v7();
    let store = db.store;
    assert!(matches!(
        store.claim_send(id, "1555", Timestamp(NOW), 1_000).await.unwrap(),
        OutboxClaim::Send { .. }
    ));
    assert_eq!(
        store.claim_send(id, "1555", Timestamp(NOW + 500), 1_000).await.unwrap(),
        OutboxClaim::InFlight
    );
    assert!(!store.record_failure(id, "500 from Graph", false, Timestamp(NOW + 600)).await.unwrap());
    // The worker that held it died: after the lease another one sends.
    assert!(matches!(
        store.claim_send(id, "1555", Timestamp(NOW + 5_000), 1_000).await.unwrap(),
        OutboxClaim::Send { .. }
    ));
    assert!(store.record_failure(id, "131047", true, Timestamp(NOW + 5_100)).await.unwrap());
    assert_eq!(
        store.claim_send(id, "1555", Timestamp(NOW + 99_000), 1_000).await.unwrap(),
        OutboxClaim::Failed
    );
}

fn agent(id: &str) -> Assignee {
    Assignee { id: id.into(), name: format!("Agent {id}") }
}

pub async fn of_concurrent_claims_exactly_one_wins_and_the_store_agrees(db: Db) {
    const CONVERSATIONS: usize = 10;
    let mut claims = JoinSet::new();
    for i in 0..CONVERSATIONS {
        let id = format!("c{i}");
        create(&*db.store, &id).await;
        for (store, who) in db.both().into_iter().zip(["ana", "bo"]) {
            let id = id.clone();
            claims.spawn(async move {
                let claimed = store.assign(&id, Assignment::Claim(agent(who)), Timestamp::now()).await;
                (id, who, claimed)
            });
        }
    }
    let mut winners: HashMap<String, &str> = HashMap::new();
    for (id, who, claimed) in claims.join_all().await {
        match claimed {
            Ok(handled) => {
                assert!(handled.changed);
                assert!(winners.insert(id, who).is_none(), "two winners");
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a claim failed: {e}"),
        }
    }
    assert_eq!(winners.len(), CONVERSATIONS, "every conversation has its one winner");
    let agents = db.store.agents().await.unwrap();
    for (id, who) in winners {
        let stored = db.other.conversation(&id).await.unwrap().unwrap();
        assert_eq!(stored.assignee, Some(agent(who)));
        let seen = agents.iter().find(|a| a.id == who);
        assert!(seen.is_some_and(|a| a.last_assigned_at.0 > 0), "an assignee is an agent seen");
    }
}

pub async fn assignment_opens_a_pending_conversation_and_a_customer_reopens_a_closed_one(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    let pending =
        store.set_conversation_status("c1", ConversationStatus::Pending, Timestamp(5)).await.unwrap();
    assert_eq!(
        (pending.previous_status, pending.conversation.status),
        (ConversationStatus::Open, ConversationStatus::Pending)
    );
    let again = store.set_conversation_status("c1", ConversationStatus::Pending, Timestamp(6)).await.unwrap();
    assert!(!again.changed, "the status it has already");
    let claimed = store.assign("c1", Assignment::Claim(agent("ana")), Timestamp(7)).await.unwrap();
    assert_eq!(claimed.conversation.status, ConversationStatus::Open);
    let held = store.assign("c1", Assignment::Claim(agent("ana")), Timestamp(8)).await.unwrap();
    assert!(!held.changed, "claiming what one holds changes nothing");
    let conflict = store.assign("c1", Assignment::Claim(agent("bo")), Timestamp(9)).await.unwrap_err();
    assert!(matches!(conflict, StoreError::Conflict(_)));
    let moved = store.assign("c1", Assignment::Set(Some(agent("bo"))), Timestamp(10)).await.unwrap();
    assert_eq!(moved.previous_assignee, Some(agent("ana")));
    store.set_conversation_status("c1", ConversationStatus::Closed, Timestamp(11)).await.unwrap();
    let by_agent = store.append_message(new_message("c1", "bye", None)).await.unwrap();
    assert!(!by_agent.reopened);
    assert_eq!(
        by_agent.conversation.status,
        ConversationStatus::Closed,
        "an agent's message leaves it closed"
    );
    let mut from_customer = new_message("c1", "one more thing", None);
    from_customer.sender = Sender { id: "cust-1".into(), role: Role::Customer, name: "C".into() };
    let reopened = store.append_message(from_customer).await.unwrap();
    assert!(reopened.reopened);
    assert_eq!(reopened.conversation.status, ConversationStatus::Open);
    let stored = db.other.conversation("c1").await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.assignee),
        (ConversationStatus::Open, Some(agent("bo"))),
        "assignee kept"
    );
    let unassigned = store.assign("c1", Assignment::Set(None), Timestamp(12)).await.unwrap();
    assert_eq!(unassigned.conversation.assignee, None);
    let missing = store.assign("nope", Assignment::Set(None), Timestamp(13)).await.unwrap_err();
    assert!(matches!(missing, StoreError::ConversationNotFound(_)));
}

pub async fn unread_counts_what_came_after_the_read_cursor_but_not_ones_own(db: Db) {
    let store = db.store;
    create(&*store, "c1").await;
    create(&*store, "c2").await;
    let mut from_customer = Vec::new();
    for text in ["a", "b", "c"] {
        let mut new = new_message("c1", text, None);
        new.sender = Sender { id: "cust-1".into(), role: Role::Customer, name: "C".into() };
        from_customer.push(store.append_message(new).await.unwrap().message);
    }
    store.append_message(new_message("c1", "mine", None)).await.unwrap();
    store.assign("c2", Assignment::Claim(agent("agent-1")), Timestamp::now()).await.unwrap();
    let unread = |assignee: Option<AssigneeFilter>| {
        let filter =
            InboxFilter { reader: Some("agent-1".into()), assignee, limit: 10, ..Default::default() };
        let other = db.other.clone();
        async move {
            let listed = other.list_conversations(&filter).await.unwrap();
            listed.into_iter().map(|c| (c.id, c.unread)).collect::<Vec<_>>()
        }
    };
    assert_eq!(unread(Some(AssigneeFilter::Unassigned)).await, [("c1".to_owned(), Some(3))]);
    assert!(store.read_up_to(from_customer[1].id, "agent-1").await.unwrap());
    assert!(store.read_up_to(from_customer[0].id, "agent-1").await.unwrap(), "a cursor never moves back");
    assert_eq!(unread(Some(AssigneeFilter::Unassigned)).await, [("c1".to_owned(), Some(1))]);
    assert_eq!(unread(Some(AssigneeFilter::Agent("agent-1".into()))).await, [("c2".to_owned(), Some(0))]);
    assert!(!store.read_up_to(Uuid::now_v7(), "agent-1").await.unwrap(), "an unknown message");
    let plain = InboxFilter { limit: 10, ..Default::default() };
    assert!(db.other.list_conversations(&plain).await.unwrap().iter().all(|c| c.unread.is_none()));
}

pub async fn a_private_note_reads_back_as_private(db: Db) {
    create(&*db.store, "c1").await;
    let mut note = new_message("c1", "VIP customer", None);
    note.private = true;
    let stored = db.store.append_message(note).await.unwrap().message;
    assert!(stored.private);
    assert!(db.other.message(stored.id).await.unwrap().unwrap().private);
    let last = db.other.conversation("c1").await.unwrap().unwrap().last_message.unwrap();
    assert!(last.private, "a listing's last message keeps it too");
}
