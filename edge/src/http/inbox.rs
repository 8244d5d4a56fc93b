//! The inbox over HTTP (contract §11): assignment, status, agents.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Serialize;
use switchboard_proto::model::{Agent, Conversation, ConversationStatus};
use utoipa::ToSchema;

use super::extract::{AppState, Caller, ErrorResponse};
use crate::error::ApiError;
use crate::handling::{self, AssignRequest};
use crate::rules::ConversationPath;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/conversations/{id}/assign", post(assign))
        .route("/api/v1/conversations/{id}/close", post(close))
        .route("/api/v1/conversations/{id}/reopen", post(reopen))
        .route("/api/v1/conversations/{id}/handoff", post(handoff))
        .route("/api/v1/agents", get(agents))
}

/// An empty body reads as `{}`: a claim.
fn request(body: &[u8]) -> Result<AssignRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(AssignRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Claim, transfer or unassign a conversation; 409 when another agent holds what a claim asked for.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/assign", params(ConversationPath), request_body = AssignRequest,
    responses((status = 200, body = Conversation), (status = 409, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
async fn assign(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
    body: axum::body::Bytes,
) -> Result<Json<Conversation>, ApiError> {
    let target = request(&body)?.target()?;
    Ok(Json(handling::assign(&state, &who, &id, target).await?))
}

/// Close a conversation.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/close", params(ConversationPath),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorResponse)))]
async fn close(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(handling::set_status(&state, &who, &id, ConversationStatus::Closed).await?))
}

/// Reopen a conversation.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/reopen", params(ConversationPath),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorResponse)))]
async fn reopen(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(handling::set_status(&state, &who, &id, ConversationStatus::Open).await?))
}

/// Ask for a human: the conversation becomes `pending`.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/handoff", params(ConversationPath),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorResponse)))]
async fn handoff(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ConversationPath { id }): Path<ConversationPath>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(handling::set_status(&state, &who, &id, ConversationStatus::Pending).await?))
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    agents: Vec<Agent>,
}

/// Every agent seen, with its availability and its open assigned conversations.
#[utoipa::path(get, path = "/api/v1/agents",
    responses((status = 200, body = AgentList), (status = 403, body = ErrorResponse)))]
async fn agents(State(state): State<AppState>, Caller(who): Caller) -> Result<Json<AgentList>, ApiError> {
    who.require_staff()?;
    Ok(Json(AgentList { agents: handling::agents(&state).await? }))
}
