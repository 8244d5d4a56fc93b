//! Ordered delivery per conversation.
//!
//! An edge runs one feed task per conversation that has local sockets. The
//! task owns the bus subscription and `delivered`, the highest offset it has
//! handed to sockets, and does everything for the conversation in one
//! sequence: live events, gap filling from the store, and joins. A join is
//! answered (history up to `delivered`) and the socket added to the room in
//! that same sequence, so a socket sees every offset after its history once,
//! in order, with nothing skipped and nothing twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use switchboard_bus::events::{ConversationChange, Event};
use switchboard_bus::{Bus, Subscription, subjects};
use switchboard_proto::model::{Conversation, Message, StatusUpdate, Timestamp};
use switchboard_proto::pb;
use switchboard_store::ReadStore;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::session::InboxView;
use crate::telemetry;
use crate::wire::event;

/// What a socket whose outbound queue is full loses of an event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnFull {
    /// Messages, receipts, inbox changes: a gap the client could not see, so
    /// the socket is disconnected and recovers by offset.
    Disconnect,
    /// Typing and presence: a moment's signal, skipped for that socket alone
    /// (a hundred sockets joining at once must not disconnect each other).
    Skip,
}

/// Where a feed's events go: the socket layers implement it. Calls must not
/// block: they only queue onto sockets.
pub trait Fanout: Send + Sync + 'static {
    /// A message, in offset order.
    fn message(&self, message: &Message);
    fn status(&self, status: &StatusUpdate);
    fn typing(&self, typing: &pb::Typing);
    fn presence(&self, presence: &pb::Presence);
    /// `conversation:new` / `conversation:updated`: to agents whose view it
    /// is in (or has just left), and, for a change of status or assignee, to
    /// the conversation's own sockets; once to each socket.
    fn inbox(&self, event: &InboxEvent<'_>);
}

/// An inbox event as the fan-outs deliver it.
pub enum InboxEvent<'a> {
    New(&'a Conversation),
    Updated(&'a ConversationChange),
}

impl InboxEvent<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            InboxEvent::New(_) => event::CONVERSATION_NEW,
            InboxEvent::Updated(_) => event::CONVERSATION_UPDATED,
        }
    }

    pub fn conversation(&self) -> &Conversation {
        match self {
            InboxEvent::New(conversation) => conversation,
            InboxEvent::Updated(change) => &change.conversation,
        }
    }

    /// Whether an agent socket whose view is `view` gets it: the conversation
    /// is in the view, or was before this change (sent once more, so a list
    /// can drop it).
    pub fn reaches(&self, view: InboxView, me: &str) -> bool {
        if view.shows_conversation(self.conversation(), me) {
            return true;
        }
        match self {
            InboxEvent::Updated(ConversationChange { previous: Some(was), .. }) => {
                view.shows(was.status, was.assignee.as_ref(), me)
            }
            _ => false,
        }
    }

    /// A change of status or assignee, which every socket in the conversation hears.
    pub fn to_members(&self) -> bool {
        matches!(self, InboxEvent::Updated(change) if change.is_handling())
    }
}

/// Every transport's fan-out at once.
pub struct Fanouts(pub Vec<Arc<dyn Fanout>>);

impl Fanout for Fanouts {
    fn message(&self, message: &Message) {
        self.0.iter().for_each(|f| f.message(message));
        let age_ms = Timestamp::now().0.saturating_sub(message.created_at.0).max(0);
        metrics::histogram!(telemetry::DELIVERY_LATENCY).record(age_ms as f64 / 1000.0);
    }

    fn status(&self, status: &StatusUpdate) {
        self.0.iter().for_each(|f| f.status(status));
    }

    fn typing(&self, typing: &pb::Typing) {
        self.0.iter().for_each(|f| f.typing(typing));
    }

    fn presence(&self, presence: &pb::Presence) {
        self.0.iter().for_each(|f| f.presence(presence));
    }

    fn inbox(&self, event: &InboxEvent<'_>) {
        self.0.iter().for_each(|f| f.inbox(event));
    }
}

/// Relays `conversation:new` / `conversation:updated` to agents and the
/// conversations' sockets.
pub async fn relay_inbox(bus: &dyn Bus, fanout: Arc<dyn Fanout>) -> switchboard_bus::Result<()> {
    let mut events = bus.subscribe(subjects::INBOX_ALL).await?;
    tokio::spawn(async move {
        while let Some(envelope) = events.next().await {
            match Event::decode(&envelope) {
                Ok(Event::ConversationNew(c)) => fanout.inbox(&InboxEvent::New(&c)),
                Ok(Event::ConversationUpdated(c)) => fanout.inbox(&InboxEvent::Updated(&c)),
                _ => {}
            }
        }
    });
    Ok(())
}

/// What a joining socket is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The newest offset; live delivery continues after it.
    pub offset: u64,
    pub messages: Vec<Message>,
    /// The recovery was cut at the limit: join again from the last offset.
    pub has_more: bool,
}

/// Runs on the feed task: answer the client, then join the room.
pub type Respond = Box<dyn FnOnce(Result<Snapshot, ApiError>) + Send>;

pub struct JoinRequest {
    pub since: Option<u64>,
    pub respond: Respond,
}

/// How long a gap may wait for the store before it is asked again.
const GAP_RETRY: Duration = Duration::from_millis(100);

pub struct Feeds {
    bus: Arc<dyn Bus>,
    store: Arc<dyn ReadStore>,
    fanout: Arc<dyn Fanout>,
    page: u32,
    max_recovery: u32,
    feeds: Mutex<HashMap<String, Feed>>,
}

struct Feed {
    tx: mpsc::UnboundedSender<JoinRequest>,
    members: usize,
}

impl Feeds {
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadStore>,
        fanout: Arc<dyn Fanout>,
        page: u32,
        max_recovery: u32,
    ) -> Self {
        Self { bus, store, fanout, page, max_recovery, feeds: Mutex::default() }
    }

    /// Answers `request` in the conversation's sequence. `new_member` counts a
    /// socket that was not in the conversation yet; it must `leave` later.
    pub fn join(&self, conversation_id: &str, request: JoinRequest, new_member: bool) {
        let mut feeds = self.feeds.lock().expect("feeds lock");
        let feed = feeds.entry(conversation_id.to_owned()).or_insert_with(|| {
            metrics::gauge!(telemetry::SUBSCRIPTIONS, "kind" => "conversation").increment(1.0);
            Feed { tx: self.spawn(conversation_id.to_owned()), members: 0 }
        });
        if new_member {
            feed.members += 1;
        }
        if let Err(mpsc::error::SendError(request)) = feed.tx.send(request) {
            (request.respond)(Err(ApiError::unavailable("conversation feed stopped")));
        }
    }

    /// A member socket left; the last one out stops the feed.
    pub fn leave(&self, conversation_id: &str) {
        let mut feeds = self.feeds.lock().expect("feeds lock");
        if let Some(feed) = feeds.get_mut(conversation_id) {
            feed.members = feed.members.saturating_sub(1);
            if feed.members == 0 {
                feeds.remove(conversation_id);
                metrics::gauge!(telemetry::SUBSCRIPTIONS, "kind" => "conversation").decrement(1.0);
            }
        }
    }

    fn spawn(&self, conversation_id: String) -> mpsc::UnboundedSender<JoinRequest> {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = FeedTask {
            store: self.store.clone(),
            fanout: self.fanout.clone(),
            page: self.page,
            max_recovery: self.max_recovery,
            delivered: 0,
            pending: BTreeMap::new(),
            conversation_id,
        };
        tokio::spawn(task.run(self.bus.clone(), rx));
        tx
    }
}

struct FeedTask {
    store: Arc<dyn ReadStore>,
    fanout: Arc<dyn Fanout>,
    page: u32,
    max_recovery: u32,
    conversation_id: String,
    delivered: u64,
    /// Live messages that arrived ahead of a gap.
    pending: BTreeMap<u64, Message>,
}

impl FeedTask {
    async fn run(mut self, bus: Arc<dyn Bus>, mut joins: mpsc::UnboundedReceiver<JoinRequest>) {
        // Subscribe before reading the store, so nothing falls between the two.
        let mut events = match self.start(bus.as_ref()).await {
            Ok(events) => events,
            Err(e) => {
                while let Ok(request) = joins.try_recv() {
                    (request.respond)(Err(e.clone()));
                }
                return;
            }
        };
        let mut gap_timer = tokio::time::interval(GAP_RETRY);
        loop {
            tokio::select! {
                request = joins.recv() => match request {
                    Some(request) => self.answer(request).await,
                    None => return,
                },
                event = events.next() => match event {
                    Some(envelope) => match Event::decode(&envelope) {
                        Ok(event) if event.conversation_id() == Some(self.conversation_id.as_str()) => {
                            self.on_event(event).await
                        }
                        Ok(_) => {
                            // Never expected (subjects are injective), so counted, not logged per event.
                            metrics::counter!(telemetry::FOREIGN_EVENTS).increment(1);
                        }
                        Err(e) => tracing::warn!(error = %e, subject = %envelope.subject, "event dropped"),
                    },
                    None => return,
                },
                _ = gap_timer.tick(), if !self.pending.is_empty() => self.fill_gap().await,
            }
        }
    }

    async fn start(&mut self, bus: &dyn Bus) -> Result<Subscription, ApiError> {
        let events = bus.subscribe(&subjects::conv_all(&self.conversation_id)).await?;
        let latest = self.store.latest_messages(&self.conversation_id, 1).await?;
        self.delivered = latest.last().map_or(0, |m| m.offset);
        Ok(events)
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::MessageNew(message) if message.offset > self.delivered => {
                self.pending.insert(message.offset, message);
                self.drain();
                if !self.pending.is_empty() {
                    self.fill_gap().await;
                }
            }
            Event::MessageNew(_) => {} // already delivered
            Event::MessageStatus(status) => self.fanout.status(&status),
            Event::Typing(typing) => self.fanout.typing(&typing),
            Event::Presence(presence) => self.fanout.presence(&presence),
            Event::ConversationNew(_) | Event::ConversationUpdated(_) | Event::BotReply(_) => {}
        }
    }

    /// Delivers pending messages while they follow `delivered` without a gap.
    fn drain(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let offset = *entry.key();
            if offset <= self.delivered {
                entry.remove();
            } else if offset == self.delivered + 1 {
                let message = entry.remove();
                self.deliver(&message);
            } else {
                break;
            }
        }
    }

    fn deliver(&mut self, message: &Message) {
        self.fanout.message(message);
        self.delivered = message.offset;
    }

    /// The store has every message before the one that arrived early: the bus
    /// only dropped or reordered them. Fetch and deliver them in order.
    async fn fill_gap(&mut self) {
        let Some(&first_pending) = self.pending.keys().next() else {
            return;
        };
        let missing = (first_pending - self.delivered - 1).min(u64::from(self.max_recovery)) as u32;
        match self.store.messages_after(&self.conversation_id, self.delivered, missing).await {
            Ok(found) => {
                metrics::counter!(telemetry::GAPS_FILLED).increment(1);
                for message in found {
                    self.pending.insert(message.offset, message);
                }
                self.drain();
            }
            Err(e) => {
                tracing::warn!(error = %e, conversation = %self.conversation_id, "gap not filled yet")
            }
        }
    }

    /// Catches up with the store first (a worker may have stored messages whose
    /// events have not arrived), then answers from what was delivered.
    async fn answer(&mut self, request: JoinRequest) {
        let snapshot = self.snapshot(request.since).await;
        (request.respond)(snapshot);
    }

    async fn snapshot(&mut self, since: Option<u64>) -> Result<Snapshot, ApiError> {
        loop {
            let newer =
                self.store.messages_after(&self.conversation_id, self.delivered, self.max_recovery).await?;
            let caught_up = newer.len() < self.max_recovery as usize;
            for message in newer {
                self.pending.insert(message.offset, message);
            }
            self.drain();
            if caught_up {
                break;
            }
        }
        let (messages, has_more) = match since {
            Some(since) if since >= self.delivered => (Vec::new(), false),
            Some(since) => {
                let limit = self.max_recovery;
                let messages = self.store.messages_after(&self.conversation_id, since, limit).await?;
                let messages: Vec<_> = messages.into_iter().filter(|m| m.offset <= self.delivered).collect();
                let has_more = messages.last().is_some_and(|m| m.offset < self.delivered);
                (messages, has_more)
            }
            None => {
                let page = self.store.latest_messages(&self.conversation_id, self.page).await?;
                (page.into_iter().filter(|m| m.offset <= self.delivered).collect(), false)
            }
        };
        Ok(Snapshot { offset: self.delivered, messages, has_more })
    }
}
