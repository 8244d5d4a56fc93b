//! The in-process bus keeps the promises the NATS bus makes (see `common`).

mod common;

use std::sync::Arc;

use futures_util::StreamExt;

use switchboard_bus::subjects::{Family, op};
use switchboard_bus::{Bus, DurableStream, Envelope, MemoryBus, subjects};

fn bus() -> Arc<dyn Bus> {
    Arc::new(MemoryBus::with_lease(common::LEASE))
}

#[tokio::test]
async fn a_lease_has_one_holder_until_released() {
    common::a_lease_has_one_holder_until_released(bus()).await;
}

#[tokio::test]
async fn a_lease_not_renewed_lapses() {
    common::a_lease_not_renewed_lapses(bus()).await;
}

#[tokio::test]
async fn a_watch_replays_live_keys_then_follows_changes() {
    common::a_watch_replays_live_keys_then_follows_changes(bus()).await;
}

#[tokio::test]
async fn a_pull_takes_at_most_its_share_and_ends() {
    common::a_pull_takes_at_most_its_share_and_ends(bus(), 0).await;
}

#[tokio::test]
async fn wildcard_and_exact_subscribers_both_receive() {
    common::wildcard_and_exact_subscribers_both_receive(bus()).await;
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let memory = MemoryBus::new();
    common::dropping_a_subscription_unsubscribes(Arc::new(memory.clone())).await;
    assert_eq!(memory.dropped(), 0, "nothing may go to the dropped subscriber");
}

#[tokio::test]
async fn durable_publish_is_deduplicated_and_shared_between_consumers() {
    let bus = bus();
    common::durable_publish_is_deduplicated_and_shared_between_consumers(bus.clone(), bus, "persist").await;
}

#[tokio::test]
async fn a_nak_redelivers() {
    common::a_nak_redelivers(bus(), "persist").await;
}

/// Only here: a NATS consumer process may already hold newer messages when it
/// gives one back.
#[tokio::test]
async fn a_nak_redelivers_before_newer_messages() {
    let bus = MemoryBus::new();
    let mut consumer = bus.consume(DurableStream::Commands, "persist", subjects::COMMANDS).await.unwrap();
    bus.publish_durable(Envelope::new("sb.cmd.x", "first"), "1").await.unwrap();
    bus.publish_durable(Envelope::new("sb.cmd.x", "second"), "2").await.unwrap();
    common::next(&mut consumer).await.nak().await.unwrap();
    assert_eq!(common::next(&mut consumer).await.envelope.payload, "first");
    assert_eq!(common::next(&mut consumer).await.envelope.payload, "second");
}

#[tokio::test]
async fn durable_publish_outside_any_stream_is_refused() {
    common::durable_publish_outside_any_stream_is_refused(bus()).await;
}

#[tokio::test]
async fn durable_events_reach_core_subscribers() {
    common::durable_events_reach_core_subscribers(bus()).await;
}

#[tokio::test]
async fn a_call_gets_the_answer_to_its_own_command() {
    common::a_call_gets_the_answer_to_its_own_command(bus(), "persist").await;
}

#[tokio::test]
async fn a_call_nobody_answers_times_out() {
    common::a_call_nobody_answers_times_out(bus()).await;
}

#[tokio::test]
async fn each_consumer_takes_only_the_commands_its_filter_matches() {
    let bus = MemoryBus::new();
    bus.publish_durable(Envelope::new(subjects::WA_OUT, "send"), "1").await.unwrap();
    bus.publish_durable(Envelope::new(Family::Chat.command(0, op::SEND_MESSAGE), "store"), "2")
        .await
        .unwrap();
    let mut chat = bus.consume(DurableStream::Commands, "persist", &Family::Chat.partition(0)).await.unwrap();
    let mut whatsapp = bus.consume(DurableStream::Commands, "whatsapp-out", subjects::WA_OUT).await.unwrap();
    let wait = std::time::Duration::from_secs(5);
    let stored = tokio::time::timeout(wait, chat.next()).await.unwrap().unwrap();
    let sent = tokio::time::timeout(wait, whatsapp.next()).await.unwrap().unwrap();
    assert_eq!(stored.envelope.payload, "store");
    assert_eq!(sent.envelope.payload, "send");
}

#[tokio::test]
async fn a_consumer_takes_its_subjects_in_publish_order_and_a_nak_keeps_its_place() {
    let bus = MemoryBus::new();
    let order = [
        (Family::Chat.command(0, op::SEND_MESSAGE), "1"),
        (Family::Chat.command(0, op::SET_STATUS), "2"),
        (Family::Chat.command(0, op::SEND_MESSAGE), "3"),
    ];
    for (subject, body) in order {
        bus.publish_durable(Envelope::new(subject, body), body).await.unwrap();
    }
    bus.publish_durable(Envelope::new(subjects::WA_OUT, "not mine"), "4").await.unwrap();
    let mut chat = bus.consume(DurableStream::Commands, "persist", &Family::Chat.partition(0)).await.unwrap();
    common::next(&mut chat).await.ack().await.unwrap();
    common::next(&mut chat).await.nak().await.unwrap();
    let rest = [common::next(&mut chat).await, common::next(&mut chat).await];
    assert_eq!(
        rest.map(|d| d.envelope.payload),
        ["2", "3"],
        "the nak'd command comes back before newer ones"
    );
    common::assert_quiet(&mut chat, "another consumer's subject is not taken").await;
}

#[tokio::test]
async fn every_kind_of_pattern_receives_and_unsubscribes() {
    let bus = MemoryBus::new();
    let patterns = ["a.b.c", "a.b.>", "a.*.c", "*.b.c", "a.>", ">", "a.b.c.>", "a.*"];
    let mut subs = Vec::new();
    for pattern in patterns {
        subs.push((pattern, bus.subscribe(pattern).await.unwrap()));
    }
    bus.publish(Envelope::new("a.b.c", "x")).await.unwrap();
    for (pattern, sub) in subs.iter_mut() {
        match *pattern {
            "a.b.c.>" | "a.*" => common::assert_quiet(sub, pattern).await,
            _ => assert_eq!(common::next(sub).await.payload, "x", "{pattern}"),
        }
    }
    drop(subs);
    let mut last = bus.subscribe("a.b.>").await.unwrap();
    bus.publish(Envelope::new("a.b.c", "y")).await.unwrap();
    assert_eq!(common::next(&mut last).await.payload, "y");
    assert_eq!(bus.dropped(), 0, "nothing went to a dropped subscription");
}

#[tokio::test]
async fn the_roster_reads_edges_workers_and_owners_from_the_leases() {
    use switchboard_bus::Partitions;
    use switchboard_bus::roster::{Announcer, EdgeSeen, Roster, member_key, owner_key};
    let bus = bus();
    let leases = bus.leases();
    let seen = || EdgeSeen { node: "edge.a".into(), sockets: 7, agents: Vec::new() };
    let announcer = Announcer::edge(leases.clone(), "edge.a", Default::default(), seen);
    let member = br#"{"node":"worker.a","partitions":4}"#;
    leases.put(&member_key("persist", "worker.a"), member.as_slice().into()).await.unwrap();
    leases.acquire(&owner_key("persist", 2), "worker.a".into()).await.unwrap().expect("free");
    let roster = loop {
        // The announcer writes on its own task: read until its first write is in.
        let roster = Roster::read(bus.as_ref(), Partitions::new(4)).await.unwrap();
        if !roster.edges.is_empty() {
            break roster;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(roster.sockets(), 7);
    assert_eq!(roster.edges[0].node, "edge.a", "a node name survives its key's escaping");
    assert_eq!(roster.workers.len(), 1);
    assert_eq!((roster.workers[0].kind, roster.workers[0].owns.as_slice()), ("persist", &[2][..]));
    let persist: Vec<_> = roster.partitions.iter().filter(|p| p.kind == "persist").collect();
    assert_eq!(persist.len(), 4);
    assert_eq!(persist.iter().filter(|p| p.owner.is_some()).count(), 1);
    assert!(persist.iter().all(|p| p.backlog == Some(0)));
    announcer.withdraw().await;
    assert!(Roster::read(bus.as_ref(), Partitions::new(4)).await.unwrap().edges.is_empty(), "withdrawn");
}

#[tokio::test]
async fn an_agent_on_two_edges_is_as_available_as_it_said_last() {
    use switchboard_bus::roster::{AgentPresence, EdgeSeen, agents_connected, edge_key};
    use switchboard_proto::model::Availability;
    let bus = bus();
    let leases = bus.leases();
    let ana = |availability, since_ms| AgentPresence {
        id: "ana".into(),
        name: "Ana".into(),
        availability,
        since_ms,
    };
    for (node, agent) in [("a", ana(Availability::Online, 0)), ("b", ana(Availability::Away, 5))] {
        let seen = EdgeSeen { node: node.into(), sockets: 1, agents: vec![agent] };
        leases.put(&edge_key(node), serde_json::to_vec(&seen).unwrap().into()).await.unwrap();
    }
    let agents = agents_connected(leases.as_ref()).await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents["ana"].availability, Availability::Away, "the newest word wins");
    leases.release(&edge_key("b"), None).await.unwrap();
    let agents = agents_connected(leases.as_ref()).await.unwrap();
    assert_eq!(agents["ana"].availability, Availability::Online);
    leases.release(&edge_key("a"), None).await.unwrap();
    assert!(agents_connected(leases.as_ref()).await.unwrap().is_empty(), "on no edge: offline");
}
