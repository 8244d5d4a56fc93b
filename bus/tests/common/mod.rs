//! The promises every bus keeps, one async function per behaviour, run
//! against each implementation by the thin test files beside this module.
//! Subjects, message ids and reply nodes are unique per call, so runs on a
//! shared server do not see each other.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use switchboard_bus::rpc::{Caller, reply};
use switchboard_bus::subjects::{Family, op};
use switchboard_bus::{Backlog, Bus, BusError, DurableStream, Envelope, headers, subjects};

pub const WAIT: Duration = Duration::from_secs(10);
/// How long silence must last to count as "nothing more comes".
pub const QUIET: Duration = Duration::from_millis(300);

/// A name no other test (or earlier run) uses; also a valid subject token.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

pub async fn next<S: Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, s.next()).await.expect("timed out").expect("stream ended")
}

pub async fn assert_quiet<S: Stream + Unpin>(s: &mut S, why: &str) {
    assert!(tokio::time::timeout(QUIET, s.next()).await.is_err(), "{why}");
}

pub async fn wildcard_and_exact_subscribers_both_receive(bus: Arc<dyn Bus>) {
    let (c1, c2) = (unique("c1"), unique("c2"));
    let mut exact = bus.subscribe(&subjects::conv_msg(&c1)).await.unwrap();
    let mut wild = bus.subscribe(&subjects::conv_all(&c1)).await.unwrap();
    let mut other = bus.subscribe(&subjects::conv_msg(&c2)).await.unwrap();
    let hello = Envelope::new(subjects::conv_msg(&c1), "hello").header(headers::CONVERSATION, c1.clone());
    bus.publish(hello.clone()).await.unwrap();
    bus.publish(Envelope::new(subjects::conv_msg(&c2), "other")).await.unwrap();
    let got = next(&mut exact).await;
    assert_eq!((got.subject.as_str(), &got.payload[..]), (hello.subject.as_str(), &b"hello"[..]));
    assert_eq!(got.headers.get(headers::CONVERSATION), Some(c1.as_str()), "headers travel");
    assert_eq!(next(&mut wild).await.payload, "hello");
    assert_eq!(next(&mut other).await.payload, "other");
    assert_quiet(&mut wild, "a wildcard gets only its own subjects").await;
}

pub async fn dropping_a_subscription_unsubscribes(bus: Arc<dyn Bus>) {
    let subject = format!("{}.b", unique("a"));
    drop(bus.subscribe(&subject).await.unwrap());
    let mut later = bus.subscribe(&subject).await.unwrap();
    bus.publish(Envelope::new(subject, "x")).await.unwrap();
    assert_eq!(next(&mut later).await.payload, "x");
}

/// `first` and `second` may be the same bus, or two processes' connections.
pub async fn durable_publish_is_deduplicated_and_shared_between_consumers(
    first: Arc<dyn Bus>,
    second: Arc<dyn Bus>,
    durable: &str,
) {
    let (m1, m2) = (unique("m1"), unique("m2"));
    for (id, body) in [(&m1, "one"), (&m1, "one again"), (&m2, "two")] {
        first
            .publish_durable(Envelope::new(Family::Chat.command(0, op::SEND_MESSAGE), body), id)
            .await
            .unwrap();
    }
    let a = first.consume(DurableStream::Commands, durable, subjects::COMMANDS).await.unwrap();
    let b = second.consume(DurableStream::Commands, durable, subjects::COMMANDS).await.unwrap();
    // Which consumer gets which message is the server's choice.
    let mut both = futures_util::stream::select(a, b);
    let (x, y) = (next(&mut both).await, next(&mut both).await);
    let mut bodies = vec![x.envelope.payload.clone(), y.envelope.payload.clone()];
    bodies.sort();
    assert_eq!(bodies, vec!["one", "two"]);
    x.ack().await.unwrap();
    y.ack().await.unwrap();
    assert_quiet(&mut both, "the duplicate must not be delivered, nor an acknowledged message again").await;
}

pub async fn a_nak_redelivers(bus: Arc<dyn Bus>, durable: &str) {
    let mut consumer = bus.consume(DurableStream::Commands, durable, subjects::COMMANDS).await.unwrap();
    bus.publish_durable(Envelope::new(Family::Chat.command(0, op::SET_STATUS), "again"), &unique("id"))
        .await
        .unwrap();
    next(&mut consumer).await.nak().await.unwrap();
    let redelivered = next(&mut consumer).await;
    assert_eq!(redelivered.envelope.payload, "again");
    redelivered.ack().await.unwrap();
    assert_quiet(&mut consumer, "an acknowledged message is not delivered again").await;
}

pub async fn durable_publish_outside_any_stream_is_refused(bus: Arc<dyn Bus>) {
    let typing = Envelope::new(subjects::conv_typing(&unique("c")), "x");
    let err = bus.publish_durable(typing, &unique("id")).await.unwrap_err();
    assert!(matches!(err, BusError::NoStream(_)), "{err:?}");
}

pub async fn durable_events_reach_core_subscribers(bus: Arc<dyn Bus>) {
    let conversation = unique("c");
    let mut live = bus.subscribe(&subjects::conv_all(&conversation)).await.unwrap();
    let event =
        Envelope::new(subjects::conv_msg(&conversation), "stored").header(headers::EVENT, "message.new");
    bus.publish_durable(event, &unique("msg")).await.unwrap();
    let got = next(&mut live).await;
    assert_eq!(got.payload, "stored");
    assert_eq!(got.headers.get(headers::EVENT), Some("message.new"));
}

pub async fn a_call_gets_the_answer_to_its_own_command(bus: Arc<dyn Bus>, durable: &str) {
    let caller = Caller::start(bus.clone(), &unique("edge"), WAIT).await.unwrap();
    let mut work = bus.consume(DurableStream::Commands, durable, subjects::COMMANDS).await.unwrap();
    let worker_bus = bus.clone();
    let worker = tokio::spawn(async move {
        while let Some(d) = work.next().await {
            let answer = format!("done {}", String::from_utf8_lossy(&d.envelope.payload));
            reply(worker_bus.as_ref(), &d.envelope, answer.into()).await.unwrap();
            d.ack().await.unwrap();
        }
    });
    let (id_a, id_b) = (unique("a"), unique("b"));
    let (a, b) = tokio::join!(
        caller.call(Envelope::new(Family::Chat.command(0, op::BOT_REPLY), "a"), &id_a),
        caller.call(Envelope::new(Family::Chat.command(0, op::BOT_REPLY), "b"), &id_b),
    );
    worker.abort();
    assert_eq!(a.unwrap(), "done a");
    assert_eq!(b.unwrap(), "done b");
}

pub async fn a_call_nobody_answers_times_out(bus: Arc<dyn Bus>) {
    let caller = Caller::start(bus, &unique("edge"), Duration::from_millis(50)).await.unwrap();
    let err = caller
        .call(Envelope::new(Family::Chat.command(0, op::BOT_REPLY), "a"), &unique("a"))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout(_)), "{err:?}");
}

/// The lease every test bus is made with: short, so a lapse is seen quickly.
pub const LEASE: Duration = Duration::from_secs(1);

pub async fn a_lease_has_one_holder_until_released(bus: Arc<dyn Bus>) {
    let leases = bus.leases();
    let key = format!("owner.test.{}", unique("p"));
    let first = leases.acquire(&key, "a".into()).await.unwrap().expect("a free key is taken");
    assert_eq!(leases.acquire(&key, "b".into()).await.unwrap(), None, "a held key is not taken again");
    let renewed = leases.renew(&key, "a".into(), first).await.unwrap().expect("its holder renews it");
    assert!(renewed > first);
    assert_eq!(leases.renew(&key, "x".into(), first).await.unwrap(), None, "a stale revision renews nothing");
    leases.release(&key, Some(first)).await.unwrap();
    assert_eq!(leases.acquire(&key, "b".into()).await.unwrap(), None, "a stale release lets nothing go");
    leases.release(&key, Some(renewed)).await.unwrap();
    assert!(leases.acquire(&key, "b".into()).await.unwrap().is_some(), "released, it is free");
}

pub async fn a_lease_not_renewed_lapses(bus: Arc<dyn Bus>) {
    let leases = bus.leases();
    assert_eq!(leases.ttl(), LEASE);
    let key = format!("owner.test.{}", unique("p"));
    let taken = tokio::time::Instant::now();
    leases.acquire(&key, "a".into()).await.unwrap().expect("taken");
    let lapsed = async {
        while leases.acquire(&key, "b".into()).await.unwrap().is_none() {
            tokio::time::sleep(LEASE / 20).await;
        }
    };
    tokio::time::timeout(LEASE * 5, lapsed).await.expect("the lease lapses");
    assert!(taken.elapsed() >= LEASE * 9 / 10, "not before its time: {:?}", taken.elapsed());
}

pub async fn a_watch_replays_live_keys_then_follows_changes(bus: Arc<dyn Bus>) {
    use switchboard_bus::leases::Change;
    let leases = bus.leases();
    let (old, new) = (format!("worker.test.{}", unique("a")), format!("worker.test.{}", unique("b")));
    leases.put(&old, "1".into()).await.unwrap();
    let mut watch = leases.watch().await.unwrap();
    until(&mut watch, |c| matches!(c, Change::Put(e) if e.key == old && e.value == "1")).await;
    leases.put(&new, "2".into()).await.unwrap();
    until(&mut watch, |c| matches!(c, Change::Put(e) if e.key == new && e.value == "2")).await;
    leases.release(&new, None).await.unwrap();
    until(&mut watch, |c| matches!(c, Change::Released(k) if *k == new)).await;
    let live = leases.entries().await.unwrap();
    assert!(live.iter().any(|e| e.key == old && e.value == "1"), "a live key is listed");
    assert!(live.iter().all(|e| e.key != new), "a released key is not");
}

/// Reads `watch` until a change `wanted` comes (others' keys come too).
async fn until<S>(watch: &mut S, wanted: impl Fn(&switchboard_bus::leases::Change) -> bool)
where
    S: Stream<Item = switchboard_bus::leases::Change> + Unpin,
{
    while !wanted(&next(watch).await) {}
}

/// A pull ends by itself; what it did not get comes with the next, and a
/// command given back comes again.
pub async fn a_pull_takes_at_most_its_share_and_ends(bus: Arc<dyn Bus>, partition: u32) {
    let (durable, filter) = (format!("chat-{partition}"), Family::Chat.partition(partition));
    for n in 0..3 {
        let subject = Family::Chat.command(partition, op::SEND_MESSAGE);
        bus.publish_durable(Envelope::new(subject, format!("m{n}")), &unique("id")).await.unwrap();
    }
    let pull = |max| bus.pull(DurableStream::Commands, &durable, &filter, max, QUIET);
    let first: Vec<_> = pull(2).await.unwrap().collect().await;
    let payloads: Vec<_> = first.iter().map(|d| d.envelope.payload.clone()).collect();
    assert_eq!(payloads, ["m0", "m1"], "at most its share, in order");
    for delivery in first {
        delivery.ack().await.unwrap();
    }
    let backlog = || bus.backlog(DurableStream::Commands, &durable, &filter);
    assert_eq!(backlog().await.unwrap(), Backlog { pending: 1, redelivered: 0 });
    let second: Vec<_> = pull(5).await.unwrap().collect().await;
    assert_eq!(second.len(), 1, "a pull ends once its wait is over, whatever it got");
    second.into_iter().next().unwrap().nak().await.unwrap();
    let third: Vec<_> = pull(5).await.unwrap().collect().await;
    assert_eq!(backlog().await.unwrap(), Backlog { pending: 1, redelivered: 1 }, "delivered again, in hand");
    assert_eq!(
        third.iter().map(|d| d.envelope.payload.clone()).collect::<Vec<_>>(),
        ["m2"],
        "given back, it comes again"
    );
    for delivery in third {
        delivery.ack().await.unwrap();
    }
    assert_eq!(backlog().await.unwrap(), Backlog::default());
}
