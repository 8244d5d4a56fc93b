//! Subject names, in one place. Ids are sanitised so a conversation id can
//! never inject a wildcard or an extra token into a subject.

/// Commands for the workers (durable).
pub const COMMANDS: &str = "sb.cmd.>";

/// A family of commands, taken by one kind of worker and split into
/// partitions by a key (see [`crate::partition`]), so one worker at a time
/// handles all of a conversation's (or a tenant's) commands, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// The persist worker's: messages, conversations, statuses, bot replies.
    Chat,
    /// The sync worker's: changes for tenants' outboxes, and confirmations.
    Sync,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Chat, Family::Sync];

    pub fn name(self) -> &'static str {
        match self {
            Family::Chat => "chat",
            Family::Sync => "sync",
        }
    }

    /// The kind of worker that takes it, as leases and epochs name it.
    pub fn kind(self) -> &'static str {
        match self {
            Family::Chat => "persist",
            Family::Sync => "sync",
        }
    }

    /// The durable consumer of one partition: `<family>-<partition>`.
    pub fn durable(self, partition: u32) -> String {
        format!("{}-{partition}", self.name())
    }

    /// `sb.cmd.<family>.<partition>.<op>`.
    pub fn command(self, partition: u32, op: &str) -> String {
        format!("sb.cmd.{}.{partition}.{op}", self.name())
    }

    /// Every command of one partition: `sb.cmd.<family>.<partition>.>`.
    pub fn partition(self, partition: u32) -> String {
        format!("sb.cmd.{}.{partition}.>", self.name())
    }
}

/// The operations of a command subject (its last token).
pub mod op {
    pub const SEND_MESSAGE: &str = "send_message";
    pub const CREATE_CONVERSATION: &str = "create_conversation";
    pub const SET_STATUS: &str = "set_status";
    pub const BOT_REPLY: &str = "bot_reply";
    pub const TAKE_BOT_REPLIES: &str = "take_bot_replies";
    pub const ASSIGN: &str = "assign";
    pub const SET_CONVERSATION_STATUS: &str = "set_conversation_status";
    pub const AGENT_SEEN: &str = "agent_seen";
    pub const SYNC_CHANGE: &str = "change";
    pub const SYNC_CONFIRM: &str = "confirm";
}

/// A command subject's operation: its last token.
pub fn operation(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or_default()
}

/// WhatsApp webhook bodies, as received (durable).
pub const WA_IN: &str = "sb.wa.in";
/// Messages to send through the Graph API (durable).
pub const WA_OUT: &str = "sb.wa.out";

/// Conversation created, for every agent inbox.
pub const INBOX_NEW: &str = "sb.inbox.new";
/// Conversation changed (status, assignee, last message).
pub const INBOX_UPDATED: &str = "sb.inbox.updated";
pub const INBOX_ALL: &str = "sb.inbox.*";
/// Every conversation's messages, and statuses.
pub const CONV_MSG_ALL: &str = "sb.conv.*.msg";
pub const CONV_STATUS_ALL: &str = "sb.conv.*.status";

/// A conversation's stored messages.
pub fn conv_msg(conversation_id: &str) -> String {
    format!("sb.conv.{}.msg", token(conversation_id))
}

/// Delivery and read receipts.
pub fn conv_status(conversation_id: &str) -> String {
    format!("sb.conv.{}.status", token(conversation_id))
}

/// Typing indicators (ephemeral).
pub fn conv_typing(conversation_id: &str) -> String {
    format!("sb.conv.{}.typing", token(conversation_id))
}

/// Who came and went (ephemeral).
pub fn conv_presence(conversation_id: &str) -> String {
    format!("sb.conv.{}.presence", token(conversation_id))
}

/// Everything about one conversation.
pub fn conv_all(conversation_id: &str) -> String {
    format!("sb.conv.{}.>", token(conversation_id))
}

/// Bot replies for the user with this WhatsApp number.
pub fn user_phone_bot(phone: &str) -> String {
    format!("sb.phone.{}.bot", token(phone))
}

/// A tenant has unconfirmed sync changes (ephemeral; the outbox is in the store).
pub fn sync_pending(tenant: &str) -> String {
    format!("sb.sync.{}.pending", token(tenant))
}

/// Where command results for one edge node arrive.
pub fn reply_inbox(node: &str) -> String {
    format!("sb.reply.{}.*", token(node))
}

pub fn reply_subject(node: &str, call: u64) -> String {
    format!("sb.reply.{}.{call}", token(node))
}

/// Makes an id safe as one subject token. `.`, `*`, `>`, `%`, white space and
/// control characters become `%` and two hex digits per UTF-8 byte; nothing
/// else is touched. Every escape has that one fixed width and `%` itself is
/// escaped, so the encoding is injective ([`untoken`] reverses it): two
/// distinct ids never share a subject. The empty id, which no other id can
/// produce, is a lone `%`.
pub fn token(id: &str) -> String {
    if id.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c == '.' || c == '*' || c == '>' || c == '%' || c.is_whitespace() || c.is_control() {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xF)]));
            }
        } else {
            out.push(c);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Makes an id safe as one token of a key-value key, whose alphabet is
/// smaller than a subject's: every byte outside `A-Z a-z 0-9 _ -` becomes
/// `=` and two hex digits, so this is injective too (`=` itself is escaped).
pub fn key_token(id: &str) -> String {
    if id.is_empty() {
        return "=".into();
    }
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    out
}

/// The id a [`token`] was made from; `None` for a string no id encodes to.
pub fn untoken(encoded: &str) -> Option<String> {
    if encoded == "%" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = tail.get(..2)?;
            let digit = |b: u8| HEX.iter().position(|&h| h == b);
            bytes.push((digit(hex[0])? << 4 | digit(hex[1])?) as u8);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    let id = String::from_utf8(bytes).ok()?;
    (token(&id) == encoded).then_some(id)
}

/// NATS subject matching: `*` matches one token, a final `>` one or more.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether a pattern has wildcards (and so cannot be looked up exactly).
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.split('.').any(|t| t == "*" || t == ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_nats() {
        assert!(matches("sb.conv.*.msg", "sb.conv.c1.msg"));
        assert!(!matches("sb.conv.*.msg", "sb.conv.c1.typing"));
        assert!(matches("sb.>", "sb.conv.c1.msg"));
        assert!(!matches("sb.>", "sb"));
        assert!(!matches("sb.conv.c1", "sb.conv.c1.msg"));
        assert!(matches("sb.cmd.>", "sb.cmd.send_message"));
        assert!(matches(&Family::Chat.partition(3), &Family::Chat.command(3, op::SEND_MESSAGE)));
        assert!(!matches(&Family::Chat.partition(3), &Family::Chat.command(31, op::SEND_MESSAGE)));
        assert_eq!(operation(&Family::Sync.command(0, op::SYNC_CHANGE)), op::SYNC_CHANGE);
    }

    #[test]
    fn ids_cannot_break_out_of_their_token() {
        assert_eq!(conv_msg("a.b"), "sb.conv.a%2Eb.msg");
        assert_eq!(conv_msg("*"), "sb.conv.%2A.msg");
        assert_ne!(token("a.b"), token("a%2Eb"));
        assert!(!is_wildcard(&conv_msg("x>y")));
    }

    #[test]
    fn escapes_have_one_width_so_ids_that_once_collided_do_not() {
        assert_ne!(token("x\u{2028}"), token("x 28"));
        assert_eq!(token("x\u{2028}"), "x%E2%80%A8");
        assert_ne!(token(""), token("\0"));
        assert_eq!(untoken("x%E2%80%A8").as_deref(), Some("x\u{2028}"));
        assert_eq!(untoken("%"), Some(String::new()));
        // Not the encoding of any id: a bare wildcard, a short escape, an escape of a kept char.
        assert_eq!(untoken("%2"), None);
        assert_eq!(untoken("%41"), None);
        assert_eq!(untoken("a.b"), None);
    }

    proptest::proptest! {
        #[test]
        fn the_encoding_is_injective_and_round_trips(a in "\\PC*", b in "\\PC*") {
            proptest::prop_assert_eq!(untoken(&token(&a)), Some(a.clone()));
            proptest::prop_assert_eq!(token(&a) == token(&b), a == b);
        }

        #[test]
        fn key_tokens_are_injective_and_valid_keys(a in "\\PC*", b in "\\PC*") {
            proptest::prop_assert_eq!(key_token(&a) == key_token(&b), a == b);
            proptest::prop_assert!(key_token(&a).bytes().all(|c| c.is_ascii_alphanumeric() || b"_-=".contains(&c)));
        }

        #[test]
        fn any_unicode_stays_in_one_printable_token(id in proptest::collection::vec(proptest::char::any(), 0..24)) {
            let id: String = id.into_iter().collect();
            let t = token(&id);
            proptest::prop_assert!(!t.is_empty());
            proptest::prop_assert!(!t.contains(['.', '*', '>']));
            proptest::prop_assert!(!t.chars().any(|c| c.is_whitespace() || c.is_control()));
            proptest::prop_assert_eq!(untoken(&t), Some(id));
        }
    }
}
