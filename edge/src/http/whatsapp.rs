//! WhatsApp Cloud API webhooks: Meta's verification handshake, and signed
//! deliveries handed to the bus as they came, for `worker whatsapp`.
//!
//! The signature is checked over the raw bytes before anything else; a good
//! delivery is stored on `sb.wa.in` under the SHA-256 of its body, so Meta's
//! identical redeliveries are dropped by the bus, and answered 200 at once.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use switchboard_bus::{Envelope, headers, subjects};

use super::extract::{AppState, ErrorResponse, Query};
pub use crate::config::WebhookConfig;
use crate::error::{ApiError, ErrorCode};
use crate::telemetry;

/// Meta sends payloads of up to 3 MB.
pub const MAX_WEBHOOK_BODY: usize = 4 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/whatsapp", get(verify).post(receive))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    #[param(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription check: the challenge back, as the raw body.
#[utoipa::path(
    get,
    path = "/webhooks/whatsapp",
    tag = "whatsapp",
    params(Handshake),
    security(()),
    responses(
        (status = 200, description = "the hub.challenge, as plain text", body = String),
        (status = 401, description = "wrong mode or verify token", body = ErrorResponse),
    )
)]
pub async fn verify(State(state): State<AppState>, Query(hs): Query<Handshake>) -> Response {
    let expected = state.config.whatsapp.verify_token.as_deref();
    let token_ok = matches!((expected, hs.verify_token.as_deref()),
        (Some(e), Some(t)) if constant_time_eq(e.as_bytes(), t.as_bytes()));
    match (hs.mode.as_deref(), hs.challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => (StatusCode::OK, challenge).into_response(),
        _ => ApiError::new(ErrorCode::InvalidVerifyToken, "verification refused").into_response(),
    }
}

/// A signed delivery: checked, handed to the bus, acknowledged.
#[utoipa::path(
    post,
    path = "/webhooks/whatsapp",
    tag = "whatsapp",
    security(("webhook_signature" = [])),
    request_body(content = Object, description = "Meta's webhook envelope, taken as raw bytes", content_type = "application/json"),
    responses(
        (status = 200, description = "accepted: stored on the bus for the WhatsApp worker"),
        (status = 401, description = "missing or bad signature; nothing was stored", body = ErrorResponse),
        (status = 503, description = "the bus is unavailable; Meta retries", body = ErrorResponse),
    )
)]
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    let Some(secret) = state.config.whatsapp.app_secret.as_deref() else {
        return invalid_signature("no app secret is configured");
    };
    if !signature_matches(secret.as_bytes(), &body, signature) {
        metrics::counter!(telemetry::WA_WEBHOOKS_REFUSED).increment(1);
        return invalid_signature("X-Hub-Signature-256 is missing or does not match the body");
    }
    let id = hex::encode(Sha256::digest(&body));
    let envelope = Envelope::new(subjects::WA_IN, body).header(headers::EVENT, "wa.webhook");
    match state.bus.publish_durable(envelope, &format!("wa-in:{id}")).await {
        Ok(()) => {
            metrics::counter!(telemetry::WA_WEBHOOKS).increment(1);
            (StatusCode::OK, axum::Json(serde_json::json!({ "ok": true }))).into_response()
        }
        Err(e) => ApiError::unavailable(e.to_string()).into_response(),
    }
}

fn invalid_signature(message: &str) -> Response {
    ApiError::new(ErrorCode::InvalidSignature, message).into_response()
}

/// `sha256=<lowercase hex HMAC-SHA256(body, secret)>`, compared in constant time.
pub fn signature_matches(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(given) = hex::decode(given.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_over_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_matches(b"s3cret", body, Some(&good)));
        assert!(!signature_matches(b"other", body, Some(&good)));
        assert!(!signature_matches(b"s3cret", b"{}", Some(&good)));
        assert!(!signature_matches(b"s3cret", body, None));
        assert!(!signature_matches(b"s3cret", body, Some("sha256=zz")));
    }
}
