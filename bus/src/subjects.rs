//! Subject names, in one place. Ids are sanitised so a conversation id can
//! never inject a wildcard or an extra token into a subject.

/// Commands for the workers (durable); each kind of worker takes its own share.
pub const COMMANDS: &str = "sb.cmd.>";
/// The persist worker's share.
pub const CHAT_COMMANDS: &str = "sb.cmd.chat.>";
pub const CMD_SEND_MESSAGE: &str = "sb.cmd.chat.send_message";
pub const CMD_CREATE_CONVERSATION: &str = "sb.cmd.chat.create_conversation";
pub const CMD_SET_STATUS: &str = "sb.cmd.chat.set_status";
pub const CMD_BOT_REPLY: &str = "sb.cmd.chat.bot_reply";
/// The sync worker's share: changes for tenants' outboxes, and confirmations.
pub const SYNC_COMMANDS: &str = "sb.cmd.sync.>";
pub const CMD_SYNC_CHANGE: &str = "sb.cmd.sync.change";
pub const CMD_SYNC_CONFIRM: &str = "sb.cmd.sync.confirm";
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

/// Makes an id safe as one subject token: `.`, `*`, `>` and white space are
/// percent-encoded, so distinct ids stay distinct.
pub fn token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '.' | '*' | '>' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_whitespace() || c.is_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    if out.is_empty() { "%00".into() } else { out }
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
    }

    #[test]
    fn ids_cannot_break_out_of_their_token() {
        assert_eq!(conv_msg("a.b"), "sb.conv.a%2Eb.msg");
        assert_eq!(conv_msg("*"), "sb.conv.%2A.msg");
        assert_ne!(token("a.b"), token("a%2Eb"));
        assert!(!is_wildcard(&conv_msg("x>y")));
    }
}
