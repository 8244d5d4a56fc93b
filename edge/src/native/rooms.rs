//! Native connections and the conversations they are in: the native side of
//! fan-out. Each connection has a bounded outbox; one that is full belongs to
//! a client that stopped reading, and is closed rather than sent a gap.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::Message as WsMessage;
use futures_util::StreamExt;

use serde_json::Value;
use switchboard_proto::model::{Message, Role, StatusUpdate};
use switchboard_proto::pb;
use tokio::sync::{Notify, mpsc};

use crate::feed::{Fanout, InboxEvent, OnFull};
use crate::pacer::{CHUNK, Pacer, slot, steps};
use crate::session::Session;
use crate::telemetry;
use crate::wire::{self, event};

/// What goes out on a native connection, before encoding. Small (two words),
/// since every connection's outbox holds a block of them.
#[derive(Debug)]
pub enum Frame {
    Event(Arc<Event>),
    Ack(Box<Ack>),
}

/// An event, shared by every connection it goes to and encoded at most once
/// per codec, however many connections it reaches.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub data: Value,
    /// The encoded frame, one slot per codec (`Codec as usize`).
    pub(super) encoded: [OnceLock<WsMessage>; 2],
}

impl Event {
    pub fn new(name: &str, data: Value) -> Arc<Self> {
        Arc::new(Self { name: name.to_owned(), data, encoded: Default::default() })
    }
}

#[derive(Debug)]
pub struct Ack {
    pub reference: Value,
    pub body: Value,
}

/// The sending side of one connection.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    /// Tells the connection to close: it stopped reading, or the node drains.
    pub close: Arc<Notify>,
    /// Set once a frame was lost to a full queue: nothing is queued after it,
    /// so what the client gets before the close has no gap.
    evicted: Arc<AtomicBool>,
}

impl Outbox {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, close: Arc::new(Notify::new()), evicted: Arc::default() }, rx)
    }

    pub fn send(&self, frame: Frame) {
        self.send_or(frame, OnFull::Disconnect);
    }

    fn send_or(&self, frame: Frame, on_full: OnFull) {
        if self.evicted.load(Ordering::Acquire) {
            return;
        }
        match self.tx.try_send(frame) {
            Ok(()) => metrics::counter!(telemetry::DELIVERIES, "transport" => "native").increment(1),
            Err(mpsc::error::TrySendError::Full(_)) if on_full == OnFull::Skip => {
                metrics::counter!(telemetry::EPHEMERAL_SKIPPED).increment(1);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Once per connection, however many frames it would have missed.
                if !self.evicted.swap(true, Ordering::AcqRel) {
                    metrics::counter!(telemetry::SLOW_CONSUMERS, "transport" => "native").increment(1);
                    self.close.notify_one();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Whether a frame was lost to a full queue (the client stopped reading).
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    pub fn event(&self, name: &str, data: Value) {
        self.send(Frame::Event(Event::new(name, data)));
    }

    pub fn share(&self, event: &Arc<Event>, on_full: OnFull) {
        self.send_or(Frame::Event(event.clone()), on_full);
    }
}

/// A connection in a conversation.
#[derive(Clone)]
struct Member {
    outbox: Outbox,
    /// Staff receive private notes.
    staff: bool,
}

#[derive(Default)]
pub struct NativeRooms {
    connections: Mutex<HashMap<String, Outbox>>,
    conversations: Mutex<HashMap<String, HashMap<String, Member>>>,
    /// Agents' connections, with their sessions (their inbox views).
    agents: Mutex<HashMap<String, (Outbox, Arc<Session>)>>,
    activity: Pacer<Arc<Event>>,
}

impl NativeRooms {
    /// Starts the task that paces agents' activity updates; it ends with the
    /// last reference to what this returns.
    pub fn start() -> Arc<Self> {
        let rooms = Arc::new(Self::default());
        let weak = Arc::downgrade(&rooms);
        tokio::spawn(async move {
            let mut steps = std::pin::pin!(steps());
            while let Some(now) = steps.next().await {
                let Some(rooms) = weak.upgrade() else { return };
                let agents: Vec<(Outbox, Arc<Session>)> = {
                    let agents = rooms.agents.lock().expect("rooms lock");
                    agents.iter().filter(|(id, _)| slot(id) == now).map(|(_, agent)| agent.clone()).collect()
                };
                for agents in agents.chunks(CHUNK) {
                    agents.iter().for_each(|(outbox, session)| rooms.send_activity(outbox, session));
                    tokio::task::yield_now().await;
                }
            }
        });
        rooms
    }

    /// Sends an agent connection its next activity updates.
    fn send_activity(&self, outbox: &Outbox, session: &Session) {
        let cursor = session.inbox_cursor(|since| self.activity.start(since));
        let (items, cursor) = self.activity.next(session.inbox_view(), &session.identity.user_id, cursor);
        session.set_inbox_cursor(cursor);
        for item in items {
            let event = item.payload.get_or_init(|| {
                Event::new(event::CONVERSATION_UPDATED, wire::conversation(&item.conversation))
            });
            // Advisory, and the next one corrects it: never worth a disconnect.
            outbox.share(event, OnFull::Skip);
        }
    }

    pub fn connect(&self, id: &str, outbox: &Outbox, session: &Arc<Session>) {
        self.connections.lock().expect("rooms lock").insert(id.to_owned(), outbox.clone());
        if session.identity.role == Role::Agent {
            self.agents.lock().expect("rooms lock").insert(id.to_owned(), (outbox.clone(), session.clone()));
        }
    }

    pub fn disconnect(&self, id: &str) {
        self.connections.lock().expect("rooms lock").remove(id);
        self.agents.lock().expect("rooms lock").remove(id);
    }

    pub fn enter(&self, conversation_id: &str, id: &str, outbox: &Outbox, staff: bool) {
        let mut conversations = self.conversations.lock().expect("rooms lock");
        let member = Member { outbox: outbox.clone(), staff };
        conversations.entry(conversation_id.to_owned()).or_default().insert(id.to_owned(), member);
    }

    pub fn exit(&self, conversation_id: &str, id: &str) {
        let mut conversations = self.conversations.lock().expect("rooms lock");
        if let Some(members) = conversations.get_mut(conversation_id) {
            members.remove(id);
            if members.is_empty() {
                conversations.remove(conversation_id);
            }
        }
    }

    /// Asks every connection to close (draining).
    pub fn close_all(&self) {
        for outbox in self.connections.lock().expect("rooms lock").values() {
            outbox.close.notify_one();
        }
    }

    fn members(&self, conversation_id: &str) -> Vec<(String, Member)> {
        let conversations = self.conversations.lock().expect("rooms lock");
        conversations
            .get(conversation_id)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Sends `event()` to the conversation's members (its staff only, for
    /// `staff_only`), encoding it only when one is sent to (most events reach
    /// sockets of one transport only).
    fn each(&self, conversation_id: &str, staff_only: bool, event: impl FnOnce() -> Arc<Event>) {
        let mut members = self.members(conversation_id);
        members.retain(|(_, m)| m.staff || !staff_only);
        if members.is_empty() {
            return;
        }
        let event = event();
        for (_, member) in members {
            member.outbox.share(&event, OnFull::Disconnect);
        }
    }

    /// Typing and presence, to everyone in the conversation but their origin.
    fn each_except(&self, conversation_id: &str, origin: &str, name: &str, data: Value) {
        let event = Event::new(name, data);
        for (id, member) in self.members(conversation_id) {
            if id != origin {
                member.outbox.share(&event, OnFull::Skip);
            }
        }
    }
}

impl Fanout for NativeRooms {
    fn message(&self, message: &Message) {
        self.each(&message.conversation_id, message.private, || {
            Event::new(event::MESSAGE_NEW, wire::message(message))
        });
    }

    fn status(&self, status: &StatusUpdate) {
        self.each(&status.conversation_id, status.private, || {
            Event::new(event::MESSAGE_STATUS, wire::status(status))
        });
    }

    fn typing(&self, typing: &pb::Typing) {
        self.each_except(&typing.conversation_id, &typing.origin, event::USER_TYPING, wire::typing(typing));
    }

    fn presence(&self, presence: &pb::Presence) {
        let data = wire::presence(presence);
        self.each_except(&presence.conversation_id, &presence.origin, event::PRESENCE, data);
    }

    fn inbox(&self, inbox: &InboxEvent<'_>) {
        if let InboxEvent::Updated(change) = inbox
            && !change.is_handling()
        {
            return self.activity.push(change.conversation.clone());
        }
        let conversation = inbox.conversation();
        let staff = OnceLock::new();
        let staff = || staff.get_or_init(|| Event::new(inbox.name(), wire::conversation(conversation)));
        let mut reached = HashSet::new();
        for (id, (outbox, session)) in self.agents.lock().expect("rooms lock").iter() {
            if inbox.reaches(session.inbox_view(), &session.identity.user_id) {
                outbox.share(staff(), OnFull::Disconnect);
                reached.insert(id.clone());
            }
        }
        if !inbox.to_members() {
            return;
        }
        let customer = OnceLock::new();
        let customer = || {
            customer.get_or_init(|| {
                Event::new(inbox.name(), wire::conversation(&conversation.clone().for_customer()))
            })
        };
        for (id, member) in self.members(&conversation.id) {
            if reached.insert(id) {
                member.outbox.share(if member.staff { staff() } else { customer() }, OnFull::Disconnect);
            }
        }
    }
}
