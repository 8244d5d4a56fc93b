//! Message headers: they name what flows, so `nats sub 'sb.>' --headers-only`
//! tells an operator the event type, conversation and message without bodies.

/// The event type: `message.new`, `message.status`, `typing`, ...
pub const EVENT: &str = "Sb-Event";
pub const CONVERSATION: &str = "Sb-Conversation";
pub const MESSAGE: &str = "Sb-Message";
/// The sync tenant a change or notification belongs to.
pub const TENANT: &str = "Sb-Tenant";
/// Where a command's result is to be published.
pub const REPLY_TO: &str = "Sb-Reply-To";
/// JetStream's deduplication key.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// A small ordered header map; names are compared case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}
