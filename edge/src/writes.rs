//! The writes every transport shares, checked the same way whoever asks:
//! a message (`send_message`, `POST .../messages`) and a receipt
//! (`mark_read`, `POST /api/v1/messages/{id}/status`). Each becomes a command.

use switchboard_proto::model::{DeliveryStatus, Message, StatusUpdate};
use uuid::Uuid;

use crate::auth::Identity;
use crate::commands::Draft;
use crate::error::ApiError;
use crate::rules::{check_id, check_text};
use crate::state::EdgeState;

/// A message a caller wants stored.
pub struct NewText {
    pub conversation_id: String,
    pub text: String,
    pub client_msg_id: Option<String>,
    /// A staff-only note (§11): agents, bots and services only.
    pub private: bool,
}

/// Stores a message from `who`; `false` when it was a retry of a stored one.
/// `joined`: the caller's connection joined the conversation, and was
/// authorised then (who may use a conversation never changes), so the
/// conversation is not read again.
pub async fn send_message(
    state: &EdgeState,
    who: &Identity,
    new: NewText,
    joined: bool,
) -> Result<(Message, bool), ApiError> {
    check_text(&state.config.limits, &new.text)?;
    if new.private && who.is_customer() {
        return Err(ApiError::forbidden(
            "private notes are for staff: a customer's message is never private",
        ));
    }
    if let Some(key) = &new.client_msg_id {
        check_id("client_msg_id", key)?;
    }
    if !joined {
        state.access(who, &new.conversation_id).await?;
    }
    let create_for = who.starts_on_first_message(&new.conversation_id).then(|| who.customer());
    let draft = Draft {
        conversation_id: new.conversation_id,
        sender: who.sender(),
        text: new.text,
        client_msg_id: new.client_msg_id,
        source: who.role.source(),
        create_for,
        private: new.private,
    };
    state.commands.send_message(draft).await
}

/// Moves a message's status forward for `who`, who must have access to its
/// conversation; `expected`: the conversation the caller named, which the
/// message must be in.
pub async fn set_status(
    state: &EdgeState,
    who: &Identity,
    message_id: Uuid,
    status: DeliveryStatus,
    expected: Option<&str>,
) -> Result<StatusUpdate, ApiError> {
    let message = state.store.message(message_id).await?;
    let message = message
        .filter(|m| expected.is_none_or(|c| c == m.conversation_id))
        .ok_or_else(|| ApiError::not_found(format!("message {message_id} not found in that conversation")))?;
    state.conversation_for(who, &message.conversation_id).await?;
    if message.private && who.is_customer() {
        return Err(ApiError::not_found(format!("message {message_id} not found in that conversation")));
    }
    let reader = (status == DeliveryStatus::Read).then_some(who.user_id.as_str());
    state.commands.set_status(&message.conversation_id, message_id, status, reader).await
}
