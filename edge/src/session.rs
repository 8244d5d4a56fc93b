//! Per-connection state, whatever the transport.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::task::AbortHandle;

use crate::auth::Identity;
use crate::config::Limits;
use crate::error::ApiError;
use crate::limits::RateLimit;

/// How a socket is in a conversation: by `join_conversation`, by seed 004's
/// `join "chat:<id>"`, or both.
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

pub struct Session {
    pub identity: Identity,
    /// The WhatsApp number whose bot replies this socket receives.
    pub phone: Option<String>,
    memberships: Mutex<HashMap<String, Membership>>,
    typing: Mutex<HashMap<String, AbortHandle>>,
    publish: Mutex<RateLimit>,
    typing_rate: Mutex<RateLimit>,
    seen_bot_replies: Mutex<VecDeque<String>>,
    max_joins: usize,
}

impl Session {
    pub fn new(identity: Identity, phone: Option<String>, limits: &Limits) -> Self {
        Self {
            identity,
            phone,
            memberships: Mutex::default(),
            typing: Mutex::default(),
            publish: Mutex::new(RateLimit::per_second(limits.publish_rate)),
            typing_rate: Mutex::new(RateLimit::per_second(limits.typing_rate)),
            seen_bot_replies: Mutex::default(),
            max_joins: limits.max_joins,
        }
    }

    /// Records a join; `Ok(true)` when the socket was not in the conversation
    /// yet by any means.
    pub fn enter(&self, conversation_id: &str, legacy: bool) -> Result<bool, ApiError> {
        let mut memberships = self.memberships.lock().expect("session lock");
        let known = memberships.get(conversation_id).copied().unwrap_or_default();
        if !known.any() && memberships.len() >= self.max_joins {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_joins",
                format!("a socket may be in at most {} conversations", self.max_joins),
            ));
        }
        let mut now = known;
        if legacy {
            now.legacy = true
        } else {
            now.chat = true
        }
        memberships.insert(conversation_id.to_owned(), now);
        Ok(!known.any())
    }

    /// Records a leave; `Some(true)` when the socket is now out of the
    /// conversation entirely, `None` when it was not in it that way.
    pub fn exit(&self, conversation_id: &str, legacy: bool) -> Option<bool> {
        let mut memberships = self.memberships.lock().expect("session lock");
        let membership = memberships.get_mut(conversation_id)?;
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
            memberships.remove(conversation_id);
        }
        Some(gone)
    }

    pub fn is_chat_member(&self, conversation_id: &str) -> bool {
        self.memberships.lock().expect("session lock").get(conversation_id).is_some_and(|m| m.chat)
    }

    /// Every conversation the socket is in, emptying the record (disconnect).
    pub fn exit_all(&self) -> Vec<String> {
        self.memberships.lock().expect("session lock").drain().map(|(id, _)| id).collect()
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
