//! The series an edge exports, its HTTP request figures, and the scrape that
//! renders every process series (described ones with no sample yet too).

use std::collections::HashSet;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_proto::telemetry::{Kind, PLAIN, Series};

pub const BUILD_INFO: &str = "switchboard_build_info";
pub const SOCKETS: &str = "switchboard_sockets";
pub const SUBSCRIPTIONS: &str = "switchboard_subscriptions";
pub const DELIVERIES: &str = "switchboard_deliveries_total";
pub const EPHEMERAL_SKIPPED: &str = "switchboard_ephemeral_skipped_total";
pub const CONNECTIONS_REFUSED: &str = "switchboard_connections_refused_total";
pub const CONNECTIONS_CLOSED: &str = "switchboard_connections_closed_total";
pub const SLOW_CONSUMERS: &str = "switchboard_slow_consumers_disconnected_total";
pub const FOREIGN_EVENTS: &str = "switchboard_foreign_events_dropped_total";
pub const GAPS_FILLED: &str = "switchboard_gaps_filled_total";
pub const WA_WEBHOOKS: &str = "switchboard_wa_webhooks_total";
pub const WA_WEBHOOKS_REFUSED: &str = "switchboard_wa_webhooks_refused_total";
pub const HTTP_REQUESTS: &str = "switchboard_http_requests_total";
pub const HTTP_DURATION: &str = "switchboard_http_request_duration_seconds";
pub const COMMAND_DURATION: &str = "switchboard_command_duration_seconds";
pub const DELIVERY_LATENCY: &str = "switchboard_delivery_latency_seconds";

const TRANSPORTS: &[&[(&str, &str)]] = &[&[("transport", "socket.io")], &[("transport", "native")]];

pub const SERIES: &[Series] = &[
    Series::new(BUILD_INFO, Kind::Gauge, "1, labelled with this process's version and role.", &[]),
    Series::new(SOCKETS, Kind::Gauge, "Client sockets this edge holds.", TRANSPORTS),
    Series::new(
        SUBSCRIPTIONS,
        Kind::Gauge,
        "Bus subscriptions this edge holds for its sockets, by what they follow.",
        &[&[("kind", "conversation")], &[("kind", "tenant")], &[("kind", "phone")]],
    ),
    Series::new(
        CONNECTIONS_REFUSED,
        Kind::Counter,
        "Sockets refused at connect, by transport and the error code they were told.",
        &[],
    ),
    Series::new(CONNECTIONS_CLOSED, Kind::Counter, "Sockets ended, by transport and reason.", &[]),
    Series::new(DELIVERIES, Kind::Counter, "Events written to client sockets.", TRANSPORTS),
    Series::new(
        EPHEMERAL_SKIPPED,
        Kind::Counter,
        "Typing and presence events skipped for a socket whose queue was full.",
        PLAIN,
    ),
    Series::new(
        SLOW_CONSUMERS,
        Kind::Counter,
        "Sockets disconnected because they stopped reading (each recovers by offset).",
        TRANSPORTS,
    ),
    Series::new(
        FOREIGN_EVENTS,
        Kind::Counter,
        "Bus events dropped for naming another conversation than their subject's.",
        PLAIN,
    ),
    Series::new(
        GAPS_FILLED,
        Kind::Counter,
        "Gaps in a conversation's live events filled from the store.",
        PLAIN,
    ),
    Series::new(WA_WEBHOOKS, Kind::Counter, "WhatsApp webhook deliveries accepted.", PLAIN),
    Series::new(
        WA_WEBHOOKS_REFUSED,
        Kind::Counter,
        "WhatsApp webhook deliveries refused (bad signature).",
        PLAIN,
    ),
    Series::new(
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests answered, by route template, method and status.",
        &[],
    ),
    Series::new(
        HTTP_DURATION,
        Kind::Histogram,
        "Time to answer an HTTP request, by route template and method.",
        &[],
    ),
    Series::new(
        COMMAND_DURATION,
        Kind::Histogram,
        "Round trip of a write from this edge to a worker and back.",
        PLAIN,
    ),
    Series::new(
        DELIVERY_LATENCY,
        Kind::Histogram,
        "From a message's creation to its write to this edge's sockets.",
        PLAIN,
    ),
];

/// Counts and times each HTTP request by its route template (never the path
/// itself, which would make a series per id).
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// What `/metrics` renders: the recorder's series, the process's figures,
/// and the help and type of every described series not sampled yet.
pub struct Scrape {
    handle: PrometheusHandle,
    series: Vec<&'static Series>,
    process: metrics_process::Collector,
}

impl Scrape {
    pub fn new(handle: PrometheusHandle, catalogue: &[&'static [Series]]) -> Self {
        let process = metrics_process::Collector::default();
        process.describe();
        Self { handle, series: catalogue.iter().flat_map(|s| s.iter()).collect(), process }
    }

    /// `body` (a render, perhaps with more series after it) as a scrape's answer.
    pub fn respond(body: String) -> impl IntoResponse {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
    }

    pub fn render(&self) -> String {
        self.process.collect();
        let mut out = self.handle.render();
        let present: HashSet<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let missing: Vec<&Series> =
            self.series.iter().copied().filter(|s| !present.contains(s.name)).collect();
        for series in missing {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n\n",
                name = series.name,
                help = series.help,
                kind = series.kind.as_str()
            ));
        }
        out
    }
}

/// Declares every series of `catalogue` with the recorder: its help, and its
/// known label sets at zero; and which build in which role this process is.
pub fn declare(catalogue: &[&'static [Series]], role: &'static str) {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "role" => role).set(1.0);
    for series in catalogue.iter().flat_map(|s| s.iter()) {
        match series.kind {
            Kind::Counter => metrics::describe_counter!(series.name, series.help),
            Kind::Gauge => metrics::describe_gauge!(series.name, series.help),
            Kind::Histogram => metrics::describe_histogram!(series.name, series.help),
        }
        for labels in series.zeros {
            let labels: Vec<metrics::Label> =
                labels.iter().map(|&(k, v)| metrics::Label::new(k, v)).collect();
            match series.kind {
                Kind::Counter => metrics::counter!(series.name, labels).increment(0),
                Kind::Gauge => metrics::gauge!(series.name, labels).increment(0.0),
                Kind::Histogram => drop(metrics::histogram!(series.name, labels)),
            }
        }
    }
}
