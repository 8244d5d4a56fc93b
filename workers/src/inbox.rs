//! Agents' inbox updates from new messages, at most one per conversation per
//! [`WINDOW`], the newest state winning: the first of a quiet conversation
//! goes out at once, what comes within the window after it goes at the
//! window's end. Support chat spreads its messages over many conversations,
//! so without this nearly every message would cost an inbox update on the
//! bus and on every edge; an inbox list needs a conversation's latest state,
//! not each step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use switchboard_bus::Bus;
use switchboard_bus::events::{ConversationChange, Event};
use switchboard_proto::model::Conversation;
use tokio::time::Instant;

/// The shortest time between two updates of one conversation.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How often held updates are looked at: a held one waits at most this much past its window.
const TICK: Duration = Duration::from_millis(100);

pub struct InboxUpdates {
    bus: Arc<dyn Bus>,
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    ends: Instant,
    /// The newest state that came within the window, to go at its end.
    held: Option<Conversation>,
}

impl InboxUpdates {
    /// Starts the task that sends held updates; it ends with the last
    /// reference to what this returns.
    pub fn start(bus: Arc<dyn Bus>) -> Arc<Self> {
        let updates = Arc::new(Self { bus, windows: Mutex::default() });
        tokio::spawn(send_held(Arc::downgrade(&updates)));
        updates
    }

    /// Publishes these conversations' updates now, or holds them for the end
    /// of their windows. Advisory: a lost one is corrected by the next.
    pub async fn offer(&self, conversations: impl IntoIterator<Item = Conversation>) {
        let now = Instant::now();
        let due: Vec<Conversation> = {
            let mut windows = self.windows.lock().expect("inbox lock");
            conversations
                .into_iter()
                .filter_map(|conversation| match windows.get_mut(&conversation.id) {
                    Some(window) if window.ends > now || window.held.is_some() => {
                        window.held = Some(conversation);
                        None
                    }
                    _ => {
                        windows.insert(conversation.id.clone(), Window { ends: now + WINDOW, held: None });
                        Some(conversation)
                    }
                })
                .collect()
        };
        self.publish(due).await;
    }

    async fn publish(&self, conversations: Vec<Conversation>) {
        let sent = join_all(conversations.into_iter().map(|c| async move {
            Event::ConversationUpdated(ConversationChange::activity(c)).publish(self.bus.as_ref()).await
        }))
        .await;
        let mut failed = sent.into_iter().filter_map(Result::err);
        // Once per round, whatever the number of conversations.
        if let Some(e) = failed.next() {
            tracing::warn!(error = %e, updates = 1 + failed.count(), "inbox updates not published");
        }
    }

    /// The held updates whose windows have ended, each opening a new window;
    /// windows that ended with nothing held are forgotten.
    fn take_due(&self, now: Instant) -> Vec<Conversation> {
        let mut windows = self.windows.lock().expect("inbox lock");
        let mut due = Vec::new();
        windows.retain(|_, window| {
            if window.ends > now {
                return true;
            }
            match window.held.take() {
                Some(conversation) => {
                    due.push(conversation);
                    window.ends = now + WINDOW;
                    true
                }
                None => false,
            }
        });
        due
    }
}

async fn send_held(updates: Weak<InboxUpdates>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(updates) = updates.upgrade() else { return };
        let due = updates.take_due(Instant::now());
        if !due.is_empty() {
            updates.publish(due).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};
    use switchboard_bus::memory::MemoryBus;
    use switchboard_bus::subjects;
    use switchboard_proto::model::{Channel, ConversationStatus, Customer, Timestamp};

    fn conversation(id: &str, at: i64) -> Conversation {
        Conversation {
            id: id.into(),
            channel: Channel::Web,
            status: ConversationStatus::Open,
            customer: Customer { id: "c".into(), name: "C".into(), phone: None, email: None },
            assignee: None,
            last_message: None,
            unread: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(at),
        }
    }

    async fn next_update(events: &mut switchboard_bus::Subscription) -> (String, i64) {
        let envelope =
            tokio::time::timeout(WINDOW * 3, events.next()).await.expect("an update").expect("open");
        match Event::decode(&envelope).expect("an event") {
            Event::ConversationUpdated(c) => (c.conversation.id, c.conversation.updated_at.0),
            other => panic!("not an inbox update: {other:?}"),
        }
    }

    /// Already published, or not (the in-process bus delivers during the publish).
    fn published_now(events: &mut switchboard_bus::Subscription) -> Option<(String, i64)> {
        let envelope = events.next().now_or_never()??;
        match Event::decode(&envelope).expect("an event") {
            Event::ConversationUpdated(c) => Some((c.conversation.id, c.conversation.updated_at.0)),
            other => panic!("not an inbox update: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_first_goes_at_once_the_rest_of_a_window_as_one_newest_at_its_end() {
        let bus = MemoryBus::new();
        let mut events = bus.subscribe(subjects::INBOX_ALL).await.unwrap();
        let updates = InboxUpdates::start(Arc::new(bus.clone()));
        updates.offer([conversation("a", 1), conversation("b", 1)]).await;
        let mut first = vec![published_now(&mut events), published_now(&mut events)];
        first.sort();
        assert_eq!(first, [Some(("a".into(), 1)), Some(("b".into(), 1))]);
        for at in 2..=5 {
            updates.offer([conversation("a", at)]).await;
        }
        assert_eq!(published_now(&mut events), None, "held within the window");
        assert_eq!(next_update(&mut events).await, ("a".into(), 5), "only the newest, at the window's end");
        assert_eq!(published_now(&mut events), None, "once");
        // b's window ended with nothing held: b's next goes at once.
        updates.offer([conversation("b", 9)]).await;
        assert_eq!(published_now(&mut events), Some(("b".into(), 9)));
    }
}
