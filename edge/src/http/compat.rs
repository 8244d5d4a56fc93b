//! Endpoints our users' existing systems already call, kept as they call them.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use switchboard_proto::model::{Customer, Message, Role, Sender};
use utoipa::ToSchema;

use super::extract::{AppState, Body, Caller};
use crate::commands::Draft;
use crate::error::ApiError;
use crate::rules::{check_id, check_text, id_schema, optional_id_schema, text_schema};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/bot-reply", post(bot_reply)).route("/api/notify/message", post(notify_message))
}

/// The bot-reply widget's bridge from the WhatsApp bot.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotReplyRequest {
    /// Its digits are the number; it must hold one.
    #[schema(required = true, schema_with = phone_schema)]
    target_user_whats_app_number: Option<String>,
    #[schema(required = true, schema_with = text_schema)]
    message_text: Option<String>,
}

fn phone_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new().schema_type(Type::String).pattern(Some("[0-9]")).build()
}

#[derive(Serialize, ToSchema)]
pub struct BotReplyAnswer {
    success: bool,
    /// `delivered` or `queued` (kept until the user's next connect).
    status: String,
    delivered: u32,
    message: String,
}

/// A bot's reply to every socket of the user with that WhatsApp number.
#[utoipa::path(post, path = "/api/bot-reply", request_body = BotReplyRequest,
    responses((status = 200, body = BotReplyAnswer), (status = 202, body = BotReplyAnswer)))]
async fn bot_reply(
    State(state): State<AppState>,
    Caller(who): Caller,
    Body(body): Body<BotReplyRequest>,
) -> Result<(StatusCode, Json<BotReplyAnswer>), ApiError> {
    who.require_staff()?;
    let (Some(phone), Some(text)) = (body.target_user_whats_app_number, body.message_text) else {
        return Err(ApiError::bad_request("targetUserWhatsAppNumber and messageText are required"));
    };
    let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
    if phone.is_empty() {
        return Err(ApiError::bad_request("targetUserWhatsAppNumber must hold digits"));
    }
    check_text(&state.config.limits, &text)?;
    let delivered = state.commands.bot_reply(phone, text).await?;
    let answer = |status: &str, message: &str| BotReplyAnswer {
        success: true,
        status: status.into(),
        delivered,
        message: message.into(),
    };
    Ok(if delivered > 0 {
        (StatusCode::OK, Json(answer("delivered", "reply sent to the client")))
    } else {
        (StatusCode::ACCEPTED, Json(answer("queued", "client not connected; delivered on its next connect")))
    })
}

#[derive(Serialize, ToSchema)]
pub struct NotifyAnswer {
    success: bool,
    /// As stored (the stored one again for a repeated `messageId`).
    message: Message,
}

/// The ticketing backend's notification: a ticket's message.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyMessage {
    #[schema(schema_with = id_schema)]
    ticket_id: String,
    #[schema(schema_with = optional_id_schema)]
    message_id: Option<String>,
    #[schema(schema_with = text_schema)]
    content: String,
    #[serde(default)]
    is_client: bool,
}

/// A message in conversation `ticketId` (created when missing); `messageId`
/// makes a repeated notification store nothing new.
#[utoipa::path(post, path = "/api/notify/message", request_body = NotifyMessage,
    responses((status = 200, body = NotifyAnswer)))]
async fn notify_message(
    State(state): State<AppState>,
    Caller(who): Caller,
    Body(body): Body<NotifyMessage>,
) -> Result<Json<NotifyAnswer>, ApiError> {
    who.require_staff()?;
    check_id("ticketId", &body.ticket_id)?;
    if let Some(id) = &body.message_id {
        check_id("messageId", id)?;
    }
    check_text(&state.config.limits, &body.content)?;
    let existing = state.store.conversation(&body.ticket_id).await?;
    let customer = existing.as_ref().map(|c| c.customer.clone()).unwrap_or_else(|| Customer {
        id: format!("ticket:{}", body.ticket_id),
        name: "Customer".into(),
        phone: None,
        email: None,
    });
    let sender = if body.is_client {
        Sender { id: customer.id.clone(), role: Role::Customer, name: customer.name.clone() }
    } else {
        Sender { id: who.user_id.clone(), role: Role::Agent, name: who.name.clone() }
    };
    let draft = Draft {
        conversation_id: body.ticket_id,
        source: sender.role.source(),
        sender,
        text: body.content,
        client_msg_id: body.message_id,
        create_for: existing.is_none().then_some(customer),
        private: false,
    };
    let (message, _): (Message, bool) = state.commands.send_message(draft).await?;
    Ok(Json(NotifyAnswer { success: true, message }))
}
