//! For operators: liveness, readiness, metrics, and the API's description.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::extract::AppState;
use super::{compat, conversations, sync, whatsapp};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long readiness waits for the bus or the database to answer: one that
/// takes longer is not ready, and the probe gets its answer either way.
const READY_WITHIN: Duration = Duration::from_millis(800);

/// Ready while the bus and the database answer and the node is not draining.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (bus, database) = tokio::join!(
        tokio::time::timeout(READY_WITHIN, state.bus.is_ready()),
        tokio::time::timeout(READY_WITHIN, state.store.ping()),
    );
    let bus = bus.unwrap_or(false);
    let database = matches!(database, Ok(Ok(())));
    let draining = state.is_draining();
    let ready = bus && database && !draining;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "bus": bus,
        "database": database,
        "draining": draining,
    });
    (status, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Real-time messaging backbone for customer-support chat"),
    paths(
        conversations::create_conversation,
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::post_message,
        conversations::history,
        conversations::set_status,
        compat::bot_reply,
        compat::notify_message,
        sync::pull_changes,
        sync::confirm,
        sync::post_change,
        whatsapp::verify,
        whatsapp::receive,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
