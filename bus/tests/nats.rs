//! The NATS bus against a real nats-server with JetStream, named by
//! `SWITCHBOARD_TEST_NATS_URL` (`source deploy/lib/nats.sh && nats_start`
//! starts one and sets it). Without it these tests fail: a silently skipped
//! suite would hide a broken bus.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::TryStreamExt;
use switchboard_bus::subjects::{Family, op};
use switchboard_bus::{Bus, DurableStream, Envelope, NatsBus, NatsOptions, subjects};
use tokio::sync::{Mutex, MutexGuard};

use common::{next, unique};

fn url() -> String {
    std::env::var("SWITCHBOARD_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "SWITCHBOARD_TEST_NATS_URL is not set: these tests need a nats-server with JetStream \
             (`source deploy/lib/nats.sh && nats_start` starts one and sets it; tests/run does that)"
        )
    })
}

async fn connect_with(name: &str, options: NatsOptions) -> Arc<dyn Bus> {
    Arc::new(NatsBus::connect_with(&url(), name, options).await.expect("connect to NATS"))
}

/// Every test connection agrees on the lease, which is the bucket's.
fn options() -> NatsOptions {
    NatsOptions { lease: common::LEASE, ..NatsOptions::default() }
}

async fn bus() -> Arc<dyn Bus> {
    connect_with("bus-tests", options()).await
}

#[tokio::test]
async fn a_lease_has_one_holder_until_released() {
    common::a_lease_has_one_holder_until_released(bus().await).await;
}

#[tokio::test]
async fn a_lease_not_renewed_lapses() {
    common::a_lease_not_renewed_lapses(bus().await).await;
}

#[tokio::test]
async fn a_watch_replays_live_keys_then_follows_changes() {
    common::a_watch_replays_live_keys_then_follows_changes(bus().await).await;
}

#[tokio::test]
async fn a_pull_takes_at_most_its_share_and_ends() {
    let _turn = commands_turn().await;
    common::a_pull_takes_at_most_its_share_and_ends(bus().await, 5).await;
}

/// SB_COMMANDS is a work queue, which allows one consumer without a filter,
/// and any test's consumer would take the others' commands: tests that use
/// it take turns, each from an empty stream without consumers. A turn also
/// ends that way, so tests run next against the same server (other crates'
/// too) can consume it under their own name.
static COMMANDS: Mutex<()> = Mutex::const_new(());

struct CommandsTurn {
    _turn: MutexGuard<'static, ()>,
}

async fn commands_turn() -> CommandsTurn {
    let turn = CommandsTurn { _turn: COMMANDS.lock().await };
    bus().await; // declares the stream
    clear_commands().await;
    turn
}

impl Drop for CommandsTurn {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down.
        let cleared = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(clear_commands())
        });
        cleared.join().ok();
    }
}

async fn clear_commands() {
    let client = async_nats::connect(url()).await.expect("connect to NATS");
    let stream = jetstream::new(client).get_stream(DurableStream::Commands.name()).await.unwrap();
    stream.purge().await.unwrap();
    let consumers: Vec<String> = stream.consumer_names().try_collect().await.unwrap();
    for name in consumers {
        stream.delete_consumer(&name).await.unwrap();
    }
}

#[tokio::test]
async fn wildcard_and_exact_subscribers_both_receive() {
    common::wildcard_and_exact_subscribers_both_receive(bus().await).await;
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    common::dropping_a_subscription_unsubscribes(bus().await).await;
}

#[tokio::test]
async fn durable_publish_is_deduplicated_and_shared_between_consumers() {
    let _turn = commands_turn().await;
    common::durable_publish_is_deduplicated_and_shared_between_consumers(bus().await, bus().await, "persist")
        .await;
}

#[tokio::test]
async fn a_nak_redelivers() {
    let _turn = commands_turn().await;
    common::a_nak_redelivers(bus().await, &unique("nak")).await;
}

#[tokio::test]
async fn durable_publish_outside_any_stream_is_refused() {
    common::durable_publish_outside_any_stream_is_refused(bus().await).await;
}

#[tokio::test]
async fn durable_events_reach_core_subscribers() {
    common::durable_events_reach_core_subscribers(bus().await).await;
}

#[tokio::test]
async fn a_call_gets_the_answer_to_its_own_command() {
    let _turn = commands_turn().await;
    common::a_call_gets_the_answer_to_its_own_command(bus().await, &unique("worker")).await;
}

#[tokio::test]
async fn a_call_nobody_answers_times_out() {
    let _turn = commands_turn().await;
    common::a_call_nobody_answers_times_out(bus().await).await;
}

#[tokio::test]
async fn an_unacknowledged_command_goes_to_another_process() {
    let _turn = commands_turn().await;
    let quick = NatsOptions { ack_wait: Duration::from_secs(1), ..options() };
    let (first, second) = (connect_with("first", quick.clone()).await, connect_with("second", quick).await);
    let durable = unique("worker");
    let mut taken = first.consume(DurableStream::Commands, &durable, subjects::COMMANDS).await.unwrap();
    first
        .publish_durable(Envelope::new(Family::Chat.command(0, op::SEND_MESSAGE), "work"), &unique("id"))
        .await
        .unwrap();
    assert_eq!(next(&mut taken).await.envelope.payload, "work");
    // The first process dies with the command unacknowledged.
    drop((taken, first));
    let mut survivor = second.consume(DurableStream::Commands, &durable, subjects::COMMANDS).await.unwrap();
    let again = next(&mut survivor).await;
    assert_eq!(again.envelope.payload, "work");
    again.ack().await.unwrap();
}

#[tokio::test]
async fn a_late_consumer_replays_stored_events() {
    let bus = bus().await;
    let subject = subjects::conv_msg(&unique("c"));
    bus.publish_durable(Envelope::new(subject.clone(), "before"), &unique("msg")).await.unwrap();
    bus.publish_durable(Envelope::new(subject.clone(), "end"), &unique("msg")).await.unwrap();
    assert_eq!(replay(bus.as_ref(), &subject).await, ["before", "end"]);
}

#[tokio::test]
async fn a_duplicate_from_another_process_is_stored_once() {
    let (first, second) = (bus().await, bus().await);
    let subject = subjects::conv_status(&unique("c"));
    let id = unique("status");
    first.publish_durable(Envelope::new(subject.clone(), "read"), &id).await.unwrap();
    second.publish_durable(Envelope::new(subject.clone(), "read again"), &id).await.unwrap();
    first.publish_durable(Envelope::new(subject.clone(), "end"), &unique("status")).await.unwrap();
    assert_eq!(replay(first.as_ref(), &subject).await, ["read", "end"]);
}

/// The stored events on `subject`, up to one whose body is `end`, read by a
/// new durable consumer (which also walks past other tests' events).
async fn replay(bus: &dyn Bus, subject: &str) -> Vec<String> {
    let mut events = bus.consume(DurableStream::Events, &unique("replay"), "").await.unwrap();
    let mut bodies = Vec::new();
    while bodies.last().is_none_or(|b| b != "end") {
        let delivery = next(&mut events).await;
        if delivery.envelope.subject == subject {
            bodies.push(String::from_utf8_lossy(&delivery.envelope.payload).into_owned());
        }
        delivery.ack().await.unwrap();
    }
    bodies
}

#[tokio::test]
async fn a_subscription_hears_other_processes_once_it_returns() {
    let (listener, speaker) = (bus().await, bus().await);
    assert!(listener.is_ready().await);
    let subject = subjects::conv_typing(&unique("c"));
    let mut heard = listener.subscribe(&subject).await.unwrap();
    speaker.publish(Envelope::new(subject, "typing")).await.unwrap();
    assert_eq!(next(&mut heard).await.payload, "typing");
}
