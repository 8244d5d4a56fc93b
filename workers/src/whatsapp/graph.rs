//! The Graph API's `/messages` endpoint, and what its answers mean.
//!
//! Errors are keyed on Graph's `error.code`, not only the HTTP status:
//! network errors, 5xx, 429, 130429 (throughput) and 131056 (pair rate) are
//! worth retrying; 100, 131051, 131026, 131047 and any other 4xx are not.

use std::time::Duration;

use serde_json::{Value, json};

/// Codes that are never retried, whatever the HTTP status said.
const NEVER_RETRY: [i64; 4] = [100, 131051, 131026, 131047];
/// Rate limits: retried after a pause.
const RATE_LIMITED: [i64; 4] = [4, 80007, 130429, 131056];

#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Transient: try again after `retry_after` (or back-off).
    Retry { code: Option<i64>, message: String, retry_after: Option<Duration> },
    /// Final: the message will not go out.
    Fatal { code: i64, message: String },
}

impl SendError {
    pub fn code(&self) -> i64 {
        match self {
            SendError::Retry { code, .. } => code.unwrap_or(0),
            SendError::Fatal { code, .. } => *code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SendError::Retry { message, .. } | SendError::Fatal { message, .. } => message,
        }
    }
}

pub struct Graph {
    http: reqwest::Client,
    base: String,
}

impl Graph {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
    }

    /// Sends a text; Meta's message id (`wamid`) when accepted.
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        token: &str,
        to: &str,
        body: &str,
    ) -> Result<String, SendError> {
        let url = format!("{}/{phone_number_id}/messages", self.base);
        let request = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": { "body": body, "preview_url": false },
        });
        let response = match self.http.post(&url).bearer_auth(token).json(&request).send().await {
            Ok(r) => r,
            Err(e) => return Err(SendError::Retry { code: None, message: e.to_string(), retry_after: None }),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let answer: Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => return Err(SendError::Retry { code: None, message: e.to_string(), retry_after: None }),
        };
        classify(status, &answer, retry_after)
    }
}

/// What an answer of the Graph API means.
pub fn classify(status: u16, answer: &Value, retry_after: Option<Duration>) -> Result<String, SendError> {
    if (200..300).contains(&status) {
        if let Some(id) = answer["messages"][0]["id"].as_str() {
            return Ok(id.to_owned());
        }
        return Err(SendError::Retry {
            code: None,
            message: format!("HTTP {status} without a message id"),
            retry_after,
        });
    }
    let code = answer["error"]["code"].as_i64();
    let message = answer["error"]["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
    match code {
        Some(c) if NEVER_RETRY.contains(&c) => Err(SendError::Fatal { code: c, message }),
        Some(c) if RATE_LIMITED.contains(&c) => Err(SendError::Retry { code, message, retry_after }),
        _ if status == 429 || status >= 500 => Err(SendError::Retry { code, message, retry_after }),
        _ => Err(SendError::Fatal { code: code.unwrap_or(i64::from(status)), message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: i64) -> Value {
        json!({"error": {"message": "m", "type": "OAuthException", "code": code, "fbtrace_id": "x"}})
    }

    #[test]
    fn errors_are_keyed_on_the_graph_code() {
        let ok = json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.1"}]});
        assert_eq!(classify(200, &ok, None), Ok("wamid.1".into()));
        assert!(matches!(classify(400, &error(130429), None), Err(SendError::Retry { .. })));
        assert!(matches!(classify(429, &error(131056), None), Err(SendError::Retry { .. })));
        assert!(matches!(classify(500, &Value::Null, None), Err(SendError::Retry { .. })));
        assert!(matches!(classify(500, &error(131047), None), Err(SendError::Fatal { code: 131047, .. })));
        assert!(matches!(classify(400, &error(100), None), Err(SendError::Fatal { code: 100, .. })));
        assert!(matches!(classify(401, &error(190), None), Err(SendError::Fatal { code: 190, .. })));
    }
}
