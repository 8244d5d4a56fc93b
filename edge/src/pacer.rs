//! Inbox updates caused by new messages ("activity"), paced per agent socket.
//!
//! The workers already send at most one a second per conversation. With a
//! thousand busy conversations that is still a thousand a second, to every
//! agent socket whose view holds them: three thousand agents would need three
//! million writes a second, and the messages they share a queue with would
//! wait behind them. So the edge keeps only each conversation's newest state,
//! in the order they changed, per view (`all`, `unassigned`, each agent's
//! `mine`), and each socket is sent from its view's log at most
//! [`PER_TICK`] every [`TICK`], together, from where it left off: a socket that cannot
//! take them all gets every conversation in turn, each at its newest, and
//! never more than one a second per conversation. Encoded once per edge and
//! transport (`P`), shared by every socket it goes to. Changes of status or
//! assignee do not come through here: they go at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use switchboard_proto::model::Conversation;

use crate::session::InboxView;

/// How often sockets are sent what they have not had yet. Each socket's
/// share of a round goes out together, in one write: the writes, not the
/// updates, are what a round costs (a system call and a trip through the
/// network stack each).
pub const TICK: Duration = Duration::from_millis(500);
/// Activity updates one socket is sent per tick at most (ten a second: an
/// inbox list shows tens of rows, and every conversation still comes round).
pub const PER_TICK: usize = 5;
/// Sockets served before the pacing task yields: a round over thousands of
/// agents must not hold a thread that message deliveries are waiting for.
pub const CHUNK: usize = 64;
/// A round is spread over this many steps, each serving the sockets of one
/// slot, so the writes do not all land in one burst.
const SLOTS: u64 = 5;

/// The rounds' steps: every `TICK / SLOTS`, the slot whose sockets are served now.
pub fn steps() -> impl futures_util::Stream<Item = u64> {
    let mut step = tokio::time::interval(TICK / SLOTS as u32);
    step.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures_util::stream::unfold((step, 0u64), |(mut step, n)| async move {
        step.tick().await;
        Some((n % SLOTS, (step, n + 1)))
    })
}

/// A connection's slot, from its id: the same in every round.
pub fn slot(id: &str) -> u64 {
    id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % SLOTS
}
/// Conversations each log remembers; the oldest beyond are forgotten (a
/// socket that far behind skips them: its list's next reload has them).
const REMEMBERED: usize = 20_000;

/// One conversation's newest state, and its encoding for one transport.
pub struct Item<P> {
    pub version: u64,
    pushed: Instant,
    pub conversation: Conversation,
    pub payload: OnceLock<P>,
}

/// One view's items, by version.
type Log<P> = BTreeMap<u64, Arc<Item<P>>>;

fn after<P>(log: &Log<P>, cursor: u64) -> Vec<Arc<Item<P>>> {
    log.range(cursor + 1..).take(PER_TICK).map(|(_, item)| item.clone()).collect()
}

/// Which logs a conversation's newest item is in.
struct Placed {
    version: u64,
    unassigned: bool,
    mine: Option<String>,
}

pub struct Pacer<P> {
    state: Mutex<State<P>>,
}

struct State<P> {
    version: u64,
    all: Log<P>,
    unassigned: Log<P>,
    mine: HashMap<String, Log<P>>,
    placed: HashMap<String, Placed>,
}

impl<P> Default for Pacer<P> {
    fn default() -> Self {
        let state = State {
            version: 0,
            all: Log::new(),
            unassigned: Log::new(),
            mine: HashMap::new(),
            placed: HashMap::new(),
        };
        Self { state: Mutex::new(state) }
    }
}

impl<P> Pacer<P> {
    /// Where a socket connected at `since` starts: after what was logged
    /// before it came (versions grow with time, in every log).
    pub fn start(&self, since: Instant) -> u64 {
        let state = self.state.lock().expect("pacer lock");
        state.all.values().rev().find(|item| item.pushed < since).map_or(0, |item| item.version)
    }

    /// The conversation's newest state, replacing what was logged of it.
    pub fn push(&self, conversation: Conversation) {
        let mut state = self.state.lock().expect("pacer lock");
        state.forget(&conversation.id);
        state.version += 1;
        let version = state.version;
        let unassigned = InboxView::Unassigned.shows_conversation(&conversation, "");
        let mine = conversation
            .assignee
            .as_ref()
            .filter(|a| InboxView::Mine.shows_conversation(&conversation, &a.id))
            .map(|a| a.id.clone());
        let id = conversation.id.clone();
        let item = Arc::new(Item { version, pushed: Instant::now(), conversation, payload: OnceLock::new() });
        state.all.insert(version, item.clone());
        if unassigned {
            state.unassigned.insert(version, item.clone());
        }
        if let Some(agent) = &mine {
            state.mine.entry(agent.clone()).or_default().insert(version, item);
        }
        state.placed.insert(id, Placed { version, unassigned, mine });
        // Every other log holds a subset of `all`: bounding it bounds them.
        while state.all.len() > REMEMBERED {
            let Some((_, oldest)) = state.all.first_key_value() else { break };
            let id = oldest.conversation.id.clone();
            state.forget(&id);
        }
    }

    /// What a socket of `me` in `view` is sent next after `cursor`, at most
    /// [`PER_TICK`], and the cursor to keep.
    pub fn next(&self, view: InboxView, me: &str, cursor: u64) -> (Vec<Arc<Item<P>>>, u64) {
        let state = self.state.lock().expect("pacer lock");
        let items = match view {
            InboxView::All => after(&state.all, cursor),
            InboxView::Unassigned => after(&state.unassigned, cursor),
            InboxView::Mine => state.mine.get(me).map(|log| after(log, cursor)).unwrap_or_default(),
            InboxView::None => Vec::new(),
        };
        // A socket with nothing left waits at the head, not at its last item.
        let cursor =
            if items.len() < PER_TICK { state.version } else { items.last().map_or(cursor, |i| i.version) };
        (items, cursor)
    }
}

impl<P> State<P> {
    /// Takes a conversation's item out of every log it is in.
    fn forget(&mut self, id: &str) {
        let Some(old) = self.placed.remove(id) else { return };
        self.all.remove(&old.version);
        if old.unassigned {
            self.unassigned.remove(&old.version);
        }
        if let Some(agent) = old.mine
            && let Some(log) = self.mine.get_mut(&agent)
        {
            log.remove(&old.version);
            if log.is_empty() {
                self.mine.remove(&agent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::model::{Assignee, Channel, ConversationStatus, Customer, Timestamp};

    fn conversation(id: &str, assignee: Option<&str>) -> Conversation {
        Conversation {
            id: id.into(),
            channel: Channel::Web,
            status: ConversationStatus::Open,
            customer: Customer { id: "c".into(), name: "C".into(), phone: None, email: None },
            assignee: assignee.map(|a| Assignee { id: a.into(), name: a.into() }),
            last_message: None,
            unread: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn ids(items: &[Arc<Item<()>>]) -> Vec<&str> {
        items.iter().map(|i| i.conversation.id.as_str()).collect()
    }

    #[test]
    fn a_socket_gets_each_conversation_at_its_newest_in_turn_a_few_at_a_time() {
        let pacer = Pacer::<()>::default();
        pacer.push(conversation("before", None));
        let mut cursor = pacer.start(Instant::now());
        let pushed = ["a", "b", "c", "d", "e", "f", "a"];
        for id in pushed {
            pacer.push(conversation(id, None));
        }
        let mut got = Vec::new();
        loop {
            let (items, next) = pacer.next(InboxView::All, "me", cursor);
            assert!(items.len() <= PER_TICK, "a few at a time");
            if items.is_empty() {
                break;
            }
            got.extend(ids(&items).into_iter().map(str::to_owned));
            cursor = next;
        }
        // a's first state was replaced by its newest, which comes last; nothing twice.
        assert_eq!(got, ["b", "c", "d", "e", "f", "a"]);
    }

    #[test]
    fn each_view_reads_its_own_log() {
        let pacer = Pacer::<()>::default();
        pacer.push(conversation("x", Some("ana")));
        pacer.push(conversation("y", None));
        assert_eq!(ids(&pacer.next(InboxView::Mine, "ana", 0).0), ["x"]);
        assert!(pacer.next(InboxView::Mine, "bo", 0).0.is_empty());
        assert_eq!(ids(&pacer.next(InboxView::Unassigned, "bo", 0).0), ["y"]);
        assert!(pacer.next(InboxView::None, "ana", 0).0.is_empty());
        // x is claimed away from ana: her log no longer has it.
        pacer.push(conversation("x", Some("bo")));
        assert!(pacer.next(InboxView::Mine, "ana", 0).0.is_empty());
        assert_eq!(ids(&pacer.next(InboxView::Mine, "bo", 0).0), ["x"]);
    }
}
