//! The HTTP side of an edge.
//!
//! - [`conversations`]: conversations and their messages, the service API.
//! - [`compat`]: the endpoints our users' existing systems call: the
//!   bot-reply widget's `/api/bot-reply` and the ticketing backend's
//!   `/api/notify/message`.
//! - [`sync`]: sync changes for point-of-sale clients, pulled and confirmed with an API key.
//! - [`ops`]: health, readiness, metrics and the OpenAPI document.
//! - [`pages`]: the widget script and the demo pages. [`whatsapp`]: Meta's webhooks.
//! - [`widget`]: visitor sessions for the widget on public sites.
//! - [`extract`]: what handlers take from a request (caller, body, query) and
//!   the error body every route answers with.

pub mod compat;
pub mod conversations;
pub mod extract;
pub mod inbox;
pub mod ops;
pub mod pages;
pub mod sync;
pub mod whatsapp;
pub mod widget;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use self::extract::AppState;
use crate::config::WidgetSites;
use crate::error::ApiError;

pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    Router::new()
        .merge(conversations::routes())
        .merge(inbox::routes())
        .merge(compat::routes())
        .merge(ops::routes())
        .merge(pages::routes())
        .merge(sync::routes())
        .merge(widget::routes())
        .layer(DefaultBodyLimit::max(limits.max_payload))
        // Its own, larger limit (Meta's payloads reach 3 MB), and signed, not authenticated.
        .merge(whatsapp::routes())
        .with_state(state)
}

/// Every error in the one shape, including those answered before a handler
/// runs (an unknown route or method, a body over its limit, a rejected
/// extractor), which axum writes as plain text or not at all.
pub async fn json_errors(mut response: Response) -> Response {
    let status = response.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was not read to its end, so the connection cannot carry
        // another request: a client must not reuse it.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        text => text.to_owned(),
    };
    let error = ApiError::with_status(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(error.headers().clone());
    Response::from_parts(parts, error.into_body())
}

/// An allow-list of browser origins: those configured, and those a widget
/// site key allows (the widget reads its conversation cross-origin). Every
/// route wants a bearer credential, never a cookie, so a listed origin can
/// only use credentials its page already holds. Widget sessions answer every
/// origin, as they judge the origin themselves: a page that may not use a
/// key can read why.
pub fn cors(origins: &[String], sites: &WidgetSites) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let sites = sites.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, request| {
            request.uri.path() == widget::SESSIONS
                || allowed.contains(origin)
                || origin.to_str().is_ok_and(|o| sites.allow_anywhere(o))
        }))
        .expose_headers([header::RETRY_AFTER])
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_credentials(true)
}
