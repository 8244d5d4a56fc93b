//! `POST /api/v1/widget/sessions`: a site with no backend gets a visitor a
//! customer token of its own (§12). A session stores nothing: the visitor's
//! conversation is created by its first message, so crawlers and bots that
//! open sessions leave no trace in any inbox.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use switchboard_proto::model::{Conversation, ConversationStatus, Customer, Timestamp};
use switchboard_store::InboxFilter;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{AppState, Body, ErrorResponse};
use crate::auth::{Claims, mint};
use crate::error::{ApiError, ErrorCode};
use crate::rules::{check_id, optional_id_schema};
use crate::visitors::user_hash_matches;

pub const SESSIONS: &str = "/api/v1/widget/sessions";

pub fn routes() -> Router<AppState> {
    Router::new().route(SESSIONS, post(open_session))
}

const MAX_NAME_CHARS: usize = 100;
const MAX_EMAIL_CHARS: usize = 254;
const DEFAULT_NAME: &str = "Visitor";

#[derive(Deserialize, ToSchema)]
pub struct SessionRequest {
    site_key: String,
    name: Option<String>,
    email: Option<String>,
    /// From an earlier session; kept by the widget in `localStorage`.
    visitor_id: Option<String>,
    /// A signed-in user of the site, with `user_hash`.
    #[schema(schema_with = optional_id_schema)]
    user_id: Option<String>,
    /// Lowercase hex HMAC-SHA256 of `user_id` under the identity secret.
    user_hash: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    /// A customer token allowed `conversation_id` only.
    token: String,
    conversation_id: String,
    visitor_id: String,
    expires_at: Timestamp,
}

/// A request within its client's session rate; counted before anything is
/// read, so guessing keys or hashes is as slow as opening sessions.
pub struct Admitted;

impl FromRequestParts<AppState> for Admitted {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| addr.ip());
        let client = state.config.trusted_proxies.client(peer, &parts.headers);
        match state.widget_sessions.check(crate::clients::limit_key(client)) {
            Ok(()) => Ok(Admitted),
            Err(wait) => {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let error = ApiError::rate_limited(format!(
                    "too many widget sessions from this address: retry in {seconds} s"
                ));
                Err(([(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)))], error).into_response())
            }
        }
    }
}

/// Open (or renew) a widget visitor's session.
#[utoipa::path(post, path = "/api/v1/widget/sessions", request_body = SessionRequest, security(()),
    responses((status = 201, body = Session), (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse),
        (status = 429, body = ErrorResponse)))]
async fn open_session(
    State(state): State<AppState>,
    _: Admitted,
    headers: HeaderMap,
    Body(request): Body<SessionRequest>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let widget = &state.config.widget;
    if widget.sites.origins(&request.site_key).is_none() {
        return Err(ApiError::new(ErrorCode::InvalidSiteKey, "unknown site key"));
    }
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if !widget.sites.allows(&request.site_key, origin) {
        return Err(ApiError::new(
            ErrorCode::OriginNotAllowed,
            format!("this site key may not be used from {}", origin.unwrap_or("a page with no Origin")),
        ));
    }
    let name = optional_text("name", request.name.as_deref(), MAX_NAME_CHARS)?;
    let email = optional_text("email", request.email.as_deref(), MAX_EMAIL_CHARS)?;
    if email.as_deref().is_some_and(|e| !looks_like_email(e)) {
        return Err(ApiError::bad_request("email must look like name@domain"));
    }
    let user = signed_in_user(widget.identity_secret.as_deref(), &request)?;
    let visitor_id = state.visitor_ids.recognise(request.visitor_id.as_deref());
    let customer_id = match user {
        Some(user_id) => format!("user:{user_id}"),
        None => format!("visitor:{visitor_id}"),
    };
    let current = open_conversation(&state, &customer_id).await?;
    // A returning visitor who leaves the form out keeps the name it gave.
    let known = current.as_ref().map(|(_, customer)| customer);
    let name = name.or_else(|| known.map(|c| c.name.clone())).unwrap_or_else(|| DEFAULT_NAME.to_owned());
    let email = email.or_else(|| known.and_then(|c| c.email.clone()));
    let conversation_id = current.map_or_else(|| Uuid::now_v7().to_string(), |(id, _)| id);
    let expires_at = Timestamp(Timestamp::now().0 + widget.token_ttl.as_millis() as i64);
    let claims = Claims {
        sub: customer_id,
        role: "customer".into(),
        name: Some(name),
        phone: None,
        email,
        conversations: Some(vec![conversation_id.clone()]),
        site: Some(request.site_key),
        jti: Some(Uuid::new_v4().simple().to_string()),
        exp: (expires_at.0 / 1000) as u64,
    };
    let token = mint(&state.config.jwt_secret, &claims);
    Ok((StatusCode::CREATED, Json(Session { token, conversation_id, visitor_id, expires_at })))
}

/// A trimmed optional field within its length; blank is absent.
fn optional_text(field: &str, text: Option<&str>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{field} must be at most {max} printable characters")));
    }
    Ok(Some(text.to_owned()))
}

fn looks_like_email(email: &str) -> bool {
    email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !email.contains(char::is_whitespace)
    })
}

/// The signed-in user the request proves, if it names one.
fn signed_in_user<'a>(
    secret: Option<&str>,
    request: &'a SessionRequest,
) -> Result<Option<&'a str>, ApiError> {
    let Some(user_id) = request.user_id.as_deref() else {
        return match request.user_hash {
            Some(_) => Err(ApiError::bad_request("user_hash needs the user_id it signs")),
            None => Ok(None),
        };
    };
    check_id("user_id", user_id)?;
    let refused = |why: &str| Err(ApiError::new(ErrorCode::InvalidUserHash, why));
    let Some(secret) = secret else {
        return refused(
            "this server verifies no signed-in users: SWITCHBOARD_WIDGET_IDENTITY_SECRET is not set",
        );
    };
    match request.user_hash.as_deref() {
        None => refused("user_id needs its user_hash"),
        Some(hash) if user_hash_matches(secret, user_id, hash) => Ok(Some(user_id)),
        Some(_) => refused("user_hash does not match user_id"),
    }
}

/// The customer's newest conversation that is not closed, with the customer
/// as it was recorded.
async fn open_conversation(
    state: &AppState,
    customer_id: &str,
) -> Result<Option<(String, Customer)>, ApiError> {
    let mut newest: Option<Conversation> = None;
    for status in [ConversationStatus::Open, ConversationStatus::Pending] {
        let filter = InboxFilter {
            customer_id: Some(customer_id.to_owned()),
            status: Some(status),
            limit: 1,
            ..InboxFilter::default()
        };
        let found = state.store.list_conversations(&filter).await?.pop();
        newest = match (newest, found) {
            (Some(a), Some(b)) => Some(if b.updated_at > a.updated_at { b } else { a }),
            (a, b) => a.or(b),
        };
    }
    Ok(newest.map(|c| (c.id, c.customer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_loosely() {
        for good in ["ada@example.com", "a.b+c@mail.example.org"] {
            assert!(looks_like_email(good), "{good}");
        }
        for bad in ["not-an-email", "@example.com", "ada@", "ada@example", "ada @example.com", "ada@.com"] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
