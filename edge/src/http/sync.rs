//! Sync changes over HTTP: a point-of-sale sync client pulls its tenant's
//! unconfirmed changes and confirms them with its API key; a service produces
//! changes with its token.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_proto::model::Role;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{AppState, Body, Caller, ErrorResponse, Query, bearer};
use crate::error::{ApiError, ErrorCode};
use crate::rules::{MAX_OFFSET, check_id, count_schema, id_schema, offset_schema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync/pull-changes", get(pull_changes))
        .route("/sync/confirm", post(confirm))
        .route("/sync/changes", post(post_change))
}

/// The most changes one pull answers, and ids one confirm takes.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

/// The tenant of the API key in `Authorization: Bearer <apiKey>`.
pub struct SyncTenant(pub String);

impl FromRequestParts<AppState> for SyncTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts).map(str::trim).unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::new(ErrorCode::ApiKeyRequired, "API key required"));
        }
        match state.config.sync_api_keys.tenant(key) {
            Some(tenant) => Ok(SyncTenant(tenant.to_owned())),
            None => Err(ApiError::new(ErrorCode::InvalidApiKey, "Invalid API key")),
        }
    }
}

/// A change as clients see it.
#[derive(Serialize, ToSchema)]
pub struct SyncChangeView {
    id: Uuid,
    /// The tenant's sequence number: from 1, without gaps.
    seq: u64,
    entity: String,
    op: String,
    data: Value,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct PulledChanges {
    /// Unconfirmed changes, seq ascending.
    #[schema(value_type = Vec<SyncChangeView>)]
    changes: Vec<Value>,
    /// The highest seq answered; with no changes, the seq everything up to is confirmed.
    cursor: u64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullQuery {
    /// At most this many (default 100, at most 1000).
    #[param(schema_with = count_schema)]
    limit: Option<u32>,
}

/// The tenant's unconfirmed changes; they come back until confirmed.
#[utoipa::path(get, path = "/sync/pull-changes", params(PullQuery), security(("sync_api_key" = [])),
    responses((status = 200, body = PulledChanges), (status = 401, body = ErrorResponse)))]
async fn pull_changes(
    State(state): State<AppState>,
    SyncTenant(tenant): SyncTenant,
    Query(query): Query<PullQuery>,
) -> Result<Json<PulledChanges>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // Read first: with nothing pending, every change up to it was confirmed
    // (one added meanwhile comes after it, and is not confirmed by this cursor).
    let last = state.store.last_change_seq(&tenant).await?;
    let changes = state.store.pending_changes(&tenant, limit).await?;
    let cursor = changes.last().map_or(last, |c| c.seq);
    Ok(Json(PulledChanges { changes: changes.iter().map(|c| c.to_json()).collect(), cursor }))
}

/// `{cursor}`: every change with seq up to it; or `{ids}`: those changes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    #[serde(default, deserialize_with = "whole_number")]
    cursor: Option<u64>,
    ids: Option<Vec<String>>,
}

/// A JSON number with no fraction, `1.0` as well as `1` (JSON Schema's
/// integer), or `null`.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let whole = number.as_u64().or_else(|| {
        let f = number.as_f64()?;
        (f.fract() == 0.0 && (0.0..=MAX_OFFSET as f64).contains(&f)).then_some(f as u64)
    });
    whole.map(Some).ok_or_else(|| serde::de::Error::custom(format!("{number} is not a whole number from 0")))
}

// By hand: exactly one of the two, which the derive cannot say.
impl utoipa::PartialSchema for ConfirmRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let cursor = serde_json::to_value(offset_schema()).expect("a schema is JSON");
        let ids = json!({
            "type": "array",
            "items": { "type": "string", "format": "uuid" },
            "minItems": 1,
            "maxItems": MAX_LIMIT,
        });
        let null = json!({ "type": "null" });
        let shape = |required: &str, cursor: &Value, ids: &Value| {
            json!({
                "type": "object",
                "required": [required],
                "properties": { "cursor": cursor, "ids": ids },
                "additionalProperties": false,
            })
        };
        let schema = json!({ "oneOf": [shape("cursor", &cursor, &null), shape("ids", &null, &ids)] });
        serde_json::from_value(schema).expect("the schema above is one")
    }
}

impl ToSchema for ConfirmRequest {}

#[derive(Serialize, ToSchema)]
pub struct Confirmed {
    /// How many changes were unconfirmed until now.
    confirmed: u64,
}

/// Confirm changes through a cursor, or by id.
#[utoipa::path(post, path = "/sync/confirm", request_body = ConfirmRequest, security(("sync_api_key" = [])),
    responses((status = 200, body = Confirmed), (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse)))]
async fn confirm(
    State(state): State<AppState>,
    SyncTenant(tenant): SyncTenant,
    Body(body): Body<ConfirmRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let ids = match (body.cursor, body.ids) {
        (Some(cursor), None) if cursor > MAX_OFFSET => {
            return Err(ApiError::bad_request(format!("cursor is at most {MAX_OFFSET}")));
        }
        (Some(_), None) => Vec::new(),
        (None, Some(ids)) if !ids.is_empty() && ids.len() <= MAX_LIMIT as usize => {
            if let Some(bad) = ids.iter().find(|id| id.parse::<Uuid>().is_err()) {
                return Err(ApiError::bad_request(format!("ids: {bad:?} is not a change id")));
            }
            ids
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_request(format!("ids must hold 1 to {MAX_LIMIT} change ids")));
        }
        _ => return Err(ApiError::bad_request("give either cursor or ids")),
    };
    let confirmed = state.commands.sync_confirm(&tenant, body.cursor, ids).await?;
    Ok(Json(Confirmed { confirmed }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSyncChange {
    #[schema(schema_with = id_schema)]
    tenant: String,
    /// What changed, e.g. `order`.
    #[schema(schema_with = id_schema)]
    entity: String,
    /// How, e.g. `create`, `update`, `delete`.
    #[schema(schema_with = id_schema)]
    op: String,
    /// Any JSON document.
    data: Value,
}

/// Put a change in a tenant's outbox (service or bot token); its clients get `changes:pending`.
#[utoipa::path(post, path = "/sync/changes", request_body = NewSyncChange,
    responses((status = 201, body = SyncChangeView), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
async fn post_change(
    State(state): State<AppState>,
    Caller(who): Caller,
    Body(body): Body<NewSyncChange>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !matches!(who.role, Role::Service | Role::Bot) {
        return Err(ApiError::forbidden("only services and bots may produce sync changes"));
    }
    check_id("tenant", &body.tenant)?;
    check_id("entity", &body.entity)?;
    check_id("op", &body.op)?;
    let change = state.commands.sync_change(&body.tenant, body.entity, body.op, &body.data).await?;
    Ok((StatusCode::CREATED, Json(change)))
}
