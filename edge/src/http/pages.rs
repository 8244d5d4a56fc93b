//! The pages a person can open, hand-written and embedded in the binary so
//! they work with no internet:
//!
//! - `GET /widget.js`: the customer widget a site embeds with one `<script
//!   src=".../widget.js" data-site-key="...">` tag (or, from a site that
//!   mints its customers' tokens, `data-token="..." data-conversation="..."`).
//!   It speaks the native WebSocket protocol (JSON frames) to the origin it
//!   was loaded from.
//! - `GET /demo/?site_key=` or `?token=&conversation=`: a page that embeds the widget.
//! - `GET /demo/agent?token=`: an agent inbox (`/demo/agent.js`).
//!
//! Scripts are cached and revalidated by a content hash (`ETag`); the pages
//! carry a token in their markup and are never stored.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tower_http::compression::CompressionLayer;

use super::extract::AppState;
use crate::query;

const WIDGET_JS: &str = include_str!("../../assets/widget.js");
const AGENT_JS: &str = include_str!("../../assets/agent.js");
const DEMO_HTML: &str = include_str!("../../assets/demo.html");
const AGENT_HTML: &str = include_str!("../../assets/agent.html");

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The pages load only their own scripts and talk only to their own origin:
/// `'self'`, and its WebSocket form, which browsers before CSP 3 did not count
/// as `'self'`.
fn page_csp(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| is_plain_host(h));
    let sockets = host.map(|h| format!(" ws://{h} wss://{h}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         connect-src 'self'{sockets}; img-src 'self' data:; frame-ancestors 'none'"
    )
}

/// A `Host` that can only name a host and port, so it cannot add a source to the policy.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/widget.js", get(|headers: HeaderMap| async move { script(&headers, &WIDGET) }))
        .route("/demo/agent.js", get(|headers: HeaderMap| async move { script(&headers, &AGENT) }))
        .route("/demo", get(|RawQuery(q): RawQuery| async move { Redirect::to(&with_query("/demo/", q)) }))
        .route("/demo/", get(demo))
        .route("/demo/agent", get(|headers: HeaderMap| async move { page(&headers, AGENT_HTML.to_owned()) }))
        // Gzip when the browser takes it: the widget is most of a first visit.
        .layer(CompressionLayer::new())
}

/// A script and its strong validator.
struct Asset {
    body: &'static str,
    etag: String,
}

static WIDGET: LazyLock<Asset> = LazyLock::new(|| Asset::new(WIDGET_JS));
static AGENT: LazyLock<Asset> = LazyLock::new(|| Asset::new(AGENT_JS));

impl Asset {
    fn new(body: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        Self { body, etag: format!("\"{}\"", hex::encode(&digest[..12])) }
    }
}

/// Cached for five minutes, then revalidated: a new release is picked up
/// quickly and an unchanged script costs a 304.
fn script(headers: &HeaderMap, asset: &Asset) -> Response {
    let etag = HeaderValue::from_str(&asset.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300, must-revalidate")),
        (header::ETAG, etag),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        // Sites on other origins embed the widget.
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, HeaderValue::from_static(JS))], asset.body).into_response()
}

fn page(headers: &HeaderMap, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HTML.to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CONTENT_SECURITY_POLICY, page_csp(headers)),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// The demo site: the widget's one script tag, with the site key, or the
/// token and conversation, from the page's query string.
async fn demo(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let param = |name| query::param(&query, name).unwrap_or_default();
    let (token, site_key) = (param("token"), param("site_key"));
    let mut body = DEMO_HTML.to_owned();
    if token.is_empty() && site_key.is_empty() {
        body = body.replace(r#"id="no-token" hidden"#, r#"id="no-token""#);
    }
    let attributes = if token.is_empty() && !site_key.is_empty() {
        format!(r#"data-site-key="{}" data-prechat="name,email""#, escape(&site_key))
    } else {
        format!(r#"data-token="{}" data-conversation="{}""#, escape(&token), escape(&param("conversation")))
    };
    page(&headers, body.replace("{{WIDGET_ATTRS}}", &attributes))
}

fn with_query(path: &str, query: Option<String>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    }
}

/// Text safe inside an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_text() {
        assert_eq!(escape(r#""><script>&'"#), "&quot;&gt;&lt;script&gt;&amp;&#39;");
    }

    #[test]
    fn the_policy_names_only_the_pages_own_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("chat.example.com:8080"));
        let csp = page_csp(&headers);
        assert!(csp.contains("connect-src 'self' ws://chat.example.com:8080 wss://chat.example.com:8080;"));
        assert!(!csp.contains(" ws: ") && !csp.contains(" wss:;"));
        headers.insert(header::HOST, HeaderValue::from_static("evil.com; script-src *"));
        assert!(page_csp(&headers).contains("connect-src 'self';"));
    }

    #[test]
    fn keeps_the_query_on_redirect() {
        assert_eq!(with_query("/demo/", Some("token=a".into())), "/demo/?token=a");
        assert_eq!(with_query("/demo/", None), "/demo/");
    }
}
