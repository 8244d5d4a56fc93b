//! For operators: liveness, readiness, metrics, and the API's description.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use switchboard_bus::roster::{PartitionSeen, Roster};
use utoipa::OpenApi;

use super::extract::AppState;
use super::{compat, conversations, inbox, sync, whatsapp, widget};
use crate::rules::TEXT_PATTERN;
use crate::telemetry::Scrape;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// Alive: answered by every process with an HTTP listener (a worker's too).
pub async fn healthz() -> Json<Value> {
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

/// How long a scrape waits for the cluster's figures before answering without them.
const CLUSTER_WITHIN: Duration = Duration::from_secs(2);

/// This node's series, then the cluster's as the bus tells them now (so a
/// node that left leaves no stale series behind).
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render();
    let roster = Roster::read(state.bus.as_ref(), state.config.partitions);
    match tokio::time::timeout(CLUSTER_WITHIN, roster).await {
        Ok(Ok(roster)) => cluster_series(&roster, &mut body),
        Ok(Err(e)) => tracing::warn!(error = %e, "cluster figures left out of /metrics"),
        Err(_) => tracing::warn!("cluster figures left out of /metrics: the bus did not answer in time"),
    }
    Scrape::respond(body)
}

fn cluster_series(roster: &Roster, out: &mut String) {
    use std::fmt::Write;
    let partition = |p: &PartitionSeen| format!("kind=\"{}\",partition=\"{}\"", p.kind, p.partition);
    let mut series = |name: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    series(
        "switchboard_cluster_sockets",
        "Sockets each live edge holds, as it last announced.",
        roster.edges.iter().map(|e| (format!("edge=\"{}\"", escape(&e.node)), e.sockets)).collect(),
    );
    series(
        "switchboard_partitions_owned",
        "Command partitions each live worker holds.",
        roster
            .workers
            .iter()
            .map(|w| (format!("kind=\"{}\",worker=\"{}\"", w.kind, escape(&w.node)), w.owns.len() as u64))
            .collect(),
    );
    series(
        "switchboard_partition_backlog",
        "Commands of a partition not yet acknowledged by its worker.",
        roster.partitions.iter().filter_map(|p| Some((partition(p), p.backlog?))).collect(),
    );
    series(
        "switchboard_partition_redelivered",
        "Commands of a partition delivered more than once and not yet acknowledged.",
        roster.partitions.iter().filter_map(|p| Some((partition(p), p.redelivered?))).collect(),
    );
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
        inbox::assign,
        inbox::close,
        inbox::reopen,
        inbox::handoff,
        inbox::agents,
        compat::bot_reply,
        compat::notify_message,
        sync::pull_changes,
        sync::confirm,
        sync::post_change,
        whatsapp::verify,
        whatsapp::receive,
        widget::open_session,
    ),
    modifiers(&Security, &Errors)
)]
struct ApiDoc;

/// The three ways a caller proves who it is: a JWT (every operation unless
/// it says otherwise), a tenant's sync API key, and Meta's webhook signature.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let api_key = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("A tenant's key of SWITCHBOARD_SYNC_API_KEYS"))
            .build();
        components.add_security_scheme("sync_api_key", SecurityScheme::Http(api_key));
        let signature = ApiKey::Header(ApiKeyValue::with_description(
            "X-Hub-Signature-256",
            "sha256=<hex HMAC-SHA256 of the raw body under the app secret>",
        ));
        components.add_security_scheme("webhook_signature", SecurityScheme::ApiKey(signature));
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The refusals every operation can answer, each in the one error shape:
/// 400 for input it takes, 401 behind a credential, 413 for a body over the
/// payload limit, 500 and 503 anywhere, and 504 `outcome_unknown` for a
/// write a worker did not answer in time.
struct Errors;

impl utoipa::Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, ResponseBuilder, content::ContentBuilder, path::HttpMethod};
        let error = |why: &str| {
            let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorResponse"))).build();
            ResponseBuilder::new().description(why).content("application/json", body).build()
        };
        let open_security = openapi.security.clone();
        for item in openapi.paths.paths.values_mut() {
            let operations = [(HttpMethod::Get, item.get.as_mut()), (HttpMethod::Post, item.post.as_mut())];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let takes_input = operation.request_body.is_some()
                    || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let security = operation.security.as_ref().or(open_security.as_ref());
                let secured = security.is_some_and(|s| s.iter().any(|r| *r != Default::default()));
                let write = method == HttpMethod::Post && operation.security.is_none();
                let mut add = |code: &str, why: &str| {
                    operation.responses.responses.entry(code.to_owned()).or_insert_with(|| error(why).into());
                };
                if takes_input {
                    add("400", "malformed input: the message says what was wrong");
                }
                if secured {
                    add("401", "a missing, invalid or expired credential");
                }
                if operation.request_body.is_some() {
                    add(
                        "413",
                        "a body over SWITCHBOARD_MAX_PAYLOAD, or a text over SWITCHBOARD_MAX_TEXT_LEN",
                    );
                }
                add("500", "a fault of the server, never of the request");
                add("503", "the bus or the database cannot do it now, and nothing was done");
                if write {
                    add("504", "no worker answered in time: retry with the same client_msg_id");
                }
            }
        }
    }
}

/// The document, with this node's text limit on every text.
async fn openapi(State(state): State<AppState>) -> Json<Value> {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
    limit_texts(&mut document, state.config.limits.max_text_len);
    Json(document)
}

fn limit_texts(node: &mut Value, max: usize) {
    match node {
        Value::Object(fields) => {
            if fields.get("pattern").and_then(Value::as_str) == Some(TEXT_PATTERN) {
                fields.insert("maxLength".into(), max.into());
            }
            fields.values_mut().for_each(|v| limit_texts(v, max));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| limit_texts(v, max)),
        _ => {}
    }
}
