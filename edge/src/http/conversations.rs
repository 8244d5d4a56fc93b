//! Conversations and messages over HTTP: the service API (`/api/v1/...`).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use switchboard_proto::model::{
    Channel, Conversation, ConversationStatus, Customer, DeliveryStatus, Message, Role, StatusUpdate,
};
use switchboard_store::{AssigneeFilter, InboxFilter};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{AppState, Body, Caller, ErrorResponse, Query};
use crate::error::ApiError;
use crate::rules::{
    ConversationPath, MAX_OFFSET, check_id, count_schema, id_schema, offset_schema, optional_id_schema,
    text_schema,
};
use crate::writes::{self, NewText};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/conversations", post(create_conversation).get(list_conversations))
        .route("/api/v1/conversations/{id}", get(get_conversation))
        .route("/api/v1/conversations/{id}/messages", post(post_message).get(history))
        .route("/api/chat/sessions/{id}/messages", get(history))
        .route("/api/v1/messages/{id}/status", post(set_status))
}

/// The largest page any listing answers.
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize, ToSchema)]
pub struct CreateConversation {
    /// Chosen by the server (a UUIDv7) when absent.
    #[schema(schema_with = optional_id_schema)]
    id: Option<String>,
    channel: Channel,
    /// Its `id` as [`id_schema`] says.
    #[schema(schema_with = customer_input_schema)]
    customer: Customer,
}

/// A customer as a request names it: the response's shape, with the id's
/// limits (server-made customer ids, `ticket:<id>`, may be longer).
fn customer_input_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut schema =
        serde_json::to_value(<Customer as utoipa::PartialSchema>::schema()).expect("a schema is JSON");
    schema["properties"]["id"] = serde_json::to_value(id_schema()).expect("a schema is JSON");
    serde_json::from_value(schema).expect("still a schema")
}

/// Create a conversation; an existing id answers the existing conversation (200).
#[utoipa::path(post, path = "/api/v1/conversations", request_body = CreateConversation,
    responses((status = 201, body = Conversation), (status = 200, body = Conversation), (status = 403, body = ErrorResponse)))]
async fn create_conversation(
    State(state): State<AppState>,
    Caller(who): Caller,
    Body(body): Body<CreateConversation>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    if who.site.is_some() {
        return Err(ApiError::forbidden("a widget visitor's conversation starts with its first message"));
    }
    if who.is_customer() && body.customer.id != who.user_id {
        return Err(ApiError::forbidden("a customer may only create its own conversations"));
    }
    let id = body.id.unwrap_or_else(|| Uuid::now_v7().to_string());
    check_id("id", &id)?;
    check_id("customer.id", &body.customer.id)?;
    let (conversation, created) = state.commands.create_conversation(id, body.channel, body.customer).await?;
    who.check_access(&conversation)?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(conversation)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    channel: Option<Channel>,
    phone: Option<String>,
    status: Option<ConversationStatus>,
    /// `me` (the calling agent), `none` (unassigned) or an agent's id.
    #[param(schema_with = id_schema)]
    assignee: Option<String>,
    /// Clamped to 1 to 200.
    #[param(schema_with = count_schema)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<Conversation>,
}

/// The inbox: conversations, most recently active first, each with its last message.
#[utoipa::path(get, path = "/api/v1/conversations", params(InboxQuery),
    responses((status = 200, body = ConversationList), (status = 403, body = ErrorResponse)))]
async fn list_conversations(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(query): Query<InboxQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    who.require_staff()?;
    let assignee = match query.assignee.as_deref() {
        None => None,
        Some("none") => Some(AssigneeFilter::Unassigned),
        Some("me") => Some(AssigneeFilter::Agent(who.user_id.clone())),
        Some(id) => {
            check_id("assignee", id)?;
            Some(AssigneeFilter::Agent(id.to_owned()))
        }
    };
    let filter = InboxFilter {
        channel: query.channel,
        phone: query.phone,
        status: query.status,
        customer_id: None,
        assignee,
        reader: (who.role == Role::Agent).then(|| who.user_id.clone()),
        limit: query.limit.unwrap_or(50).clamp(1, MAX_LIMIT),
    };
    let conversations = state.store.list_conversations(&filter).await?;
    Ok(Json(ConversationList { conversations }))
}

/// One conversation.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", params(ConversationPath),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorResponse)))]
async fn get_conversation(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(state.conversation_for(&who, &id).await?))
}

/// Either `{text}` or the agent panel's `{message_type:"text", content:{text}}`.
#[derive(Deserialize)]
pub struct PostMessage {
    text: Option<String>,
    message_type: Option<String>,
    content: Option<MessageContent>,
    client_msg_id: Option<String>,
    #[serde(default)]
    private: bool,
}

#[derive(Deserialize)]
pub struct MessageContent {
    text: Option<String>,
}

// By hand: `text` wins when it is there, else `content.text` must be, which
// the derive cannot say.
impl utoipa::PartialSchema for PostMessage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let text = serde_json::to_value(text_schema()).expect("a schema is JSON");
        let common = serde_json::json!({
            "message_type": { "type": ["string", "null"], "enum": ["text", null] },
            "client_msg_id": optional_id_schema(),
            "private": { "type": "boolean", "description": "A staff-only note (§11)." },
        });
        let with = |extra: serde_json::Value| {
            let mut properties = common.clone();
            properties
                .as_object_mut()
                .expect("an object")
                .extend(extra.as_object().expect("an object").clone());
            properties
        };
        let schema = serde_json::json!({
            "anyOf": [
                { "type": "object", "required": ["text"], "properties": with(serde_json::json!({ "text": text })) },
                {
                    "type": "object",
                    "required": ["content"],
                    "properties": with(serde_json::json!({
                        "text": { "type": "null" },
                        "content": { "type": "object", "required": ["text"], "properties": { "text": text } },
                    })),
                },
            ],
        });
        serde_json::from_value(schema).expect("the schema above is one")
    }
}

impl ToSchema for PostMessage {}

impl PostMessage {
    fn into_text(self) -> Result<(String, Option<String>, bool), ApiError> {
        if let Some(kind) = self.message_type.as_deref().filter(|k| *k != "text") {
            return Err(ApiError::bad_request(format!(
                "message_type {kind:?} is not supported; use \"text\""
            )));
        }
        let text = self.text.or(self.content.and_then(|c| c.text));
        let text = text.ok_or_else(|| ApiError::bad_request("text (or content.text) is required"))?;
        Ok((text, self.client_msg_id, self.private))
    }
}

/// Publish a message; answers the stored Message (200 when it was a retry).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", params(ConversationPath), request_body = PostMessage,
    responses((status = 201, body = Message), (status = 200, body = Message), (status = 404, body = ErrorResponse)))]
async fn post_message(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
    Body(body): Body<PostMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let (text, client_msg_id, private) = body.into_text()?;
    let new = NewText { conversation_id: id, text, client_msg_id, private };
    let (message, created) = writes::send_message(&state, &who, new, false).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(message)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages after this offset; the latest page when absent.
    #[param(schema_with = offset_schema)]
    since_offset: Option<u64>,
    /// Clamped to 1 to 200.
    #[param(schema_with = count_schema)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageList {
    messages: Vec<Message>,
}

/// History in ascending offsets (also served as `/api/chat/sessions/{id}/messages`).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", params(ConversationPath, HistoryQuery),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorResponse)))]
async fn history(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<MessageList>, ApiError> {
    // An unstarted visitor's conversation has an empty history, not none.
    state.access(&who, &id).await?;
    let limit = query.limit.unwrap_or(state.config.limits.history_page).clamp(1, MAX_LIMIT);
    if query.since_offset.is_some_and(|since| since > MAX_OFFSET) {
        return Err(ApiError::bad_request(format!("since_offset is at most {MAX_OFFSET}")));
    }
    let mut messages = match query.since_offset {
        Some(since) => state.store.messages_after(&id, since, limit).await?,
        None => state.store.latest_messages(&id, limit).await?,
    };
    // A customer's view skips staff-only notes; its offsets keep their holes.
    messages.retain(|m| !m.private || !who.is_customer());
    Ok(Json(MessageList { messages }))
}

#[derive(Deserialize, ToSchema)]
pub struct SetStatus {
    status: DeliveryStatus,
}

/// A delivery or read receipt; statuses only move forward.
#[utoipa::path(post, path = "/api/v1/messages/{id}/status",
    params(("id" = Uuid, Path, description = "The message's id.")), request_body = SetStatus,
    responses((status = 200, body = StatusUpdate), (status = 404, body = ErrorResponse)))]
async fn set_status(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Body(body): Body<SetStatus>,
) -> Result<Json<StatusUpdate>, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::bad_request("message id must be a UUID"))?;
    Ok(Json(writes::set_status(&state, &who, id, body.status, None).await?))
}
