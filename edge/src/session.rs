//! Per-connection state, whatever the transport.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use switchboard_proto::model::{Assignee, Conversation, ConversationStatus};

use tokio::task::AbortHandle;

use crate::auth::Identity;
use crate::config::Limits;
use crate::error::{ApiError, ErrorCode};
use crate::limits::RateLimit;
use crate::relay::RelayHold;

/// How a socket is in a conversation: by `join_conversation`, by the
/// room-string style (`join "chat:<id>"`), or both.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub chat: bool,
    pub legacy: bool,
}

impl Membership {
    fn any(self) -> bool {
        self.chat || self.legacy
    }
}

/// How many bot-reply ids a socket remembers, so a reply that reaches it both
/// from the queue and live is shown once.
const SEEN_BOT_REPLIES: usize = 64;

/// Which `conversation:new` / `conversation:updated` an agent's socket gets
/// (`subscribe_inbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxView {
    All,
    /// Assigned to this agent and not closed.
    Mine,
    /// Assigned to nobody and not closed.
    Unassigned,
    None,
}

impl InboxView {
    const NAMES: [(InboxView, &'static str); 4] = [
        (InboxView::All, "all"),
        (InboxView::Mine, "mine"),
        (InboxView::Unassigned, "unassigned"),
        (InboxView::None, "none"),
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(_, n)| *n == name).map(|(view, _)| *view)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(view, _)| *view == self).map_or("all", |(_, n)| n)
    }

    /// Whether a conversation in this state belongs in `me`'s view.
    pub fn shows(self, status: ConversationStatus, assignee: Option<&Assignee>, me: &str) -> bool {
        let open = status != ConversationStatus::Closed;
        match self {
            InboxView::All => true,
            InboxView::Mine => open && assignee.is_some_and(|a| a.id == me),
            InboxView::Unassigned => open && assignee.is_none(),
            InboxView::None => false,
        }
    }

    pub fn shows_conversation(self, conversation: &Conversation, me: &str) -> bool {
        self.shows(conversation.status, conversation.assignee.as_ref(), me)
    }
}

pub struct Session {
    pub identity: Identity,
    /// The WhatsApp number whose bot replies this socket receives.
    pub phone: Option<String>,
    /// This connection's reference on its phone's bot-reply relay.
    pub relay: RelayHold,
    joined: Mutex<Joined>,
    /// Taken by whatever announces presence, so a join's `online` and a
    /// disconnect's `offline` go out in the order their effects happened.
    presence: tokio::sync::Mutex<()>,
    typing: Mutex<HashMap<String, AbortHandle>>,
    publish: Mutex<RateLimit>,
    typing_rate: Mutex<RateLimit>,
    seen_bot_replies: Mutex<VecDeque<String>>,
    max_joins: usize,
    /// An [`InboxView`], by its place in `InboxView::NAMES`.
    inbox_view: AtomicU8,
    /// The last activity update this socket was sent (see [`crate::pacer`]).
    inbox_cursor: AtomicU64,
    connected_at: std::time::Instant,
}

/// The conversations a connection is in; closed once it has gone, so a join
/// still in flight then cannot leave anything behind.
#[derive(Default)]
struct Joined {
    memberships: HashMap<String, Membership>,
    closed: bool,
}

impl Session {
    pub fn new(identity: Identity, phone: Option<String>, limits: &Limits) -> Self {
        Self {
            identity,
            phone,
            relay: RelayHold::default(),
            joined: Mutex::default(),
            presence: tokio::sync::Mutex::default(),
            typing: Mutex::default(),
            publish: Mutex::new(RateLimit::per_second(limits.publish_rate)),
            typing_rate: Mutex::new(RateLimit::per_second(limits.typing_rate)),
            seen_bot_replies: Mutex::default(),
            max_joins: limits.max_joins,
            inbox_view: AtomicU8::new(0),
            inbox_cursor: AtomicU64::new(u64::MAX),
            connected_at: std::time::Instant::now(),
        }
    }

    /// Where this socket is in the activity log; the first time, `start`
    /// says where, from when the socket connected.
    pub fn inbox_cursor(&self, start: impl FnOnce(std::time::Instant) -> u64) -> u64 {
        match self.inbox_cursor.load(Ordering::Relaxed) {
            u64::MAX => start(self.connected_at),
            cursor => cursor,
        }
    }

    pub fn set_inbox_cursor(&self, cursor: u64) {
        self.inbox_cursor.store(cursor, Ordering::Relaxed);
    }

    pub fn inbox_view(&self) -> InboxView {
        let at = usize::from(self.inbox_view.load(Ordering::Relaxed));
        InboxView::NAMES.get(at).map_or(InboxView::All, |(view, _)| *view)
    }

    pub fn set_inbox_view(&self, view: InboxView) {
        let at = InboxView::NAMES.iter().position(|(v, _)| *v == view).unwrap_or(0);
        self.inbox_view.store(at as u8, Ordering::Relaxed);
    }

    /// Staff see private notes; customers never do.
    pub fn is_staff(&self) -> bool {
        self.identity.role.is_staff()
    }

    fn joined(&self) -> std::sync::MutexGuard<'_, Joined> {
        self.joined.lock().expect("session lock")
    }

    /// Records a join and runs `follow(new_member)` under the same lock; answers
    /// `new_member`: the socket was not in the conversation yet by any means.
    /// A connection that has gone is refused, so whatever `follow` acquires is
    /// always given back by [`Session::exit_all`]'s caller.
    pub fn enter(
        &self,
        conversation_id: &str,
        legacy: bool,
        follow: impl FnOnce(bool),
    ) -> Result<bool, ApiError> {
        let mut joined = self.joined();
        if joined.closed {
            return Err(ApiError::unavailable("the connection has closed"));
        }
        let known = joined.memberships.get(conversation_id).copied().unwrap_or_default();
        if !known.any() && joined.memberships.len() >= self.max_joins {
            return Err(ApiError::new(
                ErrorCode::TooManyJoins,
                format!("a socket may be in at most {} conversations", self.max_joins),
            ));
        }
        let mut now = known;
        if legacy {
            now.legacy = true
        } else {
            now.chat = true
        }
        joined.memberships.insert(conversation_id.to_owned(), now);
        follow(!known.any());
        Ok(!known.any())
    }

    /// Records a leave; `Some(true)` when the socket is now out of the
    /// conversation entirely, `None` when it was not in it that way.
    pub fn exit(&self, conversation_id: &str, legacy: bool) -> Option<bool> {
        let mut joined = self.joined();
        let membership = joined.memberships.get_mut(conversation_id)?;
        let was = if legacy {
            std::mem::take(&mut membership.legacy)
        } else {
            std::mem::take(&mut membership.chat)
        };
        if !was {
            return None;
        }
        let gone = !membership.any();
        if gone {
            joined.memberships.remove(conversation_id);
        }
        Some(gone)
    }

    /// Runs `enter_room` only while the socket is still in the conversation that
    /// way, under the lock that [`Session::exit_all`] takes: a socket that left
    /// or went meanwhile is not put back into a room nobody would empty.
    pub fn while_member(&self, conversation_id: &str, legacy: bool, enter_room: impl FnOnce()) -> bool {
        let joined = self.joined();
        let member =
            joined.memberships.get(conversation_id).is_some_and(|m| if legacy { m.legacy } else { m.chat });
        if member {
            enter_room();
        }
        member
    }

    /// Whether the socket is in the conversation by any means.
    pub fn is_member(&self, conversation_id: &str) -> bool {
        self.joined().memberships.contains_key(conversation_id)
    }

    pub fn is_chat_member(&self, conversation_id: &str) -> bool {
        self.joined().memberships.get(conversation_id).is_some_and(|m| m.chat)
    }

    /// Every conversation the socket is in, emptying the record for good
    /// (disconnect): later joins are refused.
    pub fn exit_all(&self) -> Vec<String> {
        let mut joined = self.joined();
        joined.closed = true;
        joined.memberships.drain().map(|(id, _)| id).collect()
    }

    /// Held while presence is announced, and across a disconnect.
    pub async fn presence_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.presence.lock().await
    }

    pub fn may_publish(&self) -> bool {
        self.publish.lock().expect("session lock").try_take()
    }

    pub fn may_type(&self) -> bool {
        self.typing_rate.lock().expect("session lock").try_take()
    }

    /// Replaces the typing expiry timer of a conversation; returns whether
    /// the user was already typing there.
    pub fn set_typing_timer(&self, conversation_id: &str, timer: Option<AbortHandle>) -> bool {
        let mut typing = self.typing.lock().expect("session lock");
        let previous = match timer {
            Some(timer) => typing.insert(conversation_id.to_owned(), timer),
            None => typing.remove(conversation_id),
        };
        previous.map(|p| p.abort()).is_some()
    }

    /// True the first time this socket is handed this bot reply.
    pub fn first_sight_of_bot_reply(&self, id: &str) -> bool {
        let mut seen = self.seen_bot_replies.lock().expect("session lock");
        if seen.iter().any(|s| s == id) {
            return false;
        }
        if seen.len() == SEEN_BOT_REPLIES {
            seen.pop_front();
        }
        seen.push_back(id.to_owned());
        true
    }
}
