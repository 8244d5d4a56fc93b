//! The in-process bus keeps the promises the NATS bus makes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchboard_bus::rpc::{Caller, reply};
use switchboard_bus::{Bus, DurableStream, Envelope, MemoryBus, subjects};

const WAIT: Duration = Duration::from_secs(5);

async fn next<S: futures_util::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, s.next()).await.expect("timed out").expect("stream ended")
}

#[tokio::test]
async fn wildcard_and_exact_subscribers_both_receive() {
    let bus = MemoryBus::new();
    let mut exact = bus.subscribe("sb.conv.c1.msg").await.unwrap();
    let mut wild = bus.subscribe("sb.conv.*.msg").await.unwrap();
    let mut other = bus.subscribe("sb.conv.c2.msg").await.unwrap();
    bus.publish(Envelope::new("sb.conv.c1.msg", "hello")).await.unwrap();
    bus.publish(Envelope::new("sb.conv.c2.msg", "other")).await.unwrap();
    assert_eq!(next(&mut exact).await.payload, "hello");
    assert_eq!(next(&mut wild).await.payload, "hello");
    assert_eq!(next(&mut wild).await.payload, "other");
    assert_eq!(next(&mut other).await.payload, "other");
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let bus = MemoryBus::new();
    let sub = bus.subscribe("a.b").await.unwrap();
    drop(sub);
    let mut later = bus.subscribe("a.>").await.unwrap();
    bus.publish(Envelope::new("a.b", "x")).await.unwrap();
    assert_eq!(next(&mut later).await.payload, "x");
    assert_eq!(bus.dropped(), 0, "nothing may go to the dropped subscriber");
}

#[tokio::test]
async fn durable_publish_is_deduplicated_and_shared_between_consumers() {
    let bus = MemoryBus::new();
    for (id, body) in [("m1", "one"), ("m1", "one again"), ("m2", "two")] {
        bus.publish_durable(Envelope::new(subjects::CMD_SEND_MESSAGE, body), id).await.unwrap();
    }
    let mut a = bus.consume(DurableStream::Commands, "persist").await.unwrap();
    let mut b = bus.consume(DurableStream::Commands, "persist").await.unwrap();
    let first = next(&mut a).await;
    let second = next(&mut b).await;
    let mut bodies = vec![first.envelope.payload.clone(), second.envelope.payload.clone()];
    bodies.sort();
    assert_eq!(bodies, vec!["one", "two"]);
    first.ack().await.unwrap();
    second.ack().await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(100), a.next()).await;
    assert!(nothing.is_err(), "the duplicate must not be delivered");
}

#[tokio::test]
async fn a_nak_redelivers_before_newer_messages() {
    let bus = MemoryBus::new();
    let mut consumer = bus.consume(DurableStream::Commands, "persist").await.unwrap();
    bus.publish_durable(Envelope::new("sb.cmd.x", "first"), "1").await.unwrap();
    bus.publish_durable(Envelope::new("sb.cmd.x", "second"), "2").await.unwrap();
    next(&mut consumer).await.nak().await.unwrap();
    assert_eq!(next(&mut consumer).await.envelope.payload, "first");
    assert_eq!(next(&mut consumer).await.envelope.payload, "second");
}

#[tokio::test]
async fn durable_publish_outside_any_stream_is_refused() {
    let bus = MemoryBus::new();
    let err = bus.publish_durable(Envelope::new("sb.conv.c1.typing", "x"), "1").await;
    assert!(err.is_err());
}

#[tokio::test]
async fn a_call_gets_the_answer_to_its_own_command() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let caller = Caller::start(bus.clone(), "edge-1", WAIT).await.unwrap();
    let mut work = bus.consume(DurableStream::Commands, "persist").await.unwrap();
    let worker_bus = bus.clone();
    tokio::spawn(async move {
        while let Some(d) = work.next().await {
            let answer = format!("done {}", String::from_utf8_lossy(&d.envelope.payload));
            reply(worker_bus.as_ref(), &d.envelope, answer.into()).await.unwrap();
            d.ack().await.unwrap();
        }
    });
    let (a, b) = tokio::join!(
        caller.call(Envelope::new("sb.cmd.x", "a"), "a"),
        caller.call(Envelope::new("sb.cmd.x", "b"), "b"),
    );
    assert_eq!(a.unwrap(), "done a");
    assert_eq!(b.unwrap(), "done b");
}

#[tokio::test]
async fn a_call_nobody_answers_times_out() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let caller = Caller::start(bus, "edge-1", Duration::from_millis(50)).await.unwrap();
    let err = caller.call(Envelope::new("sb.cmd.x", "a"), "a").await.unwrap_err();
    assert!(matches!(err, switchboard_bus::BusError::Timeout(_)));
}
